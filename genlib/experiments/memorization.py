"""Experiments of the memorization chapter (book/memorization.ipynb), each with its quick and full
size: randomization tests, label noise with its remedies, massive label noise, benign overfitting
on XOR clusters, and benign overfitting in linear regression (closed form).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from ..data import TaskData, digits, diluted_digits, randomized_digits, xor_clusters
from ..history import History
from ..losses import EarlyLearningRegularization
from ..models import MLP
from ..regression import SpectralSolver
from ..scale import by_scale
from ..sweep import as_tuples, sweep
from ..train import TrainConfig, predict, train


@dataclass(frozen=True)
class DigitsTraining:
    """The digits classifier of sections 1 and 2: an MLP trained with SGD and momentum in minibatches."""

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


# --- Section 1: randomization tests (Zhang et al. 2017) ---

@dataclass(frozen=True)
class RandomizationSetup:
    training: DigitsTraining = DigitsTraining()
    # (name, inputs, label noise, weight decay, dropout); 0.9 label noise = uniformly random labels
    conditions: tuple[tuple[str, str, float, float, float], ...] = (
        ("true labels", "real", 0.0, 0.0, 0.0),
        ("20% noisy labels", "real", 0.2, 0.0, 0.0),
        ("50% noisy labels", "real", 0.5, 0.0, 0.0),
        ("80% noisy labels", "real", 0.8, 0.0, 0.0),
        ("random labels", "real", 0.9, 0.0, 0.0),
        ("shuffled pixels", "shuffled pixels", 0.0, 0.0, 0.0),
        ("random pixels", "random pixels", 0.0, 0.0, 0.0),
        ("Gaussian inputs", "gaussian", 0.0, 0.0, 0.0),
        ("random labels + weight decay", "real", 0.9, 5e-4, 0.0),
        ("random labels + dropout", "real", 0.9, 0.0, 0.2),
    )


RANDOMIZATION_QUICK = RandomizationSetup()
RANDOMIZATION_FULL = RandomizationSetup(DigitsTraining(hidden=(512, 512), epochs=100, seeds=tuple(range(5))))


def randomization_setup(**overrides) -> RandomizationSetup:
    return replace(by_scale(RANDOMIZATION_QUICK, RANDOMIZATION_FULL), **overrides)


def _train_randomization(config: dict) -> History:
    s = RandomizationSetup(training=DigitsTraining(**as_tuples(config["training"])),
                           conditions=as_tuples(config)["conditions"])
    t = s.training
    data = randomized_digits([(inputs, noise) for _, inputs, noise, _, _ in s.conditions], t.n_train, t.seeds)
    per_member = [c for c in s.conditions for _ in t.seeds]
    model = MLP(64, t.hidden, 10, [seed for _ in s.conditions for seed in t.seeds],
                dropout=[c[4] for c in per_member])
    history = train(model, data, t.config(weight_decay=[c[3] for c in per_member]))
    for member, condition in zip(history.members, per_member):
        member["condition"] = condition[0]
    history.meta["steps_per_epoch"] = t.steps_per_epoch
    return history


def run_randomization(s: RandomizationSetup) -> History:
    """Train (or read from the cache) one member per (condition, seed); select(condition=...)."""
    return sweep(_train_randomization, [asdict(s)], name="randomization")[0]


# --- Section 2: label noise, early learning then memorization, and remedies ---

REGULARIZERS = ("none", "weight decay", "dropout", "ELR")


@dataclass(frozen=True)
class NoiseSetup:
    training: DigitsTraining = DigitsTraining(epochs=30)
    noises: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6)
    n_val: int = 300  # clean validation images, for early stopping
    weight_decay: float = 5e-4
    dropout: float = 0.2
    elr_lambda: float = 7.0  # Liu et al. 2020 use 3 (CIFAR-10) and 7 (CIFAR-100); 3 is too weak here
    elr_beta: float = 0.7


NOISE_QUICK = NoiseSetup()
NOISE_FULL = NoiseSetup(DigitsTraining(hidden=(512, 512), epochs=60, seeds=tuple(range(5))))


def noise_setup(**overrides) -> NoiseSetup:
    return replace(by_scale(NOISE_QUICK, NOISE_FULL), **overrides)


def _true_label_accuracy(data: TaskData, true_labels: torch.Tensor):
    """Metric: share of the relabelled training examples still predicted as their true class."""
    def measure(model) -> torch.Tensor:
        idx = data.subsets["corrupted"]
        labels = true_labels[torch.arange(len(idx))[:, None], idx]
        outputs = predict(model, data.x[idx])
        return (outputs.argmax(-1) == labels.to(outputs.device)).float().mean(-1)
    return measure


def _train_noise(config: dict) -> History:
    c = as_tuples(config)
    noise = c.pop("noise")
    s = NoiseSetup(**{**c, "training": DigitsTraining(**c["training"])})
    t = s.training
    regs = [r for r in REGULARIZERS for _ in t.seeds]
    seeds = [seed for _ in REGULARIZERS for seed in t.seeds]
    data = digits(t.n_train, seeds, noise, s.n_val)
    model = MLP(64, t.hidden, 10, seeds, dropout=[s.dropout if r == "dropout" else 0.0 for r in regs])
    elr = EarlyLearningRegularization([s.elr_lambda if r == "ELR" else 0.0 for r in regs], len(seeds),
                                      len(data.x), 10, s.elr_beta)
    extra = {}
    if noise > 0:
        true_labels = digits(t.n_train, seeds, 0.0, s.n_val).y
        extra["corrupted_true_acc"] = _true_label_accuracy(data, true_labels)
    config_ = t.config(weight_decay=[s.weight_decay if r == "weight decay" else 0.0 for r in regs])
    history = train(model, data, config_, extra_metrics=extra, penalty=elr)
    for member, reg in zip(history.members, regs):
        member["regularizer"] = reg
    history.meta.update(steps_per_epoch=t.steps_per_epoch, noise=noise)
    return history


def run_noise(s: NoiseSetup) -> dict[float, History]:
    """One History per noise level; members are (regularizer, seed) pairs: select(regularizer=...)."""
    configs = [asdict(s) | {"noise": noise} for noise in s.noises]
    return dict(zip(s.noises, sweep(_train_noise, configs, name="label_noise")))


# --- Section 3: massive label noise (Rolnick et al. 2017) ---

@dataclass(frozen=True)
class DilutionSetup:
    clean_sizes: tuple[int, ...] = (100, 300, 900)
    alphas: tuple[int, ...] = (0, 3, 10)
    hidden: tuple[int, ...] = (128,)
    steps: int = 600
    lr: float = 1e-3
    batch_size: int = 512  # Rolnick et al.: large batches tolerate noise better
    seeds: tuple[int, ...] = (0, 1, 2)


DILUTION_QUICK = DilutionSetup()
DILUTION_FULL = DilutionSetup(clean_sizes=(50, 100, 200, 400, 900), alphas=(0, 1, 3, 10, 30), steps=2000,
                              seeds=tuple(range(5)))


def dilution_setup(**overrides) -> DilutionSetup:
    return replace(by_scale(DILUTION_QUICK, DILUTION_FULL), **overrides)


def _train_diluted(config: dict) -> History:
    c = as_tuples(config)
    n_clean, alpha = c.pop("n_clean"), c.pop("alpha")
    s = DilutionSetup(**c)
    data = diluted_digits(n_clean, alpha, s.seeds)
    model = MLP(64, s.hidden, 10, s.seeds)
    history = train(model, data, TrainConfig(steps=s.steps, lr=s.lr, batch_size=s.batch_size,
                                              eval_every=s.steps // 6, eval_log_points=0))
    history.meta.update(n_clean=n_clean, alpha=alpha)
    return history


def run_dilution(s: DilutionSetup) -> dict[tuple[int, int], History]:
    """One History per (clean images, alpha); its members are the seeds."""
    keys = [(n, a) for n in s.clean_sizes for a in s.alphas]
    configs = [asdict(s) | {"n_clean": n, "alpha": a} for n, a in keys]
    return dict(zip(keys, sweep(_train_diluted, configs, name="massive_noise")))


# --- Section 4: benign overfitting and grokking on XOR clusters (Xu et al. 2024) ---

@dataclass(frozen=True)
class XorSetup:
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


XOR_QUICK = XorSetup()
XOR_FULL = XorSetup(dim=10_000, width=500, steps=1000, n_test=2000, seeds=tuple(range(5)))


def xor_setup(**overrides) -> XorSetup:
    return replace(by_scale(XOR_QUICK, XOR_FULL), **overrides)


def _train_xor(config: dict) -> History:
    s = XorSetup(**as_tuples(config))
    data = xor_clusters(s.n_train, s.n_test, s.dim, s.mean_norm, s.flip_fraction, s.seeds)
    model = MLP(s.dim, (s.width,), 2, s.seeds, readout="signed", bias=False, init_scale=s.init_std * math.sqrt(s.dim))
    return train(model, data, TrainConfig(steps=s.steps, lr=s.lr, optimizer="sgd", eval_every=s.steps,
                                          eval_log_points=40))


def run_xor(s: XorSetup) -> History:
    """Gradient descent on the logistic loss; members are the seeds (each its own data set)."""
    return sweep(_train_xor, [asdict(s)], name="xor_clusters")[0]


# --- Section 5: benign overfitting in linear regression (closed form) ---

@dataclass(frozen=True)
class BenignRegression:
    """y = beta . x_signal + noise; x has ``signal_dims`` directions of variance 1 and ``weak_dims``
    of variance ``weak_variance / weak_dims`` each (their total variance is fixed)."""

    n_train: int = 100
    signal_dims: int = 5
    weak_dims: tuple[int, ...] = (100, 110, 150, 300, 1000, 3000, 10_000, 30_000)
    weak_variance: float = 1.0
    noise_std: float = 0.5
    seeds: tuple[int, ...] = (0, 1, 2)


BENIGN_QUICK = BenignRegression()
BENIGN_FULL = BenignRegression(weak_dims=(100, 105, 110, 120, 150, 200, 300, 1000, 3000, 10_000, 30_000, 100_000),
                               seeds=tuple(range(10)))


def benign_setup(**overrides) -> BenignRegression:
    return replace(by_scale(BENIGN_QUICK, BENIGN_FULL), **overrides)


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


def _solve_benign(config: dict) -> History:
    s = BenignRegression(**as_tuples(config))
    values = np.array([[excess_risk(s, p, seed) for seed in s.seeds] for p in s.weak_dims])
    return History(np.array(s.weak_dims), {"excess_risk": values[..., 0], "train_mse": values[..., 1]},
                   [{"seed": seed} for seed in s.seeds], meta={"axis": "weak directions"})


def run_benign(s: BenignRegression) -> History:
    """Excess risk over the number of weak directions (the History's axis), one member per seed."""
    return sweep(_solve_benign, [asdict(s)], name="benign_regression")[0]
