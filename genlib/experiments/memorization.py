"""Experiments of the memorization chapter (book/memorization.ipynb), each declared with its quick
and full size: randomization tests, label noise with its remedies, massive label noise, benign
overfitting on XOR clusters, and benign overfitting in linear regression (closed form).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..core._validate import check_choice, check_float
from ..core.data import INPUT_KINDS, TaskData, digits, diluted_digits, randomized_digits, xor_clusters
from ..core.history import History
from ..core.losses import EarlyLearningRegularization
from ..core.models import MLP
from ..core.train import TrainConfig, predict
from ..measures.regression import SpectralSolver
from ..running.experiment import Bounds, ComputedExperiment, TrainedExperiment
from ..running.grid import Grid

FRACTION = Bounds(0.0, 1.0)  # a share of the examples or labels
RATE = Bounds(0.0, 1.0, high_open=True)  # dropout rate, ELR's averaging weight
NON_NEGATIVE = Bounds(0.0)
POSITIVE = Bounds(0.0, low_open=True)


@dataclass(frozen=True)
class DigitsTraining(TrainedExperiment):
    """Recipe of sections 1 and 2 (no build of its own): the digits classifier, an MLP trained with
    SGD and momentum in minibatches."""

    n_train: int = 1000
    hidden: tuple[int, ...] = (256, 256)
    lr: float = 0.05
    momentum: float = 0.9
    batch_size: int = 64
    epochs: int = 50
    seeds: tuple[int, ...] = (0, 1, 2)

    @property
    def steps_per_epoch(self) -> int:
        return self.n_train // self.batch_size

    def config(self, **kw) -> TrainConfig:
        return TrainConfig(steps=self.epochs * self.steps_per_epoch, lr=self.lr, optimizer="sgd",
                           momentum=self.momentum, batch_size=self.batch_size, eval_every=self.steps_per_epoch,
                           eval_log_points=0, **kw)

    def after_training(self, history, run):
        history.meta["steps_per_epoch"] = self.steps_per_epoch
        return history


# --- Section 1: randomization tests (Zhang et al. 2017) ---

@dataclass(frozen=True)
class Condition:
    """One randomization test: the inputs (see genlib.core.data.INPUT_KINDS), the share of relabelled
    training labels (0.9 = uniformly random labels) and the regularization it is trained with."""

    name: str
    inputs: str = "real"
    label_noise: float = 0.0
    weight_decay: float = 0.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_choice("inputs", self.inputs, INPUT_KINDS)
        check_float("label_noise", self.label_noise, 0.0, 1.0)
        check_float("weight_decay", self.weight_decay, 0.0)
        check_float("dropout", self.dropout, 0.0, 1.0, high_open=True)


@dataclass(frozen=True)
class RandomizationSetup(DigitsTraining):
    FULL = dict(hidden=(512, 512), epochs=100, seeds=tuple(range(5)))
    AXES = {"condition": "condition_names"}

    conditions: tuple[Condition, ...] = (
        Condition("true labels"),
        Condition("20% noisy labels", label_noise=0.2),
        Condition("50% noisy labels", label_noise=0.5),
        Condition("80% noisy labels", label_noise=0.8),
        Condition("random labels", label_noise=0.9),
        Condition("shuffled pixels", inputs="shuffled pixels"),
        Condition("random pixels", inputs="random pixels"),
        Condition("Gaussian inputs", inputs="gaussian"),
        Condition("random labels + weight decay", label_noise=0.9, weight_decay=5e-4),
        Condition("random labels + dropout", label_noise=0.9, dropout=0.2),
    )

    @property
    def condition_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.conditions)

    def __post_init__(self) -> None:
        super().__post_init__()
        names = self.condition_names
        if len(set(names)) != len(names):
            raise ValueError(f"conditions must have distinct names (they label the members); got {names}")

    def build(self):
        by_name = {c.name: c for c in self.conditions}
        per_member = [by_name[m["condition"]] for m in self.members()]
        data = randomized_digits([(c.inputs, c.label_noise) for c in self.conditions], self.n_train, self.seeds)
        model = MLP(64, self.hidden, 10, self.member_values("seed"), dropout=[c.dropout for c in per_member])
        return data, model, self.config(weight_decay=[c.weight_decay for c in per_member])


# --- Section 2: label noise, early learning then memorization, and remedies ---

REGULARIZERS = ("none", "weight decay", "dropout", "ELR")


@dataclass(frozen=True)
class NoiseSetup(DigitsTraining):
    """One label-noise level; members are (regularizer, seed)."""

    FULL = dict(hidden=(512, 512), epochs=60, seeds=tuple(range(5)))
    AXES = {"regularizer": "regularizers"}
    CHOICES = {"regularizers": REGULARIZERS}
    BOUNDS = {"noise": FRACTION, "weight_decay": NON_NEGATIVE, "dropout": RATE, "elr_lambda": NON_NEGATIVE,
              "elr_beta": RATE}

    epochs: int = 30
    noise: float = 0.4
    regularizers: tuple[str, ...] = REGULARIZERS
    n_val: int = 300  # clean validation images, for early stopping
    weight_decay: float = 5e-4
    dropout: float = 0.2
    elr_lambda: float = 7.0  # Liu et al. 2020 use 3 (CIFAR-10) and 7 (CIFAR-100); 3 is too weak here
    elr_beta: float = 0.7

    def _only(self, regularizer: str, value: float) -> list[float]:
        """``value`` for the members trained with ``regularizer``, 0 for the others."""
        return [value if r == regularizer else 0.0 for r in self.member_values("regularizer")]

    def build(self):
        seeds = self.member_values("seed")
        data = digits(self.n_train, seeds, self.noise, self.n_val)
        model = MLP(64, self.hidden, 10, seeds, dropout=self._only("dropout", self.dropout))
        return data, model, self.config(weight_decay=self._only("weight decay", self.weight_decay))

    def penalty(self, data, model):
        return EarlyLearningRegularization(self._only("ELR", self.elr_lambda), model.members, len(data.x), 10,
                                           self.elr_beta)

    def extra_metrics(self, data, model):
        if self.noise == 0:
            return {}
        true_labels = digits(self.n_train, self.member_values("seed"), 0.0, self.n_val).y
        return {"corrupted_true_acc": _true_label_accuracy(data, true_labels)}


@dataclass(frozen=True)
class NoiseSweep(Grid):
    """Section 2: one NoiseSetup per label-noise level."""

    POINT = NoiseSetup

    noises: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6)

    def setups(self) -> dict[float, NoiseSetup]:
        """{noise level: its NoiseSetup}."""
        return self.vary("noise", self.noises)


def _true_label_accuracy(data: TaskData, true_labels: torch.Tensor):
    """Metric: share of the relabelled training examples still predicted as their true class."""
    def measure(model) -> torch.Tensor:
        idx = data.subsets["corrupted"]
        labels = true_labels[torch.arange(len(idx))[:, None], idx]
        outputs = predict(model, data.inputs(idx))
        return (outputs.argmax(-1) == labels.to(outputs.device)).float().mean(-1)
    return measure


# --- Section 3: massive label noise (Rolnick et al. 2017) ---

@dataclass(frozen=True)
class DilutionSetup(TrainedExperiment):
    """``alpha`` noisy examples per clean image; members are the seeds."""

    FULL = dict(steps=2000, seeds=tuple(range(5)))

    n_clean: int = 100
    alpha: int = 10
    hidden: tuple[int, ...] = (128,)
    steps: int = 600
    lr: float = 1e-3
    batch_size: int = 512  # Rolnick et al.: large batches tolerate noise better
    seeds: tuple[int, ...] = (0, 1, 2)

    def build(self):
        data = diluted_digits(self.n_clean, self.alpha, self.seeds)
        model = MLP(64, self.hidden, 10, self.seeds)
        return data, model, TrainConfig(steps=self.steps, lr=self.lr, batch_size=self.batch_size,
                                        eval_every=self.steps // 6, eval_log_points=0)


@dataclass(frozen=True)
class DilutionGrid(Grid):
    """Section 3: clean images x noisy examples per clean one, every pair one DilutionSetup."""

    POINT = DilutionSetup
    FULL = dict(clean_sizes=(50, 100, 200, 400, 900), alphas=(0, 1, 3, 10, 30))

    clean_sizes: tuple[int, ...] = (100, 300, 900)
    alphas: tuple[int, ...] = (0, 3, 10)

    def setups(self) -> dict[tuple[int, int], DilutionSetup]:
        """{(clean images, alpha): its DilutionSetup}."""
        return {(n, a): replace(self.base, n_clean=n, alpha=a) for n in self.clean_sizes for a in self.alphas}


# --- Section 4: benign overfitting and grokking on XOR clusters (Xu et al. 2024) ---

@dataclass(frozen=True)
class XorSetup(TrainedExperiment):
    """Gradient descent on the logistic loss; members are the seeds (each its own data set)."""

    FULL = dict(dim=10_000, width=500, steps=1000, n_test=2000, seeds=tuple(range(5)))
    BOUNDS = {"mean_norm": POSITIVE, "flip_fraction": Bounds(0.0, 0.5, high_open=True)}

    n_train: int = 40
    n_test: int = 500
    dim: int = 6000
    mean_norm: float = 32.0
    flip_fraction: float = 0.15
    width: int = 100
    init_std: float = 1e-6  # of each first-layer weight: tiny, as in the paper
    lr: float = 0.01
    steps: int = 300
    seeds: tuple[int, ...] = (0, 1, 2)

    def build(self):
        data = xor_clusters(self.n_train, self.n_test, self.dim, self.mean_norm, self.flip_fraction, self.seeds)
        model = MLP(self.dim, (self.width,), 2, self.seeds, readout="signed", bias=False,
                    init_scale=self.init_std * math.sqrt(self.dim))
        return data, model, TrainConfig(steps=self.steps, lr=self.lr, optimizer="sgd", eval_every=self.steps,
                                        eval_log_points=40)


# --- Section 5: benign overfitting in linear regression (closed form) ---

@dataclass(frozen=True)
class BenignRegression(ComputedExperiment):
    """y = beta . x_signal + noise; x has ``signal_dims`` directions of variance 1 and ``weak_dims``
    of variance ``weak_variance / weak_dims`` each (their total variance is fixed). Closed form: the
    History's axis is the number of weak directions, one member per seed."""

    FULL = dict(weak_dims=(100, 105, 110, 120, 150, 200, 300, 1000, 3000, 10_000, 30_000, 100_000),
                seeds=tuple(range(10)))

    n_train: int = 100
    signal_dims: int = 5
    weak_dims: tuple[int, ...] = (100, 110, 150, 300, 1000, 3000, 10_000, 30_000)
    weak_variance: float = 1.0
    noise_std: float = 0.5
    seeds: tuple[int, ...] = (0, 1, 2)

    def compute(self) -> History:
        values = np.array([[excess_risk(self, p, seed) for seed in self.seeds] for p in self.weak_dims])
        return History(np.array(self.weak_dims), {"excess_risk": values[..., 0], "train_mse": values[..., 1]},
                       self.members(), axis_name="weak directions")


def excess_risk(s: BenignRegression, weak_dims: int, seed: int) -> tuple[float, float]:
    """(excess test risk of the minimum-norm interpolant, its training MSE), exactly: the test
    risk of weights w is noise_std^2 + (w - beta)^T Sigma (w - beta), with Sigma known."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.cat([torch.ones(s.signal_dims),
                        torch.full((weak_dims,), math.sqrt(s.weak_variance / weak_dims))]).double()
    x = torch.randn(s.n_train, len(scales), generator=g, dtype=torch.float64) * scales
    beta = torch.zeros(len(scales), dtype=torch.float64)
    beta[: s.signal_dims] = torch.randn(s.signal_dims, generator=g, dtype=torch.float64)
    beta /= beta.norm()
    y = x @ beta + s.noise_std * torch.randn(s.n_train, generator=g, dtype=torch.float64)
    solver = SpectralSolver(x)
    w = solver.weights(y[:, None], solver.min_norm())[:, 0]
    excess = float(((w - beta) * scales).pow(2).sum())
    return excess, float((x @ w - y).pow(2).mean())
