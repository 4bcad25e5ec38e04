"""Checks for the exercises: each takes the reader's function, compares it with genlib's reference
on random inputs, prints a clear verdict and returns True or False (ARENA's tests.py style).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..core.data import TaskData
from ..core.losses import stablemax
from ..core.metrics import spectral_centroid
from ..core.models import MLP
from ..core.optim import perpendicular_gradient
from ..measures.curvature import dense_hessian, member_loss_function, top_eigenvalue
from ..measures.regression import SpectralSolver


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
    error on random data) against genlib's :func:`~genlib.measures.curvature.top_eigenvalue`, to 1%."""
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


def check_nc1(candidate: Callable[[torch.Tensor, torch.Tensor, int], float], seed: int = 0) -> bool:
    """End-of-training chapter, exercise: NC1 = Tr(Sigma_W Sigma_B^+) / K of features (N, d) with class ids
    (N,) and K classes (no member axis). Checked against :func:`genlib.measures.collapse.within_class_variation`
    to 1e-6 relative on random features (fewer and more dimensions than classes) and nearly collapsed ones."""
    from ..measures.collapse import within_class_variation  # imported here: the chapters' other checkers do not need it

    g = torch.Generator().manual_seed(seed)
    cases = []
    for n, d, k, noise in [(60, 4, 5, None), (80, 12, 4, None), (100, 8, 4, 0.01)]:
        labels = (torch.arange(n) % k)[torch.randperm(n, generator=g)]
        means = torch.randn(k, d, generator=g, dtype=torch.float64) * (1.0 if noise is None else 3.0)
        spread = 1.0 if noise is None else noise
        features = means[labels] + spread * torch.randn(n, d, generator=g, dtype=torch.float64)
        kind = "random features" if noise is None else f"nearly collapsed features (noise {noise})"
        cases.append((f"{kind}, N = {n}, d = {d}, K = {k}", features, labels, k))
    for case, features, labels, k in cases:
        expected = float(within_class_variation(features[None], labels[None], k)[0])
        got = candidate(features.clone(), labels.clone(), k)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = float(got)
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            print(f"✗ NC1: your function should return one number; for {case} it returned {got!r}")
            return False
        if not abs(got - expected) <= 1e-6 * abs(expected):
            hint = {k: " (forgot to divide by K?)", 1 / k: " (divided by K twice?)"}.get(round(got / expected, 6), "")
            print(f"✗ NC1 on {case}: expected {expected:.6g}, got {got:.6g}{hint}\n  Sigma_W: the mean over all N "
                  "examples of (h - mu_c)(h - mu_c)^T; Sigma_B: the mean over the K classes of (mu_c - mu_G)"
                  "(mu_c - mu_G)^T, mu_G the mean of all features; its pseudo-inverse (torch.linalg.pinv)")
            return False
    print(f"✓ NC1: matches genlib's within 1e-6 on {len(cases)} cases (random and nearly collapsed features)")
    return True


def check_ntk_entry(candidate: Callable[..., object], seed: int = 0) -> bool:
    """Lazy-and-rich chapter, exercise: one entry of the empirical NTK, <df(x1)/dw, df(x2)/dw>, for
    a single network f(params, x) -> scalar (params a tuple of tensors, no member axis; x one input
    (3,)). Checked on two small random networks against :func:`genlib.measures.ntk.empirical_ntk`, to 1e-8."""
    from torch.func import functional_call

    from ..measures.ntk import empirical_ntk

    g = torch.Generator().manual_seed(seed)
    models = [MLP(3, (6,), 1, [seed], activation="tanh").double(),
              MLP(3, (5, 4), 1, [seed + 1], output_scale=2.0).double()]
    for number, model in enumerate(models, 1):
        names, buffers = [n for n, _ in model.named_parameters()], dict(model.named_buffers())

        def f(params, x, model=model, names=names, buffers=buffers):
            state = {n: p[None] for n, p in zip(names, params)} | buffers  # one member
            return functional_call(model, state, (x.reshape(1, 1, -1),)).reshape(())

        x1, x2 = torch.randn(2, 3, generator=g, dtype=torch.float64)
        expected = float(empirical_ntk(model, x1[None], x2[None])[0, 0, 0])
        params = tuple(p[0].detach().clone().requires_grad_() for p in model.parameters())
        got = candidate(f, params, x1.clone(), x2.clone())
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            print(f"✗ NTK entry: your function should return one number; it returned {type(got).__name__}")
            return False
        if not abs(got - expected) <= 1e-8 * max(1.0, abs(expected)):
            w = [p.detach().clone().requires_grad_() for p in params]
            g1, g2 = torch.autograd.grad(f(w, x1), w), torch.autograd.grad(f(w, x2), w)
            w = [p.detach() for p in w]
            parts = [float((a * b).sum()) for a, b in zip(g1, g2)]
            hint = "the sum over every parameter tensor of <grad at x1, grad at x2>"
            if any(abs(got - part) <= 1e-8 * max(1.0, abs(part)) for part in parts):
                hint = "that is one parameter tensor's share: sum the products over every parameter tensor"
            elif abs(got - float(f(w, x1) * f(w, x2))) <= 1e-8 * max(1.0, abs(got)):
                hint = "that is f(x1) f(x2): the kernel multiplies the gradients of the outputs, not the outputs"
            print(f"✗ NTK entry (network {number}): expected {expected:.10g}, got {got:.10g}\n  ({hint})")
            return False
    print(f"✓ NTK entry: matches genlib's empirical_ntk to 1e-8 on {len(models)} small random networks")
    return True
