"""Pruning an MLP ensemble: random and magnitude masks, their sparsity, and rewinding (end-of-training chapter).

Masks are lists of 0/1 tensors, one per weight matrix, each (S, fan_in, out) like the weights; they
are made here and set with :meth:`genlib.core.models.MLP.set_weight_masks`. Biases are never pruned.
Both kinds of mask prune layer by layer: every pruned weight matrix of a member loses the same share
of its weights. That is layer-wise pruning, as Frankle and Carbin do for fully connected networks,
not global pruning: one global magnitude threshold prunes hardest the layers whose weights are
smallest (the widest fan-in, at initialisation 1/sqrt(fan_in)) and can disconnect a layer.
``prune_readout=False`` keeps the last weight matrix (the readout) dense: Frankle and Carbin prune
it at half the rate, and a small readout pruned like the rest can leave a class with no weight at
all (layer collapse, Tanaka et al. 2020), which :func:`disconnected` counts.

Iterative magnitude pruning with rewinding (Frankle and Carbin 2019; Frankle et al. 2020) is
:func:`iterative_magnitude_pruning`: train k steps and take ``rewind_to = snapshot(model)``, train
the rest, then every round::

    masks = magnitude_masks(model, 1 - 0.5**r, current=masks)  # prune half of what is left
    rewind(model, rewind_to)
    model.set_weight_masks(masks)
    train(model, data, the_rest)                               # fresh optimizer state

Random pruning at the same sparsity (Liu et al. 2022) is the control: ``random_masks(model, s)``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from ..core._validate import check_int, per_member
from ..core.data import TaskData
from ..core.history import History
from ..core.models import MLP
from ..core.train import TrainConfig, train

Masks = list[torch.Tensor]  # one (S, fan_in, out) 0/1 tensor per weight matrix


def random_masks(model: MLP, sparsity: float | Sequence[float], seed: int = 0, prune_readout: bool = True) -> Masks:
    """Masks that prune round(sparsity * n) of each layer's n weights uniformly at random.

    ``sparsity`` is one share or one per member, in [0, 1). Member s draws from its own generator,
    seeded by ``seed`` and its model seed, so its mask does not depend on the other members. With
    ``prune_readout=False`` the last weight matrix keeps every weight (the other layers' masks are
    the same as with True: the readout is drawn last).
    """
    shares = _sparsities(model, sparsity)
    check_int("seed", seed, low=0)
    _check_flag("prune_readout", prune_readout)
    generators = [torch.Generator().manual_seed(seed * 1_000_003 + s) for s in model.seeds]
    masks = []
    for i, w in enumerate(model.weights):
        if not prune_readout and i == len(model.weights) - 1:
            masks.append(torch.ones_like(w))
            continue
        n = w[0].numel()
        rows = []
        for g, share in zip(generators, shares):
            keep = torch.ones(n)
            keep[torch.randperm(n, generator=g)[: round(share * n)]] = 0
            rows.append(keep.view(w.shape[1:]))
        masks.append(torch.stack(rows).to(w))
    return masks


@torch.no_grad()
def magnitude_masks(model: MLP, sparsity: float | Sequence[float], current: Masks | None = None,
                    prune_readout: bool = True) -> Masks:
    """Masks that keep each layer's largest-magnitude weights, pruning round(sparsity * n) of its n.

    ``sparsity`` is the share of each layer pruned in the end (one, or one per member, in [0, 1)),
    not the share of what is left: pruning half the remaining weights in round r is sparsity
    1 - 0.5**r. Only weights still unmasked in ``current`` are kept, so the new mask is a subset of
    it; ``sparsity`` must then be at least ``current``'s. Ties are broken by position. With
    ``prune_readout=False`` the last weight matrix keeps ``current``'s mask (every weight without one).
    """
    shares = _sparsities(model, sparsity)
    _check_flag("prune_readout", prune_readout)
    if current is not None:
        _check_masks(model, current)
    masks = []
    for i, w in enumerate(model.weights):
        if not prune_readout and i == len(model.weights) - 1:
            masks.append(torch.ones_like(w) if current is None else current[i].to(w).clone())
            continue
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


def disconnected(masks: Masks) -> dict[str, torch.Tensor]:
    """What a mask cuts off, per member: {"units": (S,) hidden units that no path of kept weights
    joins to both an input and an output, "classes": (S,) outputs that no path reaches from any
    input}. Such a unit or class still has its bias, a constant: it carries nothing about the input.
    ``masks`` are one (S, fan_in, out) 0/1 tensor per weight matrix, input layer first."""
    if not isinstance(masks, (list, tuple)) or not masks:
        raise ValueError(f"masks must be a non-empty list of (S, fan_in, out) tensors; got {masks!r:.80}")
    shapes = [tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__ for m in masks]
    chained = all(isinstance(t, tuple) and len(t) == 3 and t[0] == shapes[0][0] for t in shapes) and all(
        a[2] == b[1] for a, b in zip(shapes, shapes[1:]))
    if not chained:
        raise ValueError(f"masks must be one (S, fan_in, out) tensor per weight matrix, each layer's out the next "
                         f"one's fan_in; got {shapes}")
    if any(((m != 0) & (m != 1)).any() for m in masks):
        raise ValueError("masks must hold only 0 and 1; got other values")
    kept = [m.detach().to(torch.float64) for m in masks]
    reach = [torch.ones(kept[0].shape[:2], dtype=torch.float64, device=kept[0].device)]  # (S, inputs)
    for m in kept:  # forward: a unit is reached if a kept weight joins it to a reached unit below
        reach.append(((reach[-1][:, None, :] @ m)[:, 0] > 0).to(torch.float64))
    back = [torch.ones(kept[-1].shape[0], kept[-1].shape[2], dtype=torch.float64, device=kept[0].device)]
    for m in reversed(kept):  # backward: a unit reaches the outputs through a kept weight to one that does
        back.insert(0, ((m @ back[0][..., None])[..., 0] > 0).to(torch.float64))
    units = torch.zeros(kept[0].shape[0], dtype=torch.int64, device=kept[0].device)
    for i in range(1, len(kept)):  # the hidden layers
        units += ((reach[i] * back[i]) == 0).sum(1)
    return {"units": units, "classes": (reach[-1] == 0).sum(1).to(torch.int64)}


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


def iterative_magnitude_pruning(model: MLP, data: TaskData, config: TrainConfig, rounds: int, rewind_step: int,
                                members: list[dict] | None = None, prune_readout: bool = True) -> History:
    """Iterative magnitude pruning with rewinding (Frankle and Carbin 2019; Frankle et al. 2020).

    ``config`` is how the dense network trains (``config.steps`` in all). It trains ``rewind_step``
    steps, its weights are kept (:func:`snapshot`), and it trains the remaining
    ``config.steps - rewind_step``. Then ``rounds`` times: half of every layer's remaining weights
    are pruned, those of smallest magnitude (:func:`magnitude_masks`); the rest are rewound to the
    kept weights; and the network trains the remaining steps again. Every part starts with fresh
    optimizer state and ``config``'s minibatch order (and learning-rate milestones counted from
    its start), and is evaluated only at its end.

    Returns a History along the axis "sparsity" (0 for the dense network, then 1 - 0.5**r after
    round r; with ``prune_readout=False`` the share of every layer but the readout, which stays
    dense) of the final "train_acc" and "test_acc" of every round; ``members`` labels the members
    as in :func:`genlib.core.train.train`. Its arrays hold every round's masks, "masks/layer{i}"
    (S, rounds, fan_in, out) uint8, and the weights rewound to, "rewind/{parameter name}", for
    controls (a ticket's mask on new weights, a random mask on the rewound ones). The model is
    trained in place: it ends with the last round's weights and masks (``model.weight_masks``).
    """
    _check_model(model)
    _check_flag("prune_readout", prune_readout)
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a genlib.core.train.TrainConfig; got {type(config).__name__}")
    check_int("rounds", rounds, low=0)
    check_int("rewind_step", rewind_step, low=1, high=config.steps - 1)
    rest = config.steps - rewind_step
    early_part = replace(config, steps=rewind_step, eval_every=rewind_step, eval_log_points=0)
    round_part = replace(config, steps=rest, eval_every=rest, eval_log_points=0)
    train(model, data, early_part, members=members)
    early = snapshot(model)  # the weights every round rewinds to
    runs, masks, kept = [train(model, data, round_part, members=members)], None, []
    sparsities = [0.0] + [1 - 0.5**r for r in range(1, rounds + 1)]
    for sparsity in sparsities[1:]:
        masks = magnitude_masks(model, sparsity, masks, prune_readout=prune_readout)
        kept.append([m.detach().cpu().to(torch.uint8).numpy() for m in masks])
        rewind(model, early)
        model.set_weight_masks(masks)
        runs.append(train(model, data, round_part, members=members))
    metrics = {name: np.stack([run.final(name) for run in runs]) for name in ("train_acc", "test_acc")}
    arrays = {f"rewind/{name}": v.cpu().numpy() for name, v in early.items()}
    if kept:
        arrays |= {f"masks/layer{i}": np.stack([r[i] for r in kept], axis=1) for i in range(len(kept[0]))}
    return History(np.array(sparsities), metrics, runs[0].members, {"config": runs[0].meta["config"]},
                   axis_name="sparsity", arrays=arrays)


def _check_flag(name: str, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {value!r}")


def _check_model(model) -> None:
    if not isinstance(model, MLP):
        raise ValueError(f"model must be a genlib.core.models.MLP; got {type(model).__name__}")


def _sparsities(model: MLP, sparsity) -> list[float]:
    _check_model(model)
    return per_member("sparsity", sparsity, model.members, low=0.0, high=1.0, high_open=True)


def _check_masks(model: MLP, masks) -> None:
    shapes = [tuple(w.shape) for w in model.weights]
    given = [tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__ for m in masks]
    if given != shapes:
        raise ValueError(f"current must be one mask per weight matrix, shaped like the weights {shapes}; got {given}")
