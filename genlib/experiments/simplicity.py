"""Experiments of the simplicity-bias chapter (book/simplicity_bias.ipynb): declared setups plus one
build (or compute) each. Members of every run are seeds, each with its own data set.

- :class:`LmsSetup`: Shah et al.'s LMS data (section 1).
- :class:`CueSetup`: the digits with a class-coding pixel; :class:`CueSweep` gives one per brightness.
- :class:`CumulantSetup`: distributional simplicity bias, real data against Gaussian clones.
- :class:`AvailabilitySetup`: predictivity against availability (axis: availability ratio a / b).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..experiment import Experiment
from ..history import History
from ..models import MLP
from ..synthetic import cued_digits, cumulant_classes, lms, two_cues
from ..train import TrainConfig, train


@dataclass(frozen=True)
class LmsSetup(Experiment):
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
class CueSetup(Experiment):
    """The digits with a class-coding pixel of brightness ``cue_strength``; MLP 64-256-256-10, SGD."""

    FULL = dict(steps=1500, seeds=tuple(range(5)))

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
class CueSweep(CueSetup):
    """Section 2: one CueSetup per cue brightness."""

    FULL = CueSetup.FULL | dict(cue_strengths=(0.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 15.0))
    cue_strengths: tuple[float, ...] = (0.0, 3.0, 6.0, 10.0)

    def setups(self) -> dict[float, CueSetup]:
        """{brightness: its CueSetup} (plain CueSetups, so one run's cache does not depend on the list)."""
        return dict(zip(self.cue_strengths, self.sweep_over(CueSetup, "cue_strength", self.cue_strengths)))


@dataclass(frozen=True)
class CumulantSetup(Experiment):
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
class AvailabilitySetup(Experiment):
    """Hermann et al. 2023: feature a less predictive than b, made more and more available.

    Reliance on feature a (share of conflict decisions that follow it) of a linear model and of a
    one-hidden-layer ReLU network, both trained by the same full-batch gradient descent; the
    History's axis is the availability ratio a / b (amplitude ratio).
    """

    FULL = dict(amplitudes=((1.0, 1.0), (2.0, 0.5), (3.0, 0.3), (5.0, 0.2), (10.0, 0.1)), n_train=2000, steps=4000,
                seeds=tuple(range(5)))

    predictivity: tuple[float, float] = (0.9, 0.95)
    amplitudes: tuple[tuple[float, float], ...] = ((1.0, 1.0), (3.0, 0.3), (10.0, 0.1))
    n_train: int = 500
    hidden: int = 128
    steps: int = 1000
    seeds: tuple[int, ...] = (0, 1, 2)

    def compute(self) -> History:
        seeds = self.member_values("seed")
        config = TrainConfig(steps=self.steps, lr=0.1, optimizer="sgd", eval_every=self.steps, eval_log_points=0)
        reliance = {"linear": [], "relu": []}
        for amplitude in self.amplitudes:
            data = two_cues(self.n_train, 2000, self.predictivity, amplitude, seeds=seeds)
            # the linear control is trained exactly like the network: same loss, optimizer, steps
            for name, hidden in [("linear", ()), ("relu", (self.hidden,))]:
                run = train(MLP(data.x.shape[-1], hidden, 2, seeds), data, config)
                reliance[name].append(run.final("conflict_acc"))
        ratios = np.array([a / b for a, b in self.amplitudes])
        return History(ratios, {k: np.array(v) for k, v in reliance.items()}, self.members(),
                       axis_name="availability ratio a / b")
