"""Sharpness-aware minimization in train: one step against SAM written out for one member."""
import copy

import pytest
import torch

from genlib.core.data import digits
from genlib.core.losses import per_example_loss
from genlib.core.models import MLP
from genlib.core.train import TrainConfig, train


def member_loss(model, data, member, params):
    """Mean training MSE of one member, as a function of that member's parameter slices."""
    x, y = data.batch(data.train_idx)
    full = [p.detach().clone() for p in model.parameters()]
    for p, q in zip(full, params):
        p[member] = q
    state = dict(zip([n for n, _ in model.named_parameters()], full)) | dict(model.named_buffers())
    out = torch.func.functional_call(model, state, (x,))
    return per_example_loss(out, y, "mse").mean(-1)[member]


@pytest.mark.parametrize("member", [0, 1])
def test_one_sam_step_matches_the_written_out_rule(member):
    data = digits(40, seeds=[0, 1])
    model = MLP(64, (8,), 10, [0, 1], activation="tanh").double()
    before = copy.deepcopy(model)
    lr, rho = 0.1, 0.05
    train(model, data, TrainConfig(steps=1, lr=lr, optimizer="sgd", loss="mse", sam_radius=rho, dtype="float64",
                                   eval_log_points=0, progress=False))
    w = [p[member].detach().clone().requires_grad_() for p in before.parameters()]
    g = torch.autograd.grad(member_loss(before, data.to(torch.device("cpu"), torch.float64), member, w), w)
    norm = torch.sqrt(sum((gi**2).sum() for gi in g))
    moved = [(wi + rho * gi / norm).detach().requires_grad_() for wi, gi in zip(w, g)]
    g_sam = torch.autograd.grad(member_loss(before, data.to(torch.device("cpu"), torch.float64), member, moved), moved)
    for p, wi, gi in zip(model.parameters(), w, g_sam):
        torch.testing.assert_close(p[member].detach(), (wi - lr * gi).detach(), rtol=1e-10, atol=1e-12)


def test_sam_radius_is_checked():
    with pytest.raises(ValueError, match="sam_radius"):
        TrainConfig(sam_radius=-0.1)
