"""Experiments of the simplicity-bias chapter (book/simplicity_bias.ipynb): declared setups plus one
build (or compute) each. Members of every run are seeds, each with its own data set.

- :class:`LmsSetup`: Shah et al.'s LMS data (section 1).
- :class:`CueSetup`: the digits with a class-coding pixel; :class:`CueSweep` gives one per brightness.
- :class:`CumulantSetup`: distributional simplicity bias, real data against Gaussian clones.
- :class:`AvailabilitySetup`: predictivity against availability (axis: availability ratio a / b),
  assembled from one :class:`AvailabilityRun` per (amplitude pair, model).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.history import History
from ..core.models import MLP
from ..core.synthetic import cued_digits, cumulant_classes, lms, two_cues
from ..core.train import TrainConfig
from ..running.experiment import Bounds, ComputedExperiment, TrainedExperiment
from ..running.grid import Grid

AVAILABILITY_MODELS = ("linear", "relu")


@dataclass(frozen=True)
class LmsSetup(TrainedExperiment):
    """Shah et al. 2020: 2 x 100 ReLU, SGD lr 0.1, weight decay 5e-5, batches of 256."""

    FULL = dict(n_train=50_000, n_test=10_000, epochs=50, seeds=tuple(range(5)))

    slabs: int = 5
    shuffle_linear_in_training: bool = False
    n_train: int = 10_000
    n_test: int = 5000
    epochs: int = 20
    seeds: tuple[int, ...] = (0, 1, 2)

    def build(self):
        seeds = self.member_values("seed")
        data = lms(self.n_train, self.n_test, self.slabs, shuffle_linear_in_training=self.shuffle_linear_in_training,
                   seeds=seeds)
        steps_per_epoch = self.n_train // 256
        config = TrainConfig(steps=self.epochs * steps_per_epoch, lr=0.1, optimizer="sgd", weight_decay=5e-5,
                             batch_size=256, eval_every=steps_per_epoch, eval_log_points=10)
        return data, MLP(50, (100, 100), 2, seeds), config


@dataclass(frozen=True)
class CueSetup(TrainedExperiment):
    """The digits with a class-coding pixel of brightness ``cue_strength``; MLP 64-256-256-10, SGD."""

    FULL = dict(steps=1500, seeds=tuple(range(5)))
    BOUNDS = {"cue_strength": Bounds(0.0)}

    cue_strength: float = 3.0
    n_train: int = 1000
    steps: int = 500
    seeds: tuple[int, ...] = (0, 1, 2)

    def build(self):
        seeds = self.member_values("seed")
        config = TrainConfig(steps=self.steps, lr=0.05, optimizer="sgd", momentum=0.9, batch_size=64,
                             eval_every=50, eval_log_points=0)
        return cued_digits(self.n_train, self.cue_strength, seeds), MLP(64, (256, 256), 10, seeds), config


@dataclass(frozen=True)
class CueSweep(Grid):
    """Section 2: one CueSetup per cue brightness."""

    POINT = CueSetup
    FULL = dict(cue_strengths=(0.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 15.0))

    cue_strengths: tuple[float, ...] = (0.0, 3.0, 6.0, 10.0)

    def setups(self) -> dict[float, CueSetup]:
        """{brightness: its CueSetup} (plain CueSetups, so one run's cache does not depend on the list)."""
        return self.vary("cue_strength", self.cue_strengths)


@dataclass(frozen=True)
class CumulantSetup(TrainedExperiment):
    """Refinetti et al. 2023: MLP 10-256-256-2 trained by SGD with momentum on classes that differ
    in mean, covariance and higher cumulants; accuracy on real test data and on Gaussian clones."""

    FULL = dict(n_train=20_000, steps=6000, seeds=tuple(range(5)))

    n_train: int = 4000
    steps: int = 1500
    lr: float = 0.05
    seeds: tuple[int, ...] = (0, 1, 2)

    def build(self):
        seeds = self.member_values("seed")
        config = TrainConfig(steps=self.steps, lr=self.lr, optimizer="sgd", momentum=0.9, batch_size=128,
                             eval_every=100, eval_log_points=25)
        return cumulant_classes(self.n_train, 4000, seeds=seeds), MLP(10, (256, 256), 2, seeds), config


@dataclass(frozen=True)
class AvailabilityRun(TrainedExperiment):
    """One point of :class:`AvailabilitySetup`: a linear model or a one-hidden-layer ReLU network
    trained by full-batch gradient descent on two cues of the given amplitudes; members are seeds.
    Its "conflict_acc" is the share of conflict decisions that follow feature a."""

    FULL = dict(n_train=2000, steps=4000, seeds=tuple(range(5)))
    CHOICES = {"model": AVAILABILITY_MODELS}
    BOUNDS = {"predictivity": Bounds(0.0, 1.0, low_open=True), "amplitude": Bounds(0.0, low_open=True)}

    model: str = "relu"  # "linear" or "relu" (one hidden layer of ``hidden`` units)
    amplitude: tuple[float, float] = (1.0, 1.0)
    predictivity: tuple[float, float] = (0.9, 0.95)
    n_train: int = 500
    hidden: int = 128
    steps: int = 1000
    seeds: tuple[int, ...] = (0, 1, 2)

    def build(self):
        seeds = self.member_values("seed")
        data = two_cues(self.n_train, 2000, self.predictivity, self.amplitude, seeds=seeds)
        # the linear control is trained exactly like the network: same loss, optimizer, steps
        hidden = () if self.model == "linear" else (self.hidden,)
        config = TrainConfig(steps=self.steps, lr=0.1, optimizer="sgd", eval_every=self.steps, eval_log_points=0)
        return data, MLP(data.x.shape[-1], hidden, 2, seeds), config


@dataclass(frozen=True)
class AvailabilitySetup(ComputedExperiment):
    """Hermann et al. 2023: feature a less predictive than b, made more and more available.

    Reliance on feature a (share of conflict decisions that follow it) of a linear model and of a
    one-hidden-layer ReLU network, both trained by the same full-batch gradient descent (one
    :class:`AvailabilityRun` each per amplitude pair, its requirements); the History's axis is the
    availability ratio a / b (amplitude ratio), its metrics "linear" and "relu".
    """

    FULL = dict(amplitudes=((1.0, 1.0), (2.0, 0.5), (3.0, 0.3), (5.0, 0.2), (10.0, 0.1)), n_train=2000, steps=4000,
                seeds=tuple(range(5)))
    BOUNDS = {"predictivity": Bounds(0.0, 1.0, low_open=True)}

    predictivity: tuple[float, float] = (0.9, 0.95)
    amplitudes: tuple[tuple[float, float], ...] = ((1.0, 1.0), (3.0, 0.3), (10.0, 0.1))
    n_train: int = 500
    hidden: int = 128
    steps: int = 1000
    seeds: tuple[int, ...] = (0, 1, 2)

    def requires(self) -> dict[str, AvailabilityRun]:
        """{"<model>_<i>": that model's run at the i-th amplitude pair}."""
        return {f"{model}_{i}": AvailabilityRun(model=model, amplitude=amplitude, predictivity=self.predictivity,
                                                n_train=self.n_train, hidden=self.hidden, steps=self.steps,
                                                seeds=self.seeds)
                for i, amplitude in enumerate(self.amplitudes) for model in AVAILABILITY_MODELS}

    def compute(self, **runs: History) -> History:
        reliance = {model: [runs[f"{model}_{i}"].final("conflict_acc") for i in range(len(self.amplitudes))]
                    for model in AVAILABILITY_MODELS}
        ratios = np.array([a / b for a, b in self.amplitudes])
        return History(ratios, {k: np.array(v) for k, v in reliance.items()}, self.members(),
                       axis_name="availability ratio a / b")
