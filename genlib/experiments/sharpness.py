"""Experiments of the sharpness chapter (book/sharpness.ipynb): declared setups plus one build each.

- :class:`StabilitySetup`: the digits, a tanh network, squared error, gradient descent (full batch
  or minibatches, optionally SAM) at several step sizes (the ensemble's axis); the sharpness (top
  Hessian eigenvalue on the whole training set) is tracked during training, the Hessian trace read
  at the end. :class:`StabilityGrid` gives one per batch size.
- :class:`CatapultSetup`: step sizes set per member as multiples of 2 / (its own initial sharpness).
- :class:`PerceptronSetup`: logistic regression on separable data at growing step sizes.
- :class:`LargeBatchSetup`: small and large batches on CIFAR-10 at equal epochs and equal updates
  (full scale only: CIFAR-10 is downloaded).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from .._validate import check_int, check_seeds
from ..cifar import cifar10
from ..curvature import dense_hessian, hessian_trace, top_eigenvalue
from ..data import TaskData, digit_inputs, digits, load_digits
from ..experiment import Experiment
from ..history import History
from ..models import MLP
from ..train import TrainConfig, train


@dataclass(frozen=True)
class StabilitySetup(Experiment):
    """Cohen et al. 2021 (full batch) and Wu et al. 2018 (minibatches): members are step sizes x seeds."""

    FULL = dict(n_train=1500, hidden=(200, 200), steps=3000, seeds=tuple(range(5)))
    AXES = {"lr": "lrs"}

    n_train: int = 1000
    hidden: tuple[int, ...] = (100, 100)
    activation: str = "tanh"
    init_scale: float = 0.5
    lrs: tuple[float, ...] = (0.4, 0.8, 1.6, 3.2)
    batch_size: int | None = None  # None: full batch (gradient descent)
    sam_radius: float = 0.0
    steps: int = 1000
    sharpness_every: int = 25
    early_readings: int = 0  # extra log-spaced readings in the first steps
    power_iterations: int = 20
    trace_samples: int = 20
    seeds: tuple[int, ...] = (0, 1)

    def build(self):
        return self._build_with(self.member_values("lr"))

    def _build_with(self, lrs: list[float]):
        seeds = self.member_values("seed")
        data = digits(self.n_train, seeds=seeds)
        model = MLP(64, self.hidden, 10, seeds, activation=self.activation, init_scale=self.init_scale)
        config = TrainConfig(steps=self.steps, lr=lrs, optimizer="sgd", loss="mse",
                             batch_size=self.batch_size, sam_radius=self.sam_radius,
                             eval_every=self.sharpness_every, eval_log_points=self.early_readings)
        return data, model, config

    def extra_metrics(self, data, model):
        return {"sharpness": lambda m: top_eigenvalue(m, data, "mse", iterations=self.power_iterations)}

    def after_training(self, history: History, data: TaskData, model) -> History:
        trace = hessian_trace(model, data, "mse", samples=self.trace_samples)
        return replace(history, arrays=history.arrays | {"trace": trace.detach().cpu().numpy()})


@dataclass(frozen=True)
class StabilityGrid(StabilitySetup):
    """One :class:`StabilitySetup` per batch size (None: full batch), all at the same step sizes;
    and SAM at full batch, at the one step size where batch sizes are compared."""

    FULL = StabilitySetup.FULL | dict(batch_sizes=(None, 256, 64, 16, 4))

    batch_sizes: tuple[int | None, ...] = (None, 64, 16, 4)
    compared_lr: float = 0.8
    sam_radii: tuple[float, ...] = (0.05,)
    minibatch_sharpness_every: int = 100  # a reading costs as much as many cheap minibatch steps
    sam_sharpness_every: int = 50

    def setups(self) -> dict[str, StabilitySetup]:
        """{"full batch" | "batch 64" | ...: its setup}."""
        by_batch = self.sweep_over(StabilitySetup, "batch_size", self.batch_sizes)
        by_batch = [s if s.batch_size is None else replace(s, sharpness_every=self.minibatch_sharpness_every)
                    for s in by_batch]
        return {batch_label(s.batch_size): s for s in by_batch}

    def sam_setups(self) -> dict[str, StabilitySetup]:
        """{"SAM rho=0.05" | ...: full-batch SAM at ``compared_lr``}."""
        gd = self.setups()[batch_label(None)]
        return {f"SAM rho={r:g}": replace(gd, lrs=(self.compared_lr,), sam_radius=r,
                                          sharpness_every=self.sam_sharpness_every) for r in self.sam_radii}


def batch_label(batch_size: int | None) -> str:
    return "full batch" if batch_size is None else f"batch {batch_size}"


@dataclass(frozen=True)
class CatapultSetup(StabilitySetup):
    """Lewkowycz et al. 2020: a wide one-hidden-layer ReLU network, squared error, full-batch
    gradient descent; each member's step size is a multiple of 2 / lambda_0, its own sharpness at
    initialisation. Members are multiples x seeds."""

    FULL = dict(hidden=(2048,), n_train=500, seeds=tuple(range(5)))
    AXES = {"multiple": "multiples"}

    n_train: int = 200
    hidden: tuple[int, ...] = (512,)
    activation: str = "relu"
    init_scale: float = 1.0
    multiples: tuple[float, ...] = (0.5, 1.25, 1.75, 2.5)  # lr = multiple x 2 / lambda_0
    lrs: tuple[float, ...] = ()  # set per member in build()
    steps: int = 200
    sharpness_every: int = 20
    early_readings: int = 30
    power_iterations: int = 10
    trace_samples: int = 1
    seeds: tuple[int, ...] = (0, 1, 2)

    def build(self):
        data, model, config = self._build_with([1.0] * len(self.members()))
        initial = top_eigenvalue(model, data, "mse", iterations=50)  # (S,) lambda_0
        lrs = [m * 2 / float(s) for m, s in zip(self.member_values("multiple"), initial)]
        return data, model, replace(config, lr=lrs)


def hessian_spectrum(setup: StabilitySetup, lr: float, seed: int = 0, n_train: int = 200,
                     hidden: tuple[int, ...] = (16, 16)) -> tuple[np.ndarray, np.ndarray]:
    """Every eigenvalue of the Hessian of one network of the setup's kind but small enough to write
    its Hessian out (``hidden`` widths, ``n_train`` images), at initialisation and after full-batch
    gradient descent at step size ``lr`` for the setup's number of steps: (before, after), each
    sorted from the largest down."""
    small = replace(setup, n_train=n_train, hidden=hidden, seeds=(seed,), lrs=(lr,), batch_size=None,
                    sam_radius=0.0)
    data, model, config = small.build()
    before = torch.linalg.eigvalsh(dense_hessian(model, data, "mse", 0).double()).flip(0)
    train(model, data, replace(config, eval_every=config.steps, eval_log_points=0, progress=False),
          members=small.members())
    after = torch.linalg.eigvalsh(dense_hessian(model, data, "mse", 0).double()).flip(0)
    return before.numpy(), after.numpy()


@dataclass(frozen=True)
class PerceptronSetup(Experiment):
    """Logistic regression by full-batch gradient descent on separable data (two digit classes),
    at growing step sizes (the ensemble's axis): steps until every training point is classified."""

    AXES = {"lr": "lrs"}

    classes: tuple[int, int] = (1, 8)
    lrs: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 10_000.0)
    steps: int = 300
    seeds: tuple[int, ...] = (0, 1, 2)

    def build(self):
        seeds = self.member_values("seed")
        data = two_digit_classes(self.classes, seeds)
        model = MLP(64, (), 2, seeds, init_scale=0.0)  # from w = 0, as the perceptron starts
        config = TrainConfig(steps=self.steps, lr=self.member_values("lr"), optimizer="sgd",
                             eval_every=1, eval_log_points=0)
        return data, model, config


def two_digit_classes(classes: tuple[int, int], seeds, n_train: int = 150, n_test: int = 150) -> TaskData:
    """The digits of two classes (about 180 images each), relabelled 0 and 1; per seed a random
    ``n_train`` of them for training and ``n_test`` others for testing."""
    pixels, labels = load_digits()
    x = digit_inputs("real", pixels)
    pool = torch.nonzero((labels == classes[0]) | (labels == classes[1])).flatten()
    check_int("n_train + n_test", n_train + n_test, low=2, high=len(pool))
    blocks = []
    for seed in check_seeds(seeds):
        order = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))]
        split = {"train": order[:n_train], "test": order[n_train : n_train + n_test]}
        blocks.append({k: (x[i], (labels[i] == classes[1]).long()) for k, i in split.items()})
    return TaskData.from_blocks(blocks, 2, f"digits {classes[0]} and {classes[1]}")


def steps_to_separate(history: History) -> np.ndarray:
    """(members,) first step with every training point classified correctly (NaN: never)."""
    return history.first_step("train_acc", 1.0)


@dataclass(frozen=True)
class LargeBatchSetup(Experiment):
    """Keskar et al. 2017 and Hoffer et al. 2017 on real images: CIFAR-10 as flat vectors, a ReLU MLP,
    SGD with momentum at one step size; members are seeds, one run per (batch size, number of updates)
    (:meth:`comparison`). CIFAR-10 is downloaded (163 MB), so the chapter runs this at full scale only."""

    FULL = dict(n_train=50_000, n_test=10_000, steps=11_720, large_batch=4096, seeds=(0, 1, 2), eval_every=390)

    n_train: int = 5000
    n_test: int = 2000
    hidden: tuple[int, ...] = (512, 512)
    batch_size: int = 128
    large_batch: int = 2048
    steps: int = 1200
    lr: float = 0.05
    momentum: float = 0.9
    seeds: tuple[int, ...] = (0, 1)
    eval_every: int = 100

    def build(self):
        seeds = self.member_values("seed")
        data = cifar10(self.n_train, self.n_test, seeds)
        config = TrainConfig(steps=self.steps, lr=self.lr, optimizer="sgd", momentum=self.momentum,
                             batch_size=self.batch_size, eval_every=self.eval_every, eval_log_points=0)
        return data, MLP(3072, self.hidden, 10, seeds), config

    def comparison(self) -> dict[str, LargeBatchSetup]:
        """The small batch; the large batch for as many epochs (fewer updates); and for as many updates."""
        ratio = self.large_batch / self.batch_size
        epochs = replace(self, batch_size=self.large_batch, steps=max(1, round(self.steps / ratio)),
                         eval_every=max(1, round(self.eval_every / ratio)))
        return {f"batch {self.batch_size}": self, f"batch {self.large_batch}, as many epochs": epochs,
                f"batch {self.large_batch}, as many updates": replace(self, batch_size=self.large_batch)}
