"""Data-diet scores (Paul, Ganguli and Dziugaite 2021): how hard each training example is, per member.

EL2N is the error of the network's softmax on an example; GraNd the norm of the gradient of the
example's loss in all of the member's parameters. Both are taken early in training (a few epochs)
to find the examples a data set can drop, and both are (S, n_train): member s scores its own
training examples, in ``data.train_idx`` order. Evaluation mode (no dropout); the model is not
changed. End-of-training chapter.
"""
from __future__ import annotations

import torch
from torch.func import functional_call, grad, vmap

from ..core._validate import check_int
from ..core.data import TaskData
from ..core.losses import per_example_loss
from ..core.models import Ensemble
from ..core.train import check_sizes, evaluation_mode


def el2n(model: Ensemble, data: TaskData) -> torch.Tensor:
    """(S, n_train) EL2N: ||softmax(f(x)) - onehot(y)||_2 for each member's training examples."""
    x, y = _training_examples(model, data)
    with evaluation_mode(model):
        p = torch.softmax(model(x), dim=-1)  # (S, n, C)
    return (p - torch.nn.functional.one_hot(y, p.shape[-1]).to(p)).norm(dim=-1)


def grand(model: Ensemble, data: TaskData, chunk: int | None = 128) -> torch.Tensor:
    """(S, n_train) GraNd: the norm of the gradient of each training example's cross-entropy in all
    of its member's parameters, biases included (torch.func: vmap of grad over members and examples).

    ``chunk`` examples per member are differentiated at once (None: all), which bounds the memory:
    S x chunk x (parameters per member) numbers. About 5 s for 4 members x 500 digits with an 84k-parameter
    MLP on two CPU cores.
    """
    if chunk is not None:
        check_int("chunk", chunk, low=1)
    x, y = _training_examples(model, data)
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def example_loss(member_params: dict, member_buffers: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        state = {k: v.unsqueeze(0) for k, v in (member_params | member_buffers).items()}  # a one-member ensemble
        outputs = functional_call(model, state, (xi[None, None],))  # (1, 1, C)
        return per_example_loss(outputs, yi.view(1, 1), "cross_entropy")[0, 0]

    def gradient_norm(member_params: dict, member_buffers: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        g = grad(example_loss)(member_params, member_buffers, xi, yi)
        return torch.sqrt(sum(v.pow(2).sum() for v in g.values()))

    per_example = vmap(gradient_norm, in_dims=(None, None, 0, 0), chunk_size=chunk)
    per_member = vmap(per_example, in_dims=(0, 0, 0, 0))
    with evaluation_mode(model), torch.enable_grad():
        return per_member(params, buffers, x, y)


def _training_examples(model: Ensemble, data: TaskData) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked arguments; each member's training inputs (S, n, ...) and labels (S, n) on the model's device."""
    if not isinstance(model, Ensemble):
        raise ValueError(f"model must be a genlib.core.models.Ensemble; got {type(model).__name__}")
    check_sizes(model, data)
    if data.num_classes is None:
        raise ValueError("data must be a classification task (num_classes set); got num_classes=None")
    like = next(model.parameters())
    x, y = data.batch(data.train_idx)
    return (x.to(like) if x.is_floating_point() else x.to(like.device)), y.to(like.device)
