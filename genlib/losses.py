"""Per-example losses for ensembles: softmax and StableMax cross-entropy, and squared error.

All take outputs (S, B, C) and targets (S, B) class ids or (S, B[, k]) real values, and return
(S, B) per-example losses, so that each member averages over its own examples.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._validate import check_choice

LOSSES = ("cross_entropy", "stablemax", "mse")


def stablemax_s(x: torch.Tensor) -> torch.Tensor:
    """s(x) = x + 1 for x >= 0 and 1 / (1 - x) for x < 0 (Prieto et al. 2025)."""
    return torch.where(x >= 0, x + 1, 1 / (1 - torch.clamp(x, max=0)))


def stablemax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """StableMax probabilities: s(x) normalised, a softmax that grows linearly, not exponentially."""
    s = stablemax_s(logits)
    return s / s.sum(dim=dim, keepdim=True)


def per_example_loss(outputs: torch.Tensor, targets: torch.Tensor, loss: str) -> torch.Tensor:
    """(S, B) losses. StableMax is evaluated in float64, as Prieto et al. do."""
    check_choice("loss", loss, LOSSES)
    if loss == "mse":  # class ids are compared with one-hot vectors (Omnigrok's setting)
        if not targets.is_floating_point():
            targets = F.one_hot(targets, outputs.shape[-1]).to(outputs.dtype)
        elif targets.dim() == outputs.dim() - 1:
            targets = targets.unsqueeze(-1)
        return (outputs - targets).pow(2).mean(-1)
    if loss == "cross_entropy":
        logp = F.log_softmax(outputs, dim=-1)
    else:
        logp = torch.log(stablemax(outputs.double(), dim=-1))
    return -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1).to(outputs.dtype)
