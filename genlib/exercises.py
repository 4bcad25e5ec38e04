"""Checks for the exercises: each takes the reader's function, compares it with genlib's reference
on random inputs, prints a clear verdict and returns True or False (ARENA's tests.py style).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from .losses import stablemax
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
