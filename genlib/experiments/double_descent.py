"""Experiments of the double-descent chapter (book/double_descent.ipynb): declared setups, quick
sizes as defaults and full sizes in ``FULL``.

- :class:`FeatureSweep`: random ReLU features on the digits, solved in closed form (minimum norm,
  ridge, tuned ridge, gradient descent for t steps) for every width; a History along "features"
  whose members are every (noise, fit, seed).
- :class:`SampleSweep`: the same fits at one width for many training-set sizes; a History along
  "training examples".
- :class:`NetworkSweep`: two-layer ReLU networks of many widths trained as one masked ensemble
  (members are every (width, seed)); :meth:`NetworkSweep.variants` gives the three optimiser and
  label settings of the chapter.
"""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..core.data import digits
from ..core.history import History
from ..core.models import MLP
from ..core.optim import OPTIMIZERS
from ..core.train import TrainConfig
from ..measures.regression import SpectralSolver, relu_features
from ..running.experiment import Bounds, ComputedExperiment, TrainedExperiment

MIN_NORM, TUNED = "min-norm", "tuned ridge"
TUNING_GRID = tuple(float(r) for r in np.geomspace(1e-8, 10, 28))
GD_LR = 1.0  # stable for every width: feature vectors have squared norm ~1, so s_max^2 / n <~ 1
GD_RATE = 0.5  # networks, plain gradient descent: the largest step stable for every width at quick scale


def _widths_around(threshold: int, low: int, high: int, points: int, near: tuple[float, ...]) -> tuple[int, ...]:
    """A log-spaced grid from low to high, plus points at the given multiples of the threshold."""
    spread = np.geomspace(low, high, points).round().astype(int)
    close = [round(threshold * m) for m in near]
    return tuple(sorted({int(w) for w in spread} | set(close)))


NEAR = (0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25)


def _scores(projected: torch.Tensor, coefficients: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(MSE summed over the 10 outputs, classification error) of predictions on one set."""
    predictions = projected @ coefficients
    mse = (predictions - F.one_hot(labels, 10)).pow(2).sum(1).mean()
    return float(mse), float((predictions.argmax(1) != labels).double().mean())


@dataclass(frozen=True)
class RandomFeatures(ComputedExperiment):
    """Recipe (abstract): random-features regression on the digits, every fit of every noise level
    and seed at each point of an axis; subclasses say what the axis is (:meth:`points`)."""

    AXES = {"noise": "noises", "fit": "fits"}
    BOUNDS = {"noises": Bounds(0.0, 1.0), "ridges": Bounds(0.0)}
    AXIS_NAME: ClassVar[str] = ""

    n_val: int = 300  # clean images that pick the tuned ridge; the rest of the 1,797 are the test set
    noises: tuple[float, ...] = (0.0, 0.1, 0.2, 0.4)
    ridges: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)
    gd_steps: tuple[int, ...] = (100, 1000, 10000)
    seeds: tuple[int, ...] = (0, 1, 2)

    @property
    def fits(self) -> list[str]:
        return ([MIN_NORM] + [f"ridge {r:g}" for r in self.ridges] + [TUNED]
                + [f"GD {t} steps" for t in self.gd_steps])

    @abstractmethod
    def points(self) -> list[tuple[int, int, int]]:
        """(axis value, training images, features) at every point of the axis."""

    def compute(self) -> History:
        points, members = self.points(), self.members()
        n_max = max(n for _, n, _ in points)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # the SVDs, in float64
        clean = digits(n_max, self.seeds, 0.0, self.n_val).to(device)  # the noisy sets' splits, true labels
        noisy = [digits(n_max, self.seeds, noise, self.n_val).y.to(device) for noise in self.noises]
        metrics = {m: np.full((len(points), len(members)), np.nan)
                   for m in ("test_mse", "test_err", "train_mse", "weight_norm", "ridge")}
        for j, seed in enumerate(self.seeds):
            labels = [y[j] for y in noisy]
            for i, (_, n, width) in enumerate(points):
                split = (clean.train_idx[j, :n], clean.subsets["val"][j], clean.test_idx[j])
                point = self._fit_point(clean.x, labels, clean.y[j], split, width, feature_seed=10_000 + seed)
                for k, member in enumerate(members):
                    if member["seed"] == seed:
                        for name, value in point[(member["noise"], member["fit"])].items():
                            metrics[name][i, k] = value
        return History(np.asarray([p[0] for p in points]), metrics, members, axis_name=self.AXIS_NAME)

    def _filters(self, solver: SpectralSolver) -> dict[str, torch.Tensor]:
        filters = {MIN_NORM: solver.min_norm()}
        filters |= {f"ridge {r:g}": solver.ridge(r) for r in self.ridges}
        filters |= {f"GD {t} steps": solver.gradient_descent(GD_LR, t) for t in self.gd_steps}
        return filters

    def _fit_point(self, x, labels, true_labels, split, n_features, feature_seed):
        """Every fit of one (width, training set) for every noise level: {(noise, fit): metrics}."""
        train_idx, val_idx, test_idx = split
        features = relu_features(x, n_features, feature_seed)
        solver = SpectralSolver(features[train_idx])
        test, val = solver.project(features[test_idx]), solver.project(features[val_idx])
        train_proj = solver.project(features[train_idx])
        out = {}
        for noise, y in zip(self.noises, labels):
            targets = F.one_hot(y[train_idx], 10)
            coefs = {name: solver.coefficients(targets, f) for name, f in self._filters(solver).items()}
            val_mse = [(_scores(val, solver.coefficients(targets, solver.ridge(r)), true_labels[val_idx])[0], r)
                       for r in TUNING_GRID]
            best_ridge = min(val_mse)[1]
            coefs[TUNED] = solver.coefficients(targets, solver.ridge(best_ridge))
            for name, c in coefs.items():
                test_mse, test_err = _scores(test, c, true_labels[test_idx])
                out[(noise, name)] = dict(
                    test_mse=test_mse, test_err=test_err, train_mse=_scores(train_proj, c, y[train_idx])[0],
                    weight_norm=float(c.norm()), ridge=best_ridge if name == TUNED else float("nan"),
                )
        return out


@dataclass(frozen=True)
class FeatureSweep(RandomFeatures):
    """Model-wise: n_train images, every number of features in ``widths``."""

    FULL = dict(widths=_widths_around(300, 10, 10000, 40, NEAR + (0.97, 0.99, 1.01, 1.03)), seeds=tuple(range(10)))
    AXIS_NAME = "features"

    n_train: int = 300
    widths: tuple[int, ...] = _widths_around(300, 10, 4000, 16, NEAR)

    def points(self):
        return [(w, self.n_train, w) for w in self.widths]


@dataclass(frozen=True)
class SampleSweep(RandomFeatures):
    """Sample-wise: ``width`` features, every training-set size in ``train_sizes``."""

    FULL = dict(seeds=tuple(range(10)), train_sizes=_widths_around(200, 20, 1000, 30, (0.5,) + NEAR))
    AXIS_NAME = "training examples"

    width: int = 200
    train_sizes: tuple[int, ...] = _widths_around(200, 20, 1000, 12, (0.5,) + NEAR)
    noises: tuple[float, ...] = (0.0, 0.2)

    def points(self):
        return [(n, n, self.width) for n in self.train_sizes]


@dataclass(frozen=True)
class NetworkSweep(TrainedExperiment):
    """Two-layer ReLU networks on the digits, MSE on one-hot labels, full batch; one member per
    (width, seed), width-major."""

    # At full scale a step of 0.5 diverged for gradient descent at widths 1 and 256 (2 and 3 of 5 seeds),
    # and Adam at a constant step stayed above 1e-4 training loss at every width near the threshold.
    FULL = dict(n_train=300, widths=(1, 2, 4, 6, 8, 12, 16, 20, 24, 28, 32, 36, 40, 48, 56, 64, 96, 128, 192, 256),
                seeds=tuple(range(5)), steps=20000, eval_every=200, schedule=True, gd_lr=0.25)
    AXES = {"width": "widths"}
    CHOICES = {"optimizer": OPTIMIZERS}
    BOUNDS = {"noise": Bounds(0.0, 1.0), "gd_lr": Bounds(0.0, low_open=True)}

    n_train: int = 100
    noise: float = 0.2
    widths: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64)
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 3000
    optimizer: str = "adamw"
    lr: float = 0.01
    schedule: bool = False  # Adam's step divided by 10 after half and after three quarters of the steps
    gd_lr: float = GD_RATE  # the gradient-descent variant's step (constant)
    eval_every: int = 50
    eval_log_points: int = 60

    @property
    def threshold_width(self) -> float:
        """Width whose parameter count (65 w + 10 (w + 1)) equals n_train x 10 outputs."""
        return (10 * self.n_train - 10) / 75

    def build(self):
        seeds = self.member_values("seed")
        data = digits(self.n_train, seeds, self.noise)
        model = MLP(64, (max(self.widths),), 10, seeds, member_widths=self.member_values("width"))
        milestones = tuple(m for m in (self.steps // 2, 3 * self.steps // 4) if m >= 1) if self.schedule else ()
        config = TrainConfig(steps=self.steps, lr=self.lr, optimizer=self.optimizer, loss="mse",
                             lr_milestones=milestones, eval_every=self.eval_every, eval_log_points=self.eval_log_points)
        return data, model, config

    def variants(self) -> dict[str, NetworkSweep]:
        """Adam (reaches zero training loss at the threshold), plain gradient descent (does not), and
        Adam on clean labels (the control for epoch-wise double descent)."""
        return {"Adam": self, "gradient descent": replace(self, optimizer="sgd", lr=self.gd_lr, schedule=False),
                "Adam, clean labels": replace(self, noise=0.0)}
