"""Least squares in closed form: minimum-norm, ridge and gradient-descent solutions from one SVD.

With training features F (n x N) = U diag(s) V^T and targets Y (n x k), each solution used in the
book is a filter on the singular values, w = V diag(f(s)) U^T Y:

- minimum norm (the pseudo-inverse; what gradient descent from zero converges to): f = 1/s;
- ridge, minimising (1/n)|Fw - Y|^2 + lam |w|^2: f = s / (s^2 + n lam);
- t steps of gradient descent from w = 0 on (1/2n)|Fw - Y|^2 with step eta:
  f = (1 - (1 - eta s^2 / n)^t) / s.

So a sweep over ridges or training times costs one SVD (Hastie et al. 2022, "Surprises in
high-dimensional ridgeless least squares"; Liu & Flanigan 2023 for the gradient-descent view).
Everything runs in float64: near the interpolation threshold the smallest singular values are
tiny and float32 would drown them.
"""
from __future__ import annotations

import math

import torch

from ..core._validate import check_float, check_int

RELATIVE_CUTOFF = 1e-10  # singular values below this share of the largest count as zero


def relu_features(x: torch.Tensor, n_features: int, seed: int) -> torch.Tensor:
    """Random ReLU features relu(x W) / sqrt(N), W ~ N(0, 2/d) (He scale), drawn from ``seed``.

    Inputs with |x|^2 = d (as :func:`genlib.core.data.digits` gives) then have feature vectors of
    squared norm about 1, so ridge values mean the same thing at every width.
    """
    check_int("n_features", n_features, low=1)
    check_int("seed", seed, low=0)
    g = torch.Generator().manual_seed(seed)
    d = x.shape[-1]
    w = torch.randn(d, n_features, generator=g, dtype=torch.float64) * math.sqrt(2 / d)  # drawn on the CPU:
    return torch.relu(x.to(torch.float64) @ w.to(x.device)) / math.sqrt(n_features)  # the same W on any device


class SpectralSolver:
    """The SVD of one training feature matrix, and solutions for any filter of its spectrum."""

    def __init__(self, features: torch.Tensor):
        if features.dim() != 2 or min(features.shape) < 1:
            raise ValueError(f"features must be an (n, N) matrix; got shape {tuple(features.shape)}")
        self.n = features.shape[0]
        u, s, vh = torch.linalg.svd(features.to(torch.float64), full_matrices=False)
        keep = s > s[0] * RELATIVE_CUTOFF
        self.u, self.s, self.vh = u[:, keep], s[keep], vh[keep]

    def coefficients(self, targets: torch.Tensor, spectral_filter: torch.Tensor) -> torch.Tensor:
        """(r, k) weights in the basis of V: diag(filter) U^T Y, for targets (n, k).

        Their norm is the norm of the weights; predictions are ``project(features) @ coefficients``.
        """
        if targets.shape[0] != self.n:
            raise ValueError(f"targets must have {self.n} rows (one per training example); got {targets.shape[0]}")
        return spectral_filter[:, None] * (self.u.T @ targets.to(torch.float64))

    def weights(self, targets: torch.Tensor, spectral_filter: torch.Tensor) -> torch.Tensor:
        """(N, k) weights V diag(filter) U^T Y for targets (n, k)."""
        return self.vh.T @ self.coefficients(targets, spectral_filter)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """(m, r) features in the basis of V: one product, then every solution predicts cheaply."""
        return features.to(torch.float64) @ self.vh.T

    def min_norm(self) -> torch.Tensor:
        return 1 / self.s

    def ridge(self, ridge: float) -> torch.Tensor:
        check_float("ridge", ridge, low=0.0)
        return self.s / (self.s**2 + self.n * ridge)

    def gradient_descent(self, lr: float, steps: int) -> torch.Tensor:
        check_float("lr", lr, 0.0, 2 * self.n / float(self.s[0]) ** 2, low_open=True, high_open=True)
        check_int("steps", steps, low=0)
        return (1 - (1 - lr * self.s**2 / self.n) ** steps) / self.s
