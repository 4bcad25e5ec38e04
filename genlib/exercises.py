"""Checks for the exercises: each takes the reader's function, compares it with genlib's reference
on random inputs, prints a clear verdict and returns True or False (ARENA's tests.py style).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from .curvature import dense_hessian, member_loss_function, top_eigenvalue
from .data import TaskData
from .losses import stablemax
from .metrics import spectral_centroid
from .models import MLP
from .optim import perpendicular_gradient
from .regression import SpectralSolver


def _report(name: str, expected: torch.Tensor, got, example: torch.Tensor, atol: float) -> bool:
    if not isinstance(got, torch.Tensor):
        print(f"✗ {name}: your function should return a torch.Tensor; it returned {type(got).__name__}")
        return False
    if got.shape != expected.shape:
        print(f"✗ {name}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}")
        return False
    if not torch.isfinite(got).all():
        print(f"✗ {name}: your output has NaN or infinite values (very large or negative inputs?)")
        return False
    error = (got - expected).abs()
    if error.max() > atol:
        i = int(error.flatten().argmax()) // expected.shape[-1]
        print(f"✗ {name}: largest difference {error.max():.3g}, for input row\n  {example[i].tolist()}\n"
              f"  expected {expected[i].tolist()}\n  got      {got[i].tolist()}")
        return False
    print(f"✓ {name}: matches the reference on {len(example)} random inputs")
    return True


def check_stablemax(candidate: Callable[[torch.Tensor], torch.Tensor], seed: int = 0) -> bool:
    """Grokking chapter, exercise 1: StableMax over the last dimension."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(-2, 3, 200, dtype=torch.float64)[:, None]  # tiny to huge logits
    logits = torch.randn(200, 10, generator=g, dtype=torch.float64) * scales
    return _report("StableMax", stablemax(logits), candidate(logits.clone()), logits, atol=1e-9)


def check_perpendicular_gradient(
    candidate: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], seed: int = 0
) -> bool:
    """Grokking chapter, exercise 4: ⊥Grad of one weight tensor w and its gradient g (no member axis)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(50, 8, generator=g, dtype=torch.float64)
    grad = torch.randn(50, 8, generator=g, dtype=torch.float64) + 0.5 * w
    expected = torch.stack([perpendicular_gradient(w[i : i + 1], grad[i : i + 1])[0] for i in range(len(w))])
    got = torch.stack([candidate(w[i].clone(), grad[i].clone()) for i in range(len(w))])
    return _report("⊥Grad", expected, got, torch.cat([w, grad], 1), atol=1e-9)


def check_ridge(candidate: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor], seed: int = 0) -> bool:
    """Double-descent chapter, exercise 1: ridge weights for features (n, N), targets (n, k), lambda."""
    g = torch.Generator().manual_seed(seed)
    for n, width in [(40, 10), (40, 120)]:  # fewer, then more features than examples
        features = torch.randn(n, width, generator=g, dtype=torch.float64) / width**0.5
        targets = torch.randn(n, 3, generator=g, dtype=torch.float64)
        solver = SpectralSolver(features)
        expected = solver.weights(targets, solver.ridge(0.01))
        got = candidate(features.clone(), targets.clone(), 0.01)
        case = f"ridge (n = {n} examples, N = {width} features, lambda = 0.01)"
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            print(f"✗ {case}: expected a tensor of shape {tuple(expected.shape)}, got {shape}")
            return False
        error = float((got - expected).abs().max())
        if not error <= 1e-8:
            print(f"✗ {case}: largest difference from the reference weights {error:.3g} "
                  f"(is the penalty n * lambda * I, as in (1/n)|Fw - Y|^2 + lambda |w|^2?)")
            return False
    print("✓ ridge: matches the reference with fewer and with more features than examples")
    return True


def check_label_noise(candidate: Callable[[torch.Tensor, float, int, torch.Generator], torch.Tensor],
                      seed: int = 0) -> bool:
    """Memorization chapter, exercise 1: move a share of labels to a different, random class."""
    labels = torch.randint(0, 10, (5000,), generator=torch.Generator().manual_seed(seed))
    got = candidate(labels.clone(), 0.3, 10, torch.Generator().manual_seed(seed + 1))
    if not isinstance(got, torch.Tensor) or got.shape != labels.shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        print(f"✗ label noise: expected a tensor of shape {tuple(labels.shape)}, got {shape}")
        return False
    changed = got != labels
    if int(changed.sum()) != 1500:
        print(f"✗ label noise: 30% of 5000 labels should change, exactly 1500; {int(changed.sum())} did "
              "(a random class may equal the true one: draw among the other classes)")
        return False
    if got.min() < 0 or got.max() > 9:
        print("✗ label noise: new labels must stay in 0..9")
        return False
    shift = (got[changed] - labels[changed]) % 10  # 1..9 if uniform over the other classes
    counts = torch.bincount(shift, minlength=10)[1:].float()
    if counts.min() < 0.6 * counts.mean():
        print(f"✗ label noise: the new class should be uniform over the 9 others; shift counts {counts.tolist()}")
        return False
    print("✓ label noise: exactly 30% of the labels changed, each to a uniformly chosen other class")
    return True


def check_spectral_centroid(candidate: Callable[[torch.Tensor], torch.Tensor], seed: int = 0) -> bool:
    """Spectral-bias chapter, exercise 1: the mirrored-FFT spectral centroid of (S, N) functions."""
    g = torch.Generator().manual_seed(seed)
    x = torch.linspace(-1, 1, 256, dtype=torch.float64)
    freq = torch.randint(1, 20, (20, 1), generator=g)
    outputs = torch.cos(torch.pi * freq * x) + 0.5 * x + 0.1 * torch.randn(20, 256, generator=g, dtype=torch.float64)
    return _report("spectral centroid", spectral_centroid(outputs)[:, None], _column(candidate(outputs.clone())),
                   outputs, atol=1e-6)


def check_sharpness(candidate: Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor], object],
                    seed: int = 0) -> bool:
    """Sharpness chapter, exercise 1: the top Hessian eigenvalue of ``loss_of`` at the point ``w``
    (P,), by power iteration on Hessian-vector products. Checked on five small tanh networks (squared
    error on random data) against genlib's :func:`~genlib.curvature.top_eigenvalue`, to 1%."""
    g = torch.Generator().manual_seed(seed)
    seeds = list(range(seed * 5, seed * 5 + 5))
    x, labels = torch.randn(5, 40, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (5, 40), generator=g)
    blocks = [{"train": (x[s], labels[s]), "test": (x[s], labels[s])} for s in range(5)]
    data = TaskData.from_blocks(blocks, 3, "random points, random labels")
    model = MLP(6, (12,), 3, seeds, activation="tanh").double()
    expected = top_eigenvalue(model, data, "mse", iterations=500)
    exact = torch.stack([torch.linalg.eigvalsh(dense_hessian(model, data, "mse", s))[-1] for s in range(5)])
    if not torch.allclose(expected, exact, rtol=1e-6):  # the reference itself is checked first
        raise RuntimeError(f"genlib's reference did not converge: {expected.tolist()} vs exact {exact.tolist()}")
    got = []
    for s in range(5):
        loss_of, w = member_loss_function(model, data, "mse", s)
        value = candidate(loss_of, w.clone())
        if not isinstance(value, (torch.Tensor, float)) or torch.as_tensor(value).numel() != 1:
            print(f"✗ sharpness: your function should return one number; it returned {value!r}")
            return False
        got.append(float(value))
    got = torch.tensor(got, dtype=torch.float64)
    error = ((got - expected).abs() / expected).max()
    if not torch.isfinite(got).all() or error > 0.01:
        print(f"✗ sharpness: expected {expected.numpy().round(4).tolist()}\n  got      {got.numpy().round(4).tolist()}"
              "\n  (more iterations? a negative or tiny value: is the vector normalised at every step?)")
        return False
    print(f"✓ sharpness: within {error:.1e} of genlib's on {len(got)} small networks (top eigenvalues "
          f"{expected.min():.3g} to {expected.max():.3g})")
    return True


def _column(values):
    return values[:, None] if isinstance(values, torch.Tensor) and values.dim() == 1 else values
