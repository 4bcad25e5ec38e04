"""Per-example losses for ensembles: softmax and StableMax cross-entropy, squared error, the
label-smoothed and soft-target cross-entropies; and the early-learning regularization penalty
(ELR) for noisy labels.

All take outputs (S, B, C) and targets (S, B) class ids or (S, B[, k]) real values, and return
(S, B) per-example losses, so that each member averages over its own examples.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ._validate import check_choice, check_float, per_member

LOSSES = ("cross_entropy", "stablemax", "mse")


def stablemax_s(x: torch.Tensor) -> torch.Tensor:
    """s(x) = x + 1 for x >= 0 and 1 / (1 - x) for x < 0 (Prieto et al. 2025)."""
    return torch.where(x >= 0, x + 1, 1 / (1 - torch.clamp(x, max=0)))


def stablemax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """StableMax probabilities: s(x) normalised, a softmax that grows linearly, not exponentially."""
    s = stablemax_s(logits)
    return s / s.sum(dim=dim, keepdim=True)


def mse_targets(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The targets the squared error compares ``outputs`` (S, B, C) with: class ids as one-hot vectors
    (Omnigrok's setting), one number per example as (S, B, 1), vectors as they are."""
    if not targets.is_floating_point():
        return F.one_hot(targets, outputs.shape[-1]).to(outputs.dtype)
    return targets.unsqueeze(-1) if targets.dim() == outputs.dim() - 1 else targets


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs - mse_targets(outputs, targets)).pow(2).mean(-1)


def _cross_entropy(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logp = F.log_softmax(outputs, dim=-1)
    return -logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1).to(outputs.dtype)


def _stablemax_cross_entropy(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    s = stablemax_s(outputs.double())  # in float64, as Prieto et al. do
    # -log(s_y / sum_c s_c) as log(sum_c s_c) - log(s_y): no division or log over every class
    return (s.sum(-1).log() - s.gather(-1, labels.unsqueeze(-1)).squeeze(-1).log()).to(outputs.dtype)


_PER_EXAMPLE = {"cross_entropy": _cross_entropy, "stablemax": _stablemax_cross_entropy, "mse": _mse}


def per_example_loss(outputs: torch.Tensor, targets: torch.Tensor, loss: str) -> torch.Tensor:
    """(S, B) losses; ``loss`` is one of :data:`LOSSES`."""
    function = _PER_EXAMPLE.get(loss)
    if function is None:
        check_choice("loss", loss, LOSSES)
    return function(outputs, targets)


def smoothed_cross_entropy(outputs: torch.Tensor, labels: torch.Tensor, smoothing: torch.Tensor) -> torch.Tensor:
    """(S, B) label-smoothed cross-entropy (1 - eps) CE(y) + eps * mean over classes of -log p_c,
    with one eps per member, smoothing (S,) (Szegedy et al. 2016; as F.cross_entropy's label_smoothing)."""
    logp = F.log_softmax(outputs, dim=-1)
    eps = smoothing.to(outputs).view(-1, 1)
    return (1 - eps) * -logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1) - eps * logp.mean(-1)


def soft_cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(S, B) cross-entropy -sum_c t_c log p_c against target probabilities targets (S, B, C)
    (a teacher's predictions, for distillation: Hinton et al. 2015)."""
    return -(targets.to(outputs) * F.log_softmax(outputs, dim=-1)).sum(-1)


class EarlyLearningRegularization:
    """ELR (Liu et al. 2020), a :class:`genlib.core.train.Penalty` for training with noisy labels.

    Each training example i keeps a running average t_i (momentum ``beta``) of the network's own
    softmax predictions for it; the loss gains ``lam * mean_i log(1 - <t_i, p_i>)``, which pulls
    the current prediction p_i towards t_i. Early in training t_i is mostly the true class (the
    network learns the clean majority first), so the penalty resists memorizing a wrong label.
    ``lam`` takes one value or one per member (0 switches it off for that member).
    """

    def __init__(self, lam: float | Sequence[float], members: int, examples: int, num_classes: int,
                 beta: float = 0.7):
        self.lam = torch.tensor(per_member("lam", lam, members, low=0.0))
        self.beta = check_float("beta", beta, 0.0, 1.0, high_open=True)
        self.targets = torch.zeros(members, examples, num_classes)

    def to(self, device, dtype) -> EarlyLearningRegularization:
        self.lam, self.targets = self.lam.to(device, dtype), self.targets.to(device, dtype)
        return self

    def __call__(self, outputs: torch.Tensor, idx: torch.Tensor, members: slice) -> torch.Tensor:
        p = torch.softmax(outputs, dim=-1).clamp(1e-4, 1 - 1e-4)
        targets = self.targets[members]  # a view: updates write through
        rows = torch.arange(len(idx), device=idx.device)[:, None]
        with torch.no_grad():
            q = p.detach()
            targets[rows, idx] = self.beta * targets[rows, idx] + (1 - self.beta) * q / q.sum(-1, keepdim=True)
        agreement = (targets[rows, idx] * p).sum(-1)
        return self.lam[members] * torch.log(1 - agreement).mean(-1)
