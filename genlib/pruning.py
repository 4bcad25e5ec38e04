"""Pruning an MLP ensemble: random and magnitude masks, their sparsity, and rewinding (end-of-training chapter).

Masks are lists of 0/1 tensors, one per weight matrix, each (S, fan_in, out) like the weights; they
are made here and set with :meth:`genlib.models.MLP.set_weight_masks`. Biases are never pruned.
Both kinds of mask prune layer by layer: every weight matrix of a member loses the same share of
its weights. That is layer-wise pruning, as Frankle and Carbin do for fully connected networks (they
prune the output layer at half the rate; here every layer at the same), not global pruning: one
global magnitude threshold prunes hardest the layers whose weights are smallest (the widest fan-in,
at initialisation 1/sqrt(fan_in)) and can disconnect a layer.

Iterative magnitude pruning with rewinding (Frankle and Carbin 2019; Frankle et al. 2020), with
``rewind_to = snapshot(model)`` taken after training k steps (a second ``train`` call then goes on
from there, with fresh optimizer state)::

    masks = None
    for r in range(1, rounds + 1):
        train(model, data, config)
        masks = magnitude_masks(model, 1 - 0.5**r, current=masks)  # prune half of what is left
        rewind(model, rewind_to)
        model.set_weight_masks(masks)

Random pruning at the same sparsity (Liu et al. 2022) is the control: ``random_masks(model, s)``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ._validate import check_int, per_member
from .models import MLP

Masks = list[torch.Tensor]  # one (S, fan_in, out) 0/1 tensor per weight matrix


def random_masks(model: MLP, sparsity: float | Sequence[float], seed: int = 0) -> Masks:
    """Masks that prune round(sparsity * n) of each layer's n weights uniformly at random.

    ``sparsity`` is one share or one per member, in [0, 1). Member s draws from its own generator,
    seeded by ``seed`` and its model seed, so its mask does not depend on the other members.
    """
    shares = _sparsities(model, sparsity)
    check_int("seed", seed, low=0)
    generators = [torch.Generator().manual_seed(seed * 1_000_003 + s) for s in model.seeds]
    masks = []
    for w in model.weights:
        n = w[0].numel()
        rows = []
        for g, share in zip(generators, shares):
            keep = torch.ones(n)
            keep[torch.randperm(n, generator=g)[: round(share * n)]] = 0
            rows.append(keep.view(w.shape[1:]))
        masks.append(torch.stack(rows).to(w))
    return masks


@torch.no_grad()
def magnitude_masks(model: MLP, sparsity: float | Sequence[float], current: Masks | None = None) -> Masks:
    """Masks that keep each layer's largest-magnitude weights, pruning round(sparsity * n) of its n.

    ``sparsity`` is the share of each layer pruned in the end (one, or one per member, in [0, 1)),
    not the share of what is left: pruning half the remaining weights in round r is sparsity
    1 - 0.5**r. Only weights still unmasked in ``current`` are kept, so the new mask is a subset of
    it; ``sparsity`` must then be at least ``current``'s. Ties are broken by position.
    """
    shares = _sparsities(model, sparsity)
    if current is not None:
        _check_masks(model, current)
    masks = []
    for i, w in enumerate(model.weights):
        scores = w.detach().abs().flatten(1)  # (S, n)
        n = scores.shape[1]
        pruned = torch.tensor([round(share * n) for share in shares], device=w.device)
        if current is not None:
            alive = current[i].flatten(1).to(w.device) != 0
            already = (~alive).sum(1)
            if (already > pruned).any():
                s = int((already > pruned).nonzero()[0])
                raise ValueError(f"sparsity must be at least current's ({float(already[s]) / n:.4g} in layer {i} of "
                                 f"member {s}); got {shares[s]!r}")
            scores = torch.where(alive, scores, torch.full_like(scores, -1.0))  # pruned already: ranked last
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(n, device=w.device).expand_as(order))
        masks.append((rank < (n - pruned)[:, None]).to(w).view_as(w))
    return masks


def weight_sparsity(model: MLP) -> torch.Tensor:
    """(S,) share of each member's weights (all weight matrices, not biases) that its masks prune."""
    _check_model(model)
    total = sum(w[0].numel() for w in model.weights)
    masks = list(model.weight_masks)
    if not masks:
        return torch.zeros(model.members, device=model.weights[0].device)
    return sum((m == 0).flatten(1).sum(1) for m in masks).to(torch.float32) / total


def snapshot(model: MLP) -> dict[str, torch.Tensor]:
    """A copy of every parameter, by name, to :func:`rewind` to later (e.g. the weights at step k)."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@torch.no_grad()
def rewind(model: MLP, state: dict[str, torch.Tensor]) -> None:
    """Set the parameters back to a :func:`snapshot`; the weights the current masks prune stay 0."""
    params = dict(model.named_parameters())
    expected = {name: tuple(p.shape) for name, p in params.items()}
    given = {name: tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__ for name, v in state.items()}
    if given != expected:
        raise ValueError(f"state must be a snapshot of this model's parameters {expected}; got {given}")
    for name, p in params.items():
        p.copy_(state[name])
    for w, m in zip(model.weights, model.weight_masks):
        w.mul_(m)


def _check_model(model) -> None:
    if not isinstance(model, MLP):
        raise ValueError(f"model must be a genlib.models.MLP; got {type(model).__name__}")


def _sparsities(model: MLP, sparsity) -> list[float]:
    _check_model(model)
    return per_member("sparsity", sparsity, model.members, low=0.0, high=1.0, high_open=True)


def _check_masks(model: MLP, masks) -> None:
    shapes = [tuple(w.shape) for w in model.weights]
    given = [tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__ for m in masks]
    if given != shapes:
        raise ValueError(f"current must be one mask per weight matrix, shaped like the weights {shapes}; got {given}")
