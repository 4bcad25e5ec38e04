"""Experiments of the simplicity-bias chapter (book/simplicity_bias.ipynb), each with its quick
and full size: Shah et al.'s LMS data and an image analogue, distributional simplicity bias, and
predictivity against availability. Members of every run are seeds (each with its own data set).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
from sklearn.linear_model import LogisticRegression

from ..history import History
from ..models import MLP
from ..scale import by_scale
from ..sweep import as_tuples, sweep
from ..synthetic import cued_digits, cumulant_classes, lms, two_cues
from ..train import TrainConfig, train


@dataclass(frozen=True)
class LmsSetup:
    """Shah et al. 2020: 2 x 100 ReLU, SGD lr 0.1, weight decay 5e-5, batches of 256."""

    slabs: int = 5
    shuffle_linear_in_training: bool = False
    n_train: int = 10_000
    n_test: int = 5000
    epochs: int = 20
    seeds: tuple[int, ...] = (0, 1, 2)


LMS_QUICK = LmsSetup()
LMS_FULL = LmsSetup(n_train=50_000, n_test=10_000, epochs=50, seeds=tuple(range(5)))


def lms_setup(**overrides) -> LmsSetup:
    return replace(by_scale(LMS_QUICK, LMS_FULL), **overrides)


def _train_lms(config: dict) -> History:
    s = LmsSetup(**as_tuples(config))
    data = lms(s.n_train, s.n_test, s.slabs, shuffle_linear_in_training=s.shuffle_linear_in_training, seeds=s.seeds)
    steps_per_epoch = s.n_train // 256
    return train(MLP(50, (100, 100), 2, s.seeds), data,
                 TrainConfig(steps=s.epochs * steps_per_epoch, lr=0.1, optimizer="sgd", weight_decay=5e-5,
                             batch_size=256, eval_every=steps_per_epoch, eval_log_points=10))


def run_lms(setups: list[LmsSetup]) -> list[History]:
    return sweep(_train_lms, [asdict(s) for s in setups], name="lms")


@dataclass(frozen=True)
class CueSetup:
    """The digits with a class-coding pixel of a given brightness; MLP 64-256-256-10, SGD."""

    cue_strengths: tuple[float, ...] = (0.0, 3.0, 6.0, 10.0)
    n_train: int = 1000
    steps: int = 500
    seeds: tuple[int, ...] = (0, 1, 2)


CUE_QUICK = CueSetup()
CUE_FULL = CueSetup(cue_strengths=(0.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 15.0), steps=1500, seeds=tuple(range(5)))


def cue_setup(**overrides) -> CueSetup:
    return replace(by_scale(CUE_QUICK, CUE_FULL), **overrides)


def _train_cue(config: dict) -> History:
    c = as_tuples(config)
    strength = c.pop("cue_strength")
    s = CueSetup(**c)
    data = cued_digits(s.n_train, strength, s.seeds)
    return train(MLP(64, (256, 256), 10, s.seeds), data,
                 TrainConfig(steps=s.steps, lr=0.05, optimizer="sgd", momentum=0.9, batch_size=64,
                             eval_every=50, eval_log_points=0))


def run_cues(s: CueSetup) -> dict[float, History]:
    configs = [asdict(s) | {"cue_strength": v} for v in s.cue_strengths]
    return dict(zip(s.cue_strengths, sweep(_train_cue, configs, name="cued_digits")))


@dataclass(frozen=True)
class CumulantSetup:
    """Refinetti et al. 2023: MLP 10-256-256-2 trained by SGD with momentum on classes that differ
    in mean, covariance and higher cumulants; accuracy on real test data and on Gaussian clones."""

    n_train: int = 4000
    steps: int = 1500
    lr: float = 0.05
    seeds: tuple[int, ...] = (0, 1, 2)


CUMULANT_QUICK = CumulantSetup()
CUMULANT_FULL = CumulantSetup(n_train=20_000, steps=6000, seeds=tuple(range(5)))


def cumulant_setup(**overrides) -> CumulantSetup:
    return replace(by_scale(CUMULANT_QUICK, CUMULANT_FULL), **overrides)


def _train_cumulants(config: dict) -> History:
    s = CumulantSetup(**as_tuples(config))
    data = cumulant_classes(s.n_train, 4000, seeds=s.seeds)
    return train(MLP(10, (256, 256), 2, s.seeds), data,
                 TrainConfig(steps=s.steps, lr=s.lr, optimizer="sgd", momentum=0.9, batch_size=128,
                             eval_every=100, eval_log_points=25))


def run_cumulants(s: CumulantSetup) -> History:
    return sweep(_train_cumulants, [asdict(s)], name="cumulants")[0]


@dataclass(frozen=True)
class AvailabilitySetup:
    """Hermann et al. 2023: feature a less predictive than b, made more and more available."""

    predictivity: tuple[float, float] = (0.9, 0.95)
    amplitudes: tuple[tuple[float, float], ...] = ((1.0, 1.0), (3.0, 0.3), (10.0, 0.1))
    n_train: int = 500
    hidden: int = 128
    steps: int = 1000
    seeds: tuple[int, ...] = (0, 1, 2)


AVAILABILITY_QUICK = AvailabilitySetup()
AVAILABILITY_FULL = AvailabilitySetup(amplitudes=((1.0, 1.0), (2.0, 0.5), (3.0, 0.3), (5.0, 0.2), (10.0, 0.1)),
                                      n_train=2000, steps=4000, seeds=tuple(range(5)))


def availability_setup(**overrides) -> AvailabilitySetup:
    return replace(by_scale(AVAILABILITY_QUICK, AVAILABILITY_FULL), **overrides)


def _reliance(config: dict) -> History:
    """Reliance on feature a (share of conflict decisions that follow it) of a linear model
    (logistic regression, solved to its optimum) and of a one-hidden-layer ReLU network."""
    s = AvailabilitySetup(**as_tuples(config))
    linear, network = [], []
    for amplitude in s.amplitudes:
        data = two_cues(s.n_train, 2000, s.predictivity, amplitude, seeds=s.seeds)
        scores = []
        for m, _ in enumerate(s.seeds):
            train_idx, conflict = data.train_idx[m], data.subsets["conflict"][m]
            model = LogisticRegression(C=1e4, max_iter=10_000).fit(data.x[train_idx], data.y[m, train_idx])
            scores.append(float((model.predict(data.x[conflict]) == data.y[m, conflict].numpy()).mean()))
        linear.append(scores)
        run = train(MLP(data.x.shape[1], (s.hidden,), 2, s.seeds), data,
                    TrainConfig(steps=s.steps, lr=0.1, optimizer="sgd", eval_every=s.steps, eval_log_points=0))
        network.append(run.final("conflict_acc"))
    ratios = np.array([a / b for a, b in s.amplitudes])
    return History(ratios, {"linear": np.array(linear), "relu": np.array(network)},
                   [{"seed": seed} for seed in s.seeds], meta={"axis": "availability ratio a / b"})


def run_availability(s: AvailabilitySetup) -> History:
    """Reliance on the less predictive feature a, over its availability (History axis: a/b amplitude)."""
    return sweep(_reliance, [asdict(s)], name="availability")[0]
