"""Experiments of the spectral-bias chapter (book/spectral_bias.ipynb), each with its quick and
full size: the order in which frequencies are learned (with and without Fourier features), the
complexity of random networks (Neural Redshift) and periodic extrapolation (Snake).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from .._validate import check_float, check_int
from ..data import TaskData
from ..history import History
from ..models import MLP
from ..scale import by_scale
from ..sweep import as_tuples, sweep
from ..train import TrainConfig, predict, train


def _regression(x: torch.Tensor, targets: torch.Tensor, test_x: torch.Tensor | None = None,
                test_targets: torch.Tensor | None = None, description: str = "") -> TaskData:
    """Regression data, (S, N) targets; the test set is the training points unless given."""
    members = targets.shape[0]
    n = x.shape[0]
    if test_x is None:
        idx = torch.arange(n).expand(members, -1).clone()
        return TaskData(x=x, y=targets, train_idx=idx, test_idx=idx.clone(), description=description)
    all_x = torch.cat([x, test_x])
    y = torch.cat([targets, test_targets], 1)
    train_idx = torch.arange(n).expand(members, -1).clone()
    test_idx = torch.arange(n, len(all_x)).expand(members, -1).clone()
    return TaskData(x=all_x, y=y, train_idx=train_idx, test_idx=test_idx, description=description)


def _predictions(model, x: torch.Tensor) -> list[list[float]]:
    """The trained members' outputs on x (N, d), for drawing the fitted functions."""
    return predict(model, x.expand(model.members, -1, -1))[..., 0].cpu().tolist()


# --- Section 1: spectral bias (Rahaman et al. 2019) and Fourier features (Tancik et al. 2020) ---

@dataclass(frozen=True)
class SinusoidSetup:
    """y(x) = sum_k sin(2 pi k x + phi_k) on ``points`` equally spaced x in [0, 1); per seed its own
    phases. ``fourier_scale`` > 0 feeds the network [cos 2 pi B x, sin 2 pi B x] with B ~ N(0, scale^2)
    (``features`` frequencies) instead of x."""

    frequencies: tuple[int, ...] = (1, 3, 5, 7, 9)
    points: int = 200
    hidden: tuple[int, ...] = (128, 128, 128)
    steps: int = 2000
    lr: float = 3e-3
    fourier_scale: float = 0.0
    features: int = 64
    bias_init: float = 1.0  # spreads the first layer's kinks over the input interval
    seeds: tuple[int, ...] = (0, 1, 2)


SINUSOID_QUICK = SinusoidSetup()
SINUSOID_FULL = SinusoidSetup(hidden=(256, 256, 256, 256), steps=10_000, seeds=tuple(range(5)))
FOURIER_SCALES = (0.0, 1.0, 3.0, 10.0)  # 0: the raw coordinate x


def sinusoid_setup(**overrides) -> SinusoidSetup:
    return replace(by_scale(SINUSOID_QUICK, SINUSOID_FULL), **overrides)


def fourier_setups() -> list[SinusoidSetup]:
    """The raw input and each Fourier-feature scale; Fourier features fit within a quarter of
    the steps, so those runs are shorter."""
    base = sinusoid_setup()
    return [base] + [replace(base, fourier_scale=f, steps=base.steps // 4) for f in FOURIER_SCALES[1:]]


def fourier_features(x: torch.Tensor, scale: float, features: int, seed: int = 0) -> torch.Tensor:
    """[cos 2 pi B x, sin 2 pi B x] for x (N, 1), B ~ N(0, scale^2) drawn from ``seed``."""
    check_float("scale", scale, 0.0, low_open=True)
    check_int("features", features, low=1)
    b = torch.randn(1, features, generator=torch.Generator().manual_seed(seed)) * scale
    return torch.cat([torch.cos(2 * math.pi * x @ b), torch.sin(2 * math.pi * x @ b)], 1)


def _spectrum_residual(data: TaskData, k: int):
    """Metric: |FFT(f - y)| / |FFT(y)| at frequency k, on the evenly spaced training points."""
    def measure(model) -> torch.Tensor:
        fit = predict(model, data.x.expand(data.members, -1, -1))[..., 0]  # (S, N)
        target = data.y.to(fit)
        residual = torch.fft.rfft(fit - target, dim=-1)[:, k].abs()
        return residual / torch.fft.rfft(target, dim=-1)[:, k].abs()
    return measure


def sinusoid_data(s: SinusoidSetup) -> TaskData:
    x = torch.arange(s.points, dtype=torch.float32)[:, None] / s.points
    targets = []
    for seed in s.seeds:
        phases = torch.rand(len(s.frequencies), generator=torch.Generator().manual_seed(seed)) * 2 * math.pi
        targets.append(sum(torch.sin(2 * math.pi * k * x[:, 0] + phi) for k, phi in zip(s.frequencies, phases)))
    inputs = fourier_features(x, s.fourier_scale, s.features) if s.fourier_scale > 0 else x
    return _regression(inputs, torch.stack(targets), description=f"sum of sinusoids {s.frequencies}")


def _train_sinusoids(config: dict) -> History:
    s = SinusoidSetup(**as_tuples(config))
    data = sinusoid_data(s)
    residuals = {f"residual_{k}": _spectrum_residual(data, k) for k in s.frequencies}
    model = MLP(data.x.shape[1], s.hidden, 1, s.seeds, bias_init=s.bias_init)
    history = train(model, data, TrainConfig(steps=s.steps, lr=s.lr, loss="mse", betas=(0.9, 0.999),
                                             eval_every=50, eval_log_points=20), extra_metrics=residuals)
    history.meta["fit"] = _predictions(model, data.x)
    history.meta["target"] = data.y.tolist()
    return history


def run_sinusoids(setups: list[SinusoidSetup]) -> list[History]:
    """Train (or read from the cache); metrics residual_k per frequency k, members the seeds."""
    return sweep(_train_sinusoids, [asdict(s) for s in setups], name="sinusoids")


# --- Section 2: complexity of random networks (Teney et al. 2024, Neural Redshift) ---

@dataclass(frozen=True)
class RedshiftSetup:
    activations: tuple[str, ...] = ("relu", "tanh", "gelu", "sin", "gaussian")
    weight_scales: tuple[float, ...] = (1.0, 2.0, 3.0)
    depth: int = 4
    width: int = 256
    points: int = 1024
    draws: int = 10


REDSHIFT_QUICK = RedshiftSetup()
REDSHIFT_FULL = RedshiftSetup(weight_scales=(0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0), draws=50)


def redshift_setup(**overrides) -> RedshiftSetup:
    return replace(by_scale(REDSHIFT_QUICK, REDSHIFT_FULL), **overrides)


def spectral_centroid(outputs: torch.Tensor) -> torch.Tensor:
    """Mean frequency of (S, N) functions sampled on N even points, weighted by the magnitude of
    their spectrum (the constant term excluded): a complexity measure. The function is mirrored
    before the FFT (a cosine transform), so that its two ends do not meet in a jump; frequency k
    is k half-cycles over the interval."""
    mirrored = torch.cat([outputs, outputs.flip(-1)], dim=-1)
    spectrum = torch.fft.rfft(mirrored - mirrored.mean(-1, keepdim=True), dim=-1).abs()[:, 1 : outputs.shape[-1]]
    k = torch.arange(1, spectrum.shape[-1] + 1, dtype=spectrum.dtype)
    return (spectrum * k).sum(-1) / spectrum.sum(-1).clamp_min(1e-30)


def _redshift(config: dict) -> History:
    s = RedshiftSetup(**as_tuples(config))
    x = torch.linspace(-1, 1, s.points)[None, :, None].expand(s.draws, -1, -1)
    members, values = [], []
    for activation in s.activations:
        row = []
        for scale in s.weight_scales:  # weights and biases N(0, scale^2 / fan_in) and N(0, scale^2)
            model = MLP(1, (s.width,) * s.depth, 1, list(range(s.draws)), activation=activation,
                        init_scale=scale, bias_init=scale)
            with torch.no_grad():
                row.append(spectral_centroid(model(x)[..., 0]).numpy())
        values.append(np.stack(row))  # (scales, draws)
        members += [{"activation": activation, "draw": d} for d in range(s.draws)]
    return History(np.array(s.weight_scales), {"centroid": np.concatenate(values, axis=1)}, members,
                   meta={"axis": "weight scale"})


def run_redshift(s: RedshiftSetup) -> History:
    """Spectral centroid of random networks; History axis: weight scale; select(activation=...)."""
    return sweep(_redshift, [asdict(s)], name="redshift")[0]


# --- Section 3: periodic extrapolation (Ziyin et al. 2020, Snake) ---

@dataclass(frozen=True)
class SnakeSetup:
    activations: tuple[str, ...] = ("relu", "tanh", "snake")
    points: int = 200
    hidden: tuple[int, ...] = (128, 128)
    steps: int = 1500
    lr: float = 1e-3
    seeds: tuple[int, ...] = (0, 1, 2)


SNAKE_QUICK = SnakeSetup()
SNAKE_FULL = SnakeSetup(hidden=(256, 256), steps=6000, seeds=tuple(range(5)))


def snake_setup(**overrides) -> SnakeSetup:
    return replace(by_scale(SNAKE_QUICK, SNAKE_FULL), **overrides)


def snake_data(s: SnakeSetup) -> TaskData:
    """sin(x) on [-2 pi, 2 pi] to train, [2 pi, 6 pi] to test extrapolation."""
    x = torch.linspace(-2 * math.pi, 2 * math.pi, s.points)[:, None]
    test_x = torch.linspace(2 * math.pi, 6 * math.pi, s.points)[:, None]
    members = len(s.seeds)
    return _regression(x, torch.sin(x[:, 0]).expand(members, -1), test_x,
                       torch.sin(test_x[:, 0]).expand(members, -1), description="sin(x), extrapolated")


def _train_snake(config: dict) -> History:
    c = as_tuples(config)
    activation = c.pop("activation")
    s = SnakeSetup(**c)
    model = MLP(1, s.hidden, 1, s.seeds, activation=activation)
    data = snake_data(s)
    history = train(model, data, TrainConfig(steps=s.steps, lr=s.lr, loss="mse", betas=(0.9, 0.999),
                                             eval_every=100, eval_log_points=10))
    history.meta["x"] = data.x[:, 0].tolist()
    history.meta["fit"] = _predictions(model, data.x)
    return history


def run_snake(s: SnakeSetup) -> dict[str, History]:
    configs = [asdict(s) | {"activation": a} for a in s.activations]
    return dict(zip(s.activations, sweep(_train_snake, configs, name="snake")))
