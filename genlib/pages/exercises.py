"""Checks for the exercises: each takes the reader's function, compares it with genlib's reference
on random inputs, prints a clear verdict (✓ or ✗ and what differs) and returns it as a
:class:`CheckResult` (ARENA's tests.py style). A result is true when the answer passed, so
``if check_stablemax(f):`` and ``assert check_stablemax(f)`` work as they did when checks returned a bool.

Graders call :func:`grade` instead (grading/ holds the otter-grader assignments): the same check,
at any seed, with genlib's references for the exercise made unusable while the answer runs, so that an
answer that just calls genlib's own function fails.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ..core.data import TaskData
from ..core.losses import stablemax
from ..core.metrics import spectral_centroid
from ..core.models import MLP, mup_scales
from ..core.optim import perpendicular_gradient
from ..measures.curvature import dense_hessian, member_loss_function
from ..measures.regression import SpectralSolver


@dataclass(frozen=True)
class CheckResult:
    """A check's verdict: ``passed`` and the ``message`` it printed (starting with ✓ or ✗).

    True when passed (``bool(result)``). In Jupyter it shows nothing more: the message is already printed.
    """

    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def _ipython_display_(self) -> None:
        pass


def _pass(message: str) -> CheckResult:
    print(message)
    return CheckResult(True, message)


def _fail(message: str) -> CheckResult:
    print(message)
    return CheckResult(False, message)


def _report(name: str, expected: torch.Tensor, got, example: torch.Tensor, atol: float) -> CheckResult:
    if not isinstance(got, torch.Tensor):
        return _fail(f"✗ {name}: your function should return a torch.Tensor; it returned {type(got).__name__}")
    if got.shape != expected.shape:
        return _fail(f"✗ {name}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}")
    if not torch.isfinite(got).all():
        return _fail(f"✗ {name}: your output has NaN or infinite values (very large or negative inputs?)")
    error = (got - expected).abs()
    if error.max() > atol:
        i = int(error.flatten().argmax()) // expected.shape[-1]
        return _fail(f"✗ {name}: largest difference {error.max():.3g}, for input row\n  {example[i].tolist()}\n"
                     f"  expected {expected[i].tolist()}\n  got      {got[i].tolist()}")
    return _pass(f"✓ {name}: matches the reference on {len(example)} random inputs")


def check_stablemax(candidate: Callable[[torch.Tensor], torch.Tensor], seed: int = 0) -> CheckResult:
    """Grokking chapter, exercise 1: StableMax over the last dimension."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(-2, 3, 200, dtype=torch.float64)[:, None]  # tiny to huge logits
    logits = torch.randn(200, 10, generator=g, dtype=torch.float64) * scales
    return _report("StableMax", stablemax(logits), candidate(logits.clone()), logits, atol=1e-9)


def check_perpendicular_gradient(
    candidate: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], seed: int = 0
) -> CheckResult:
    """Grokking chapter, exercise 4: ⊥Grad of one weight tensor w and its gradient g (no member axis)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(50, 8, generator=g, dtype=torch.float64)
    grad = torch.randn(50, 8, generator=g, dtype=torch.float64) + 0.5 * w
    expected = torch.stack([perpendicular_gradient(w[i : i + 1], grad[i : i + 1])[0] for i in range(len(w))])
    got = torch.stack([candidate(w[i].clone(), grad[i].clone()) for i in range(len(w))])
    return _report("⊥Grad", expected, got, torch.cat([w, grad], 1), atol=1e-9)


def check_ridge(candidate: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor], seed: int = 0) -> CheckResult:
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
            return _fail(f"✗ {case}: expected a tensor of shape {tuple(expected.shape)}, got {shape}")
        error = float((got - expected).abs().max())
        if not error <= 1e-8:
            return _fail(f"✗ {case}: largest difference from the reference weights {error:.3g} "
                         f"(is the penalty n * lambda * I, as in (1/n)|Fw - Y|^2 + lambda |w|^2?)")
    return _pass("✓ ridge: matches the reference with fewer and with more features than examples")


def check_label_noise(candidate: Callable[[torch.Tensor, float, int, torch.Generator], torch.Tensor],
                      seed: int = 0) -> CheckResult:
    """Memorization chapter, exercise 1: move a share of labels to a different, random class."""
    labels = torch.randint(0, 10, (5000,), generator=torch.Generator().manual_seed(seed))
    got = candidate(labels.clone(), 0.3, 10, torch.Generator().manual_seed(seed + 1))
    if not isinstance(got, torch.Tensor) or got.shape != labels.shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        return _fail(f"✗ label noise: expected a tensor of shape {tuple(labels.shape)}, got {shape}")
    changed = got != labels
    if int(changed.sum()) != 1500:
        return _fail(f"✗ label noise: 30% of 5000 labels should change, exactly 1500; {int(changed.sum())} did "
                     "(a random class may equal the true one: draw among the other classes)")
    if got.min() < 0 or got.max() > 9:
        return _fail("✗ label noise: new labels must stay in 0..9")
    shift = (got[changed] - labels[changed]) % 10  # 1..9 if uniform over the other classes
    counts = torch.bincount(shift, minlength=10)[1:].float()
    if counts.min() < 0.6 * counts.mean():
        return _fail("✗ label noise: the new class should be uniform over the 9 others; "
                     f"shift counts {counts.tolist()}")
    return _pass("✓ label noise: exactly 30% of the labels changed, each to a uniformly chosen other class")


def check_spectral_centroid(candidate: Callable[[torch.Tensor], torch.Tensor], seed: int = 0) -> CheckResult:
    """Spectral-bias chapter, exercise 1: the mirrored-FFT spectral centroid of (S, N) functions."""
    g = torch.Generator().manual_seed(seed)
    x = torch.linspace(-1, 1, 256, dtype=torch.float64)
    freq = torch.randint(1, 20, (20, 1), generator=g)
    outputs = torch.cos(torch.pi * freq * x) + 0.5 * x + 0.1 * torch.randn(20, 256, generator=g, dtype=torch.float64)
    return _report("spectral centroid", spectral_centroid(outputs)[:, None], _column(candidate(outputs.clone())),
                   outputs, atol=1e-6)


def check_sharpness(candidate: Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor], object],
                    seed: int = 0) -> CheckResult:
    """Sharpness chapter, exercise 1: the top Hessian eigenvalue of ``loss_of`` at the point ``w``
    (P,), by power iteration on Hessian-vector products. Checked on five small tanh networks (squared
    error on random data) against the largest eigenvalue of each one's dense Hessian
    (:func:`~genlib.measures.curvature.dense_hessian`), to 1%: exact, so it holds at every seed, also
    where the top two eigenvalues are close and power iteration converges slowly."""
    g = torch.Generator().manual_seed(seed)
    seeds = list(range(seed * 5, seed * 5 + 5))
    x, labels = torch.randn(5, 40, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (5, 40), generator=g)
    blocks = [{"train": (x[s], labels[s]), "test": (x[s], labels[s])} for s in range(5)]
    data = TaskData.from_blocks(blocks, 3, "random points, random labels")
    model = MLP(6, (12,), 3, seeds, activation="tanh").double()
    expected = torch.stack([torch.linalg.eigvalsh(dense_hessian(model, data, "mse", s))[-1] for s in range(5)])
    got = []
    for s in range(5):
        loss_of, w = member_loss_function(model, data, "mse", s)
        value = candidate(loss_of, w.clone())
        if not isinstance(value, (torch.Tensor, float)) or torch.as_tensor(value).numel() != 1:
            return _fail(f"✗ sharpness: your function should return one number; it returned {value!r}")
        got.append(float(value))
    got = torch.tensor(got, dtype=torch.float64)
    error = ((got - expected).abs() / expected).max()
    if not torch.isfinite(got).all() or error > 0.01:
        return _fail(f"✗ sharpness: expected {expected.numpy().round(4).tolist()}\n"
                     f"  got      {got.numpy().round(4).tolist()}"
                     "\n  (more iterations? a negative or tiny value: is the vector normalised at every step?)")
    return _pass(f"✓ sharpness: within {error:.1e} of the exact value on {len(got)} small networks (top eigenvalues "
                 f"{expected.min():.3g} to {expected.max():.3g})")


def _column(values):
    return values[:, None] if isinstance(values, torch.Tensor) and values.dim() == 1 else values


def check_nc1(candidate: Callable[[torch.Tensor, torch.Tensor, int], float], seed: int = 0) -> CheckResult:
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
            return _fail(f"✗ NC1: your function should return one number; for {case} it returned {got!r}")
        if not abs(got - expected) <= 1e-6 * abs(expected):
            hint = {k: " (forgot to divide by K?)", 1 / k: " (divided by K twice?)"}.get(round(got / expected, 6), "")
            return _fail(f"✗ NC1 on {case}: expected {expected:.6g}, got {got:.6g}{hint}\n"
                         "  Sigma_W: the mean over all N examples of (h - mu_c)(h - mu_c)^T; Sigma_B: the mean over "
                         "the K classes of (mu_c - mu_G)(mu_c - mu_G)^T, mu_G the mean of all features; its "
                         "pseudo-inverse (torch.linalg.pinv)")
    return _pass(f"✓ NC1: matches genlib's within 1e-6 on {len(cases)} cases (random and nearly collapsed features)")


def check_ntk_entry(candidate: Callable[..., object], seed: int = 0) -> CheckResult:
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
            return _fail(f"✗ NTK entry: your function should return one number; it returned {type(got).__name__}")
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
            return _fail(f"✗ NTK entry (network {number}): expected {expected:.10g}, got {got:.10g}\n  ({hint})")
    return _pass(f"✓ NTK entry: matches genlib's empirical_ntk to 1e-8 on {len(models)} small random networks")



def check_path_norm(candidate: Callable[[list[torch.Tensor]], object], seed: int = 0) -> CheckResult:
    """What-predicts-generalization chapter, exercise: the squared path norm of a bias-free ReLU
    network given its weight matrices [(fan_in, out), ...] (no member axis): the sum over every
    input-output path of the product of its squared weights. Checked on three small random networks
    against :func:`genlib.measures.generalization.path_norm_squared`, to 1e-8 (relative)."""
    from ..measures.generalization import path_norm_squared

    models = [MLP(3, (4,), 2, [seed], bias=False).double(), MLP(5, (6, 3), 4, [seed + 1], bias=False).double(),
              MLP(2, (3, 3, 2), 1, [seed + 2], bias=False).double()]
    for number, model in enumerate(models, 1):
        expected = float(path_norm_squared(model)[0])
        weights = [w[0].detach().clone() for w in model.weights]
        got = candidate([w.clone() for w in weights])
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return _fail(f"✗ path norm: your function should return one number; it returned {type(got).__name__}")
        if not abs(got - expected) <= 1e-8 * max(1.0, abs(expected)):
            hint = "the sum over paths of the product of the squared weights along each path"
            unsquared = torch.ones(1, weights[0].shape[0], dtype=torch.float64)
            for w in weights:
                unsquared = unsquared @ w.abs()
            if abs(got - float(unsquared.sum())) <= 1e-8 * max(1.0, abs(got)):
                hint = "that is the sum over paths of |product of weights|: square every weight first"
            elif abs(got - float(unsquared.sum()) ** 2) <= 1e-8 * max(1.0, abs(got)):
                hint = "that squares the sum over paths; the path norm sums the squared products"
            return _fail(f"✗ path norm (network {number}, layers {[tuple(w.shape) for w in weights]}): "
                         f"expected {expected:.10g}, got {got:.10g}\n  ({hint})")
    return _pass(f"✓ path norm: matches genlib's path_norm_squared to 1e-8 on {len(models)} small random networks")


def check_fgsm(candidate: Callable[[Callable, torch.Tensor, torch.Tensor, float], torch.Tensor],
               seed: int = 0) -> CheckResult:
    """Distribution-shift chapter, exercise 1: the fast gradient sign method for an ensemble,
    ``candidate(forward, x, labels, epsilon)`` with x (S, B, D) and labels (S, B). Checked on a small
    random tanh ensemble against :func:`genlib.measures.robustness.fgsm`, to 1e-9, at two radii."""
    from ..measures.robustness import fgsm  # imported here: the chapters' other checkers do not need it

    g = torch.Generator().manual_seed(seed)
    model = MLP(5, (7,), 3, [seed, seed + 1], activation="tanh").double()
    x = torch.randn(2, 40, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 40), generator=g)
    for epsilon in (0.1, 0.5):
        expected = fgsm(model, x, labels, epsilon)
        got = candidate(model, x.clone(), labels.clone(), epsilon)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.isfinite(got).all():
            if torch.allclose(got.detach(), 2 * x - expected, atol=1e-9):
                return _fail(f"✗ FGSM at epsilon {epsilon}: you moved every input against the loss's gradient; "
                             "an attack climbs the loss (x + epsilon * sign(grad))")
        result = _report(f"FGSM at epsilon {epsilon}", expected.flatten(0, 1),
                         got.detach().flatten(0, 1) if isinstance(got, torch.Tensor) and got.dim() == 3 else got,
                         x.flatten(0, 1), atol=1e-9)
        if not result:
            return result
    return _pass("✓ FGSM: matches genlib's fgsm on a random ensemble of 2 members at epsilon 0.1 and 0.5")


# Grading: what each check compares with, made unusable while the answer runs.

def check_mup_scales(candidate: Callable[[float | None, float | None], object], seed: int = 0) -> CheckResult:
    """Scale-transfer chapter, exercise 1: muP's per-layer factors relative to SP at a base width,
    ``candidate(fan_in_ratio, fan_out_ratio) -> (init, sgd, adam)`` (None: a fixed dimension)."""
    g = torch.Generator().manual_seed(seed)
    ratios = (2.0 ** torch.randint(-3, 7, (12, 2), generator=g)).tolist()
    cases = [(None, a) for a, _ in ratios[:4]] + [(a, None) for a, _ in ratios[4:8]] + [tuple(r) for r in ratios[8:]]
    example = torch.tensor([[float("nan") if v is None else v for v in case] for case in cases], dtype=torch.float64)
    expected = torch.tensor([[mup_scales(*case)[k] for k in ("init", "sgd", "adamw")] for case in cases],
                            dtype=torch.float64)
    try:
        got = torch.tensor([[float(v) for v in candidate(*case)] for case in cases], dtype=torch.float64)
    except (TypeError, ValueError) as error:
        return _fail(f"✗ muP scales: your function should return three numbers (init, sgd, adam); {error}")
    return _report("muP scales (init, sgd, adam) for (fan-in ratio, fan-out ratio; nan: fixed)", expected, got,
                   example, atol=1e-9)


REFERENCES: dict[str, tuple[str, ...]] = {  # check name -> genlib's functions (or classes) that solve it
    "check_stablemax": ("genlib.core.losses.stablemax", "genlib.core.losses.stablemax_s"),
    "check_perpendicular_gradient": ("genlib.core.optim.perpendicular_gradient",),
    "check_ridge": ("genlib.measures.regression.SpectralSolver",),
    "check_label_noise": ("genlib.core.data._split_and_corrupt",),
    "check_spectral_centroid": ("genlib.core.metrics.spectral_centroid",),
    "check_sharpness": ("genlib.measures.curvature.top_eigenvalue", "genlib.measures.curvature.dense_hessian",
                        "genlib.measures.curvature.hessian_vector_product", "genlib.measures.curvature._top_of",
                        "genlib.measures.curvature._power_iteration"),
    "check_nc1": ("genlib.measures.collapse.within_class_variation",),
    "check_mup_scales": ("genlib.core.models.mup_scales",),
    "check_ntk_entry": ("genlib.measures.ntk.empirical_ntk", "genlib.measures.ntk._fill_member",
                        "genlib.measures.ntk._member_jacobian"),
    "check_fgsm": ("genlib.measures.robustness.fgsm", "genlib.measures.robustness.pgd_attack",
                   "genlib.measures.robustness._input_gradient"),
    "check_path_norm": ("genlib.measures.generalization.path_norm_squared",),
}
HIDDEN = "is not available while your answer is graded"  # in the error a hidden reference raises


def grade(check: Callable[..., CheckResult], candidate: Callable, seed: int = 0) -> CheckResult:
    """``check(candidate, seed=seed)`` with genlib's references for that exercise (``REFERENCES``)
    raising while ``candidate`` runs; the check itself still uses them between the answer's calls.

    The functions' code is swapped, not the names that lead to them, so an answer fails however it
    reached genlib's function (imported by name before grading, through another module, or through
    a genlib function that calls it): the result is a failure that says which reference it called.
    """
    name = getattr(check, "__name__", "")
    if name not in REFERENCES:
        raise ValueError(f"check must be one of genlib.pages.exercises' checks {sorted(REFERENCES)}; got {check!r}")
    functions = [f for path in REFERENCES[name] for f in _functions_of(_resolve(path), path)]

    def answer(*args, **kwargs):
        with _hidden(functions):
            return candidate(*args, **kwargs)

    try:
        return check(answer, seed=seed)
    except RuntimeError as error:
        if HIDDEN not in str(error):
            raise
        return _fail(f"✗ {name.removeprefix('check_')}: {error}")


def _resolve(path: str):
    module, _, attribute = path.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def _functions_of(obj, path: str) -> list[tuple[Callable, str]]:
    """(plain function, its dotted name) for a function, or for every method of a class."""
    if inspect.isclass(obj):
        found = []
        for attribute, member in vars(obj).items():
            member = getattr(member, "__func__", member)  # staticmethod, classmethod
            if inspect.isfunction(member):
                found += _functions_of(member, f"{path}.{attribute}")
        return found
    function = inspect.unwrap(obj)  # a decorated function: the code that does the work
    if not inspect.isfunction(function):
        raise TypeError(f"{path} is not a Python function or class")
    return [(function, path)]


def _raising_code(function: Callable, path: str):
    """Code for ``function`` that raises at once, with the same free variables (Python requires it)."""
    free = function.__code__.co_freevars
    message = f"{path} {HIDDEN}: write it without calling it"
    source = ["def outer():", *(f"    {v} = None" for v in free), "    def hidden(*args, **kwargs):"]
    if free:
        source.append(f"        ({', '.join(free)},)")
    source += [f"        raise RuntimeError({message!r})", "    return hidden"]
    namespace: dict = {}
    exec(compile("\n".join(source), f"<hidden {path}>", "exec"), namespace)
    code = namespace["outer"]().__code__
    assert code.co_freevars == free, (code.co_freevars, free)
    return code


@contextlib.contextmanager
def _hidden(functions: list[tuple[Callable, str]]) -> Iterator[None]:
    originals = [(f, f.__code__) for f, _ in functions]
    try:
        for f, path in functions:
            f.__code__ = _raising_code(f, path)
        yield
    finally:
        for f, code in originals:
            f.__code__ = code
