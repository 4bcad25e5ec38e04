"""Experiments of the spectral-bias chapter (book/spectral_bias.ipynb): declared setups plus one
build (or compute) each.

- :class:`SinusoidSetup`: the order in which frequencies are learned, with and without Fourier
  features (:meth:`SinusoidSetup.fourier_variants`); fitted curves in ``history.arrays``.
- :class:`RedshiftSetup`: complexity of random networks (Neural Redshift); axis: weight scale.
- :class:`SnakeSetup`: periodic extrapolation; :class:`SnakeComparison` gives one per activation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..core.data import TaskData, fourier_features
from ..core.history import History
from ..core.metrics import spectral_centroid
from ..core.models import ACTIVATIONS, MLP
from ..core.train import TrainConfig, predict
from ..running.experiment import Bounds, ComputedExperiment, TrainedExperiment
from ..running.grid import Grid

FOURIER_SCALES = (0.0, 1.0, 3.0, 10.0)  # Fourier-feature scales of section 1; 0: the raw coordinate x


def _regression(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                description: str) -> TaskData:
    """Regression data from (inputs, targets (S, N)) sets: member m gets its row of the targets."""
    blocks = [{"train": (train[0], y), "test": (test[0], y_test)} for y, y_test in zip(train[1], test[1])]
    return TaskData.from_blocks(blocks, description=description)


def _curves(model, data: TaskData, idx: torch.Tensor) -> np.ndarray:
    """(S, N) the trained members' outputs on the inputs at idx (S, N), for drawing the fits."""
    return predict(model, data.inputs(idx))[..., 0].cpu().numpy()


# --- Section 1: spectral bias (Rahaman et al. 2019) and Fourier features (Tancik et al. 2020) ---

@dataclass(frozen=True)
class SinusoidSetup(TrainedExperiment):
    """y(x) = sum_k sin(2 pi k x + phi_k) on ``points`` equally spaced x in [0, 1); per seed its own
    phases. ``fourier_scale`` > 0 feeds the network [cos 2 pi B x, sin 2 pi B x] with B ~ N(0, scale^2)
    (``features`` frequencies) instead of x. Metrics residual_k per frequency k; arrays 'fit' and
    'target' (S, points)."""

    FULL = dict(hidden=(256, 256, 256, 256), steps=10_000, seeds=tuple(range(5)))
    BOUNDS = {"bias_init": Bounds(0.0)}

    frequencies: tuple[int, ...] = (1, 3, 5, 7, 9)
    points: int = 200
    hidden: tuple[int, ...] = (128, 128, 128)
    steps: int = 2000
    lr: float = 3e-3
    fourier_scale: float = 0.0
    features: int = 64
    bias_init: float = 1.0  # spreads the first layer's kinks over the input interval
    seeds: tuple[int, ...] = (0, 1, 2)

    def fourier_variants(self) -> list[SinusoidSetup]:
        """The raw input and each Fourier-feature scale of FOURIER_SCALES; Fourier features fit
        within a quarter of the steps, so those runs are shorter."""
        return [self] + [replace(self, fourier_scale=f, steps=self.steps // 4) for f in FOURIER_SCALES[1:]]

    def data(self) -> TaskData:
        """The training points, also the test set; one target (its own phases) per seed."""
        x = torch.arange(self.points, dtype=torch.float32)[:, None] / self.points
        targets = []
        for seed in self.member_values("seed"):
            phases = torch.rand(len(self.frequencies), generator=torch.Generator().manual_seed(seed)) * 2 * math.pi
            targets.append(sum(torch.sin(2 * math.pi * k * x[:, 0] + phi) for k, phi in zip(self.frequencies, phases)))
        inputs = fourier_features(x, self.fourier_scale, self.features) if self.fourier_scale > 0 else x
        targets = torch.stack(targets)
        return _regression((inputs, targets), (inputs, targets), f"sum of sinusoids {self.frequencies}")

    def build(self):
        data = self.data()
        model = MLP(data.x.shape[-1], self.hidden, 1, self.member_values("seed"), bias_init=self.bias_init)
        config = TrainConfig(steps=self.steps, lr=self.lr, loss="mse", betas=(0.9, 0.999), eval_every=50,
                             eval_log_points=20)
        return data, model, config

    def extra_metrics(self, data, model):
        return {f"residual_{k}": _spectrum_residual(data, k) for k in self.frequencies}

    def after_training(self, history, run):
        history.arrays["fit"] = _curves(run.model, run.data, run.data.train_idx)
        history.arrays["target"] = run.data.batch(run.data.train_idx)[1].numpy()
        return history


def _spectrum_residual(data: TaskData, k: int):
    """Metric: |FFT(f - y)| / |FFT(y)| at frequency k, on the evenly spaced training points."""
    def measure(model) -> torch.Tensor:
        x, target = data.batch(data.train_idx)
        fit = predict(model, x)[..., 0]  # (S, N)
        target = target.to(fit)
        residual = torch.fft.rfft(fit - target, dim=-1)[:, k].abs()
        return residual / torch.fft.rfft(target, dim=-1)[:, k].abs()
    return measure


# --- Section 2: complexity of random networks (Teney et al. 2024, Neural Redshift) ---

@dataclass(frozen=True)
class RedshiftSetup(ComputedExperiment):
    """Spectral centroid of random networks over the weight scale (the History's axis); members
    are (activation, draw): ``select(activation=...)``. Nothing is trained: each network is drawn
    and measured once."""

    FULL = dict(weight_scales=(0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0), draws=50)
    CHOICES = {"activations": tuple(ACTIVATIONS)}
    BOUNDS = {"weight_scales": Bounds(0.0)}

    activations: tuple[str, ...] = ("relu", "tanh", "gelu", "sin", "gaussian")
    weight_scales: tuple[float, ...] = (1.0, 2.0, 3.0)
    depth: int = 4
    width: int = 256
    points: int = 1024
    draws: int = 10

    def compute(self) -> History:
        x = torch.linspace(-1, 1, self.points)[None, :, None].expand(self.draws, -1, -1)
        members, values = [], []
        for activation in self.activations:
            row = []
            for scale in self.weight_scales:  # weights and biases N(0, scale^2 / fan_in) and N(0, scale^2)
                model = MLP(1, (self.width,) * self.depth, 1, list(range(self.draws)), activation=activation,
                            init_scale=scale, bias_init=scale)
                with torch.no_grad():
                    row.append(spectral_centroid(model(x)[..., 0]).numpy())
            values.append(np.stack(row))  # (scales, draws)
            members += [{"activation": activation, "draw": d} for d in range(self.draws)]
        return History(np.array(self.weight_scales), {"centroid": np.concatenate(values, axis=1)}, members,
                       axis_name="weight scale")


# --- Section 3: periodic extrapolation (Ziyin et al. 2020, Snake) ---

@dataclass(frozen=True)
class SnakeSetup(TrainedExperiment):
    """sin(x) on [-2 pi, 2 pi] to train, [2 pi, 6 pi] to test extrapolation, by an MLP with one
    activation; arrays 'x' (1, 2 points) and 'fit' (S, 2 points): training then test inputs."""

    FULL = dict(hidden=(256, 256), steps=6000, seeds=tuple(range(5)))
    CHOICES = {"activation": tuple(ACTIVATIONS)}

    activation: str = "snake"
    points: int = 200
    hidden: tuple[int, ...] = (128, 128)
    steps: int = 1500
    lr: float = 1e-3
    seeds: tuple[int, ...] = (0, 1, 2)

    def data(self) -> TaskData:
        x = torch.linspace(-2 * math.pi, 2 * math.pi, self.points)[:, None]
        test_x = torch.linspace(2 * math.pi, 6 * math.pi, self.points)[:, None]
        members = len(self.member_values("seed"))
        return _regression((x, torch.sin(x[:, 0]).expand(members, -1)),
                           (test_x, torch.sin(test_x[:, 0]).expand(members, -1)), "sin(x), extrapolated")

    def build(self):
        model = MLP(1, self.hidden, 1, self.member_values("seed"), activation=self.activation)
        config = TrainConfig(steps=self.steps, lr=self.lr, loss="mse", betas=(0.9, 0.999), eval_every=100,
                             eval_log_points=10)
        return self.data(), model, config

    def after_training(self, history, run):
        data = run.data
        everywhere = torch.cat([data.train_idx, data.test_idx], 1)
        history.arrays["x"] = data.inputs(everywhere[:1])[..., 0].numpy()
        history.arrays["fit"] = _curves(run.model, data, everywhere)
        return history


@dataclass(frozen=True)
class SnakeComparison(Grid):
    """Section 3: one SnakeSetup per activation."""

    POINT = SnakeSetup

    activations: tuple[str, ...] = ("relu", "tanh", "snake")

    def setups(self) -> dict[str, SnakeSetup]:
        """{activation: its SnakeSetup} (plain SnakeSetups, so one run's cache does not depend on the list)."""
        return self.vary("activation", self.activations)
