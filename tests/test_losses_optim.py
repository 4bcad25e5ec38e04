import math

import pytest
import torch
import torch.nn.functional as F

from genlib.core.losses import per_example_loss, stablemax, stablemax_s
from genlib.core.optim import EnsembleOptimizer, perpendicular_gradient


def test_stablemax_definition():
    x = torch.tensor([-3.0, -0.5, 0.0, 2.0])
    torch.testing.assert_close(stablemax_s(x), torch.tensor([1 / 4, 1 / 1.5, 1.0, 3.0]))
    p = stablemax(x)
    torch.testing.assert_close(p.sum(), torch.tensor(1.0))
    assert torch.all(p[1:] >= p[:-1]), "StableMax keeps the order of the logits"


def test_cross_entropy_matches_torch():
    logits, labels = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    expected = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view(2, 5)
    torch.testing.assert_close(per_example_loss(logits, labels, "cross_entropy"), expected)


def test_stablemax_loss_is_minus_log_probability():
    logits, labels = torch.randn(1, 3, 4), torch.tensor([[0, 1, 3]])
    expected = -torch.log(stablemax(logits.double())[0, range(3), labels[0]]).float()
    torch.testing.assert_close(per_example_loss(logits, labels, "stablemax")[0], expected)


def test_mse_on_class_ids_uses_one_hot():
    out = torch.zeros(1, 2, 3)
    loss = per_example_loss(out, torch.tensor([[0, 2]]), "mse")
    torch.testing.assert_close(loss, torch.full((1, 2), 1 / 3))


def test_unknown_loss():
    with pytest.raises(ValueError, match="loss"):
        per_example_loss(torch.zeros(1, 1, 2), torch.zeros(1, 1, dtype=torch.long), "hinge")


def test_ensemble_adamw_matches_torch_adamw_per_member():
    """Two members with different lr and weight decay follow torch.optim.AdamW exactly."""
    torch.manual_seed(0)
    w = torch.randn(2, 3, 4, requires_grad=True)
    lrs, wds = [1e-2, 3e-3], [0.0, 0.5]
    refs = [w[i].detach().clone().requires_grad_() for i in range(2)]
    torch_opts = [torch.optim.AdamW([refs[i]], lr=lrs[i], weight_decay=wds[i], betas=(0.9, 0.98)) for i in range(2)]
    ours = EnsembleOptimizer([w], "adamw", torch.tensor(lrs), torch.tensor(wds))
    for _ in range(5):
        target = torch.randn(2, 3, 4)
        ours.zero_grad()
        ((w - target) ** 2).sum().backward()
        ours.step()
        for i in range(2):
            torch_opts[i].zero_grad()
            ((refs[i] - target[i]) ** 2).sum().backward()
            torch_opts[i].step()
    for i in range(2):
        torch.testing.assert_close(w[i].detach(), refs[i].detach())


def test_sgd_with_momentum_matches_torch():
    w = torch.ones(1, 3, requires_grad=True)
    ref = torch.ones(3, requires_grad=True)
    torch_opt = torch.optim.SGD([ref], lr=0.1, momentum=0.9, weight_decay=0.01)
    ours = EnsembleOptimizer([w], "sgd", torch.tensor([0.1]), torch.tensor([0.01]), momentum=0.9)
    for _ in range(4):
        ours.zero_grad()
        torch_opt.zero_grad()
        (w * torch.arange(3.0)).pow(2).sum().backward()
        (ref * torch.arange(3.0)).pow(2).sum().backward()
        ours.step()
        torch_opt.step()
    torch.testing.assert_close(w[0].detach(), ref.detach())


@pytest.mark.parametrize("kind, decay, momentum", [("adamw", 0.0, 0.0), ("adamw", 0.3, 0.0), ("sgd", 0.0, 0.0),
                                                   ("sgd", 0.1, 0.0), ("sgd", 0.0, 0.9)])
def test_steps_without_temporaries_give_the_plain_formulas_bit_for_bit(kind, decay, momentum):
    """The step writes into the spent gradient and a scratch tensor instead of fresh temporaries; the
    parameters must come out exactly as the textbook formulas (with their temporaries) give them."""
    torch.manual_seed(1)
    w = torch.randn(3, 5, 4, requires_grad=True)
    lr, wd = torch.tensor([0.1, 0.03, 0.01]), torch.full((3,), decay)
    ours = EnsembleOptimizer([w], kind, lr, wd, momentum=momentum)
    ref, m, v = w.detach().clone(), torch.zeros_like(w), torch.zeros_like(w)
    lr_, wd_ = lr.view(-1, 1, 1), wd.view(-1, 1, 1)
    for t in range(1, 6):
        target = torch.randn(3, 5, 4)
        ours.zero_grad()
        ((w - target) ** 3).sum().backward()
        ours.step()
        assert w.grad is None, "the spent gradient (scratch space now) is dropped"
        g = 3 * (ref - target) ** 2
        if kind == "adamw":
            if decay:
                ref.mul_(1 - lr_ * wd_)
            m.mul_(0.9).add_(g, alpha=0.1)
            v.mul_(0.98).addcmul_(g, g, value=1 - 0.98)
            ref.addcdiv_(m * (lr_ / (1 - 0.9**t)), (v / (1 - 0.98**t)).sqrt_().add_(1e-8), value=-1)
        else:
            g = g + wd_ * ref if decay else g
            g = m.mul_(momentum).add_(g) if momentum else g
            ref.sub_(lr_ * g)
    assert torch.equal(w.detach(), ref)


def test_perpendicular_gradient_is_orthogonal_and_keeps_norm():
    w, g = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    perp = perpendicular_gradient(w, g)
    dots = (perp * w).sum((1, 2))
    torch.testing.assert_close(dots, torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(perp.norm(dim=(1, 2)), g.norm(dim=(1, 2)))
    assert not math.isclose(float((g * w).sum()), 0.0, abs_tol=1e-3)
