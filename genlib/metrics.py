"""Measurements on ensembles, each returning one number per member: a (S,) tensor."""
from __future__ import annotations

import numpy as np
import torch

from .losses import per_example_loss


def accuracy(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Share of examples whose largest output is the label: outputs (S, B, C), labels (S, B)."""
    return (outputs.argmax(-1) == labels).to(torch.float32).mean(-1)


def parameter_norm(model: torch.nn.Module) -> torch.Tensor:
    """L2 norm of all of a member's parameters together."""
    return torch.sqrt(sum(p.detach().pow(2).flatten(1).sum(1) for p in model.parameters()))


def softmax_collapse(outputs: torch.Tensor, labels: torch.Tensor, loss: str = "cross_entropy") -> torch.Tensor:
    """Share of examples whose loss, as trained, is exactly 0 in the outputs' precision.

    For softmax cross-entropy the gradient on the correct logit, p_correct - 1, is then exactly
    0 too: the example has stopped pulling its own logit up (Softmax Collapse, Prieto et al.
    2025). StableMax decays polynomially, so its loss stays positive. Grokking chapter.
    """
    return (per_example_loss(outputs, labels, loss) == 0).to(torch.float32).mean(-1)


def fourier_concentration(embedding: torch.Tensor, top_k: int = 5) -> torch.Tensor:
    """Share of an embedding's power in its top_k frequencies over the token axis.

    embedding: (S, p, d). Frequencies k and p - k are one pair; the constant (k = 0) is left
    out. A random embedding spreads its power (about top_k / (p // 2)); a network that has found
    the Fourier algorithm for modular addition concentrates it on a few frequencies (Nanda et
    al. 2023). Grokking chapter.
    """
    p = embedding.shape[1]
    spectrum = torch.fft.rfft(embedding.detach().double(), dim=1).abs().pow(2).sum(-1)  # (S, p//2+1)
    power = spectrum[:, 1:]
    k = min(top_k, power.shape[1])
    return (power.topk(k, dim=1).values.sum(1) / power.sum(1)).to(torch.float32) if p > 2 else torch.ones(len(power))


def relative_change(model: torch.nn.Module, initial: list[torch.Tensor]) -> torch.Tensor:
    """||w - w0|| / ||w0|| per member: how far training moved the weights (small = lazy)."""
    moved = sum((p.detach() - p0).pow(2).flatten(1).sum(1) for p, p0 in zip(model.parameters(), initial))
    start = sum(p0.pow(2).flatten(1).sum(1) for p0 in initial)
    return torch.sqrt(moved / start)


def spectral_centroid(outputs: torch.Tensor) -> torch.Tensor:
    """Mean frequency of (S, N) functions sampled on N even points, weighted by the magnitude of
    their spectrum (the constant term excluded): a complexity measure. The function is mirrored
    before the FFT (a cosine transform), so that its two ends do not meet in a jump; frequency k
    is k half-cycles over the interval. Spectral-bias chapter (Neural Redshift)."""
    mirrored = torch.cat([outputs, outputs.flip(-1)], dim=-1)
    spectrum = torch.fft.rfft(mirrored - mirrored.mean(-1, keepdim=True), dim=-1).abs()[:, 1 : outputs.shape[-1]]
    k = torch.arange(1, spectrum.shape[-1] + 1, dtype=spectrum.dtype)
    return (spectrum * k).sum(-1) / spectrum.sum(-1).clamp_min(1e-30)


def worst_rise(values) -> float:
    """Largest ratio of a positive curve to the lowest value it reached before (1.0: it never rises).

    Used to assert that a curve is non-increasing up to a tolerance (e.g. test error over width)."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or not len(values) or np.any(values <= 0):
        raise ValueError(f"values must be a non-empty 1-D sequence of positive numbers; got {values!r}")
    return float(np.max(values / np.minimum.accumulate(values)))
