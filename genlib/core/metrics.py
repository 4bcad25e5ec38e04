"""Measurements on ensembles, each returning one number per member: a (S,) tensor."""
from __future__ import annotations

import numpy as np
import torch

from ._validate import check_int
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


def expected_calibration_error(outputs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> torch.Tensor:
    """(S,) ECE (Guo et al. 2017): confidence = largest softmax probability, in ``bins`` equal-width
    bins ((b-1)/bins, b/bins] of [0, 1]; the sum over bins of (share of examples in the bin) times
    |accuracy - mean confidence| in it. outputs (S, N, C), labels (S, N). End-of-training chapter."""
    check_int("bins", bins, low=1)
    confidence, correct = _confidence(outputs, labels)
    which = (confidence * bins).ceil().long().clamp(1, bins) - 1  # (S, N) bin of each example
    gap = torch.zeros(len(which), bins, dtype=torch.float64, device=which.device)
    gap.scatter_add_(1, which, correct - confidence)  # per bin: sum(correct) - sum(confidence)
    return gap.abs().sum(1) / which.shape[1]


def reliability_curve(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 10,
                      min_count: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(mean confidence (B,), accuracy (B,)) in the bins of a reliability diagram, members pooled.

    probabilities (S, N, C) (e.g. a softmax), labels (S, N). Confidence is an example's largest
    probability, correct when that class is the label (the first of equal ones); the bins are
    [b/bins, (b+1)/bins), the last one closed at 1, and only those holding ``min_count`` examples
    or more are returned, in order. Computed in the probabilities' precision. End-of-training chapter."""
    _check_predictions("probabilities", "a floating-point tensor", probabilities, labels)
    if ((probabilities < 0) | (probabilities > 1)).any():
        raise ValueError("probabilities must lie in [0, 1]; got values outside")
    check_int("bins", bins, low=1)
    check_int("min_count", min_count, low=1)
    p = probabilities.detach().cpu()
    confidence = p.max(-1).values.flatten().numpy()
    correct = (p.argmax(-1) == labels.cpu()).flatten().numpy()
    which = np.clip(np.digitize(confidence, np.linspace(0, 1, bins + 1)) - 1, 0, bins - 1)
    filled = [b for b in range(bins) if np.sum(which == b) >= min_count]
    return (np.array([confidence[which == b].mean() for b in filled]),
            np.array([correct[which == b].mean() for b in filled]))


def risk_coverage(outputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(coverage (N,), risk (S, N)): the error rate of each member's k most confident examples
    (largest softmax probability; ties in example order) at coverage k / N, k = 1..N: selective
    classification, answering only when confident. End-of-training chapter."""
    confidence, correct = _confidence(outputs, labels)
    order = torch.sort(confidence, dim=1, descending=True, stable=True).indices
    errors = (1 - correct.gather(1, order)).cumsum(1)  # (S, N)
    k = torch.arange(1, errors.shape[1] + 1, dtype=torch.float64, device=errors.device)
    return k / errors.shape[1], errors / k


def area_under_risk_coverage(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(S,) AURC: the mean of the risk-coverage curve over k = 1..N (lower: errors are the least confident)."""
    return risk_coverage(outputs, labels)[1].mean(1)


def excess_area_under_risk_coverage(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(S,) E-AURC (Geifman et al. 2019): AURC minus that of the best ranking of the same predictions
    (every correct example before every error), so that members with different error rates compare
    by how well their confidence ranks their own errors (0: perfectly)."""
    _, correct = _confidence(outputs, labels)
    k = torch.arange(1, correct.shape[1] + 1, dtype=torch.float64, device=correct.device)
    best = (k - correct.sum(1, keepdim=True)).clamp_min(0) / k  # errors only once the correct ones run out
    return area_under_risk_coverage(outputs, labels) - best.mean(1)


def _confidence(outputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked arguments -> (S, N) largest softmax probabilities and 1.0 where their class is the label (float64)."""
    _check_predictions("outputs", "floating-point logits", outputs, labels)
    device = "cpu" if outputs.device.type == "mps" else outputs.device  # MPS has no float64
    confidence, predicted = torch.softmax(outputs.detach().to(device, torch.float64), dim=-1).max(-1)
    return confidence, (predicted == labels.to(predicted.device)).double()


def worst_rise(values) -> float:
    """Largest ratio of a positive curve to the lowest value it reached before (1.0: it never rises).

    Used to assert that a curve is non-increasing up to a tolerance (e.g. test error over width)."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or not len(values) or np.any(values <= 0):
        raise ValueError(f"values must be a non-empty 1-D sequence of positive numbers; got {values!r}")
    return float(np.max(values / np.minimum.accumulate(values)))


def _check_predictions(name: str, kind: str, values, labels) -> None:
    """Raise a ValueError unless ``values`` is (S, N, C) floating point and ``labels`` (S, N) class ids."""
    if not isinstance(values, torch.Tensor) or values.dim() != 3 or not values.is_floating_point():
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"{name} must be {kind} (S, N, C); got {shape}")
    if not isinstance(labels, torch.Tensor) or labels.shape != values.shape[:2] or labels.is_floating_point():
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be class ids shaped like {name}' (S, N) = {tuple(values.shape[:2])}; "
                         f"got {shape}")
