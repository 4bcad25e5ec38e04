"""An experiment is a declared object: a frozen dataclass whose field defaults are its quick-scale
sizes, whose ``FULL`` class attribute overrides them for full scale, whose ``AXES`` name the fields
it sweeps inside one ensemble, and whose ``CHOICES`` and ``BOUNDS`` declare what its settings may
be (checked once, when it is made). It is one of two kinds:

- a :class:`TrainedExperiment` declares ``build`` (data, model, how to train) and optionally the
  hooks ``extra_metrics``, ``penalty``, ``before_training``, ``kept`` and ``after_training``; the
  pipeline trains it, and its ``compute`` is never overridden;
- a :class:`ComputedExperiment` declares ``compute``: worked out in closed form, or by a library
  procedure that is more than one training run (iterative magnitude pruning).

Either may declare ``requires()``: named experiments whose Histories it is handed (``build`` or
``compute`` take them as keyword arguments). :func:`genlib.running.sweep.run_experiment` and ``sweep`` run
every requirement first, once each, in the same cache and executor.

    @dataclass(frozen=True)
    class GrokSetup(TrainedExperiment):
        FULL = dict(p=97, steps=4000, seeds=tuple(range(5)))
        AXES = {"weight_decay": "weight_decays"}   # member label -> field listing its values
        CHOICES = {"model": ("mlp", "transformer")}
        p: int = 59
        weight_decays: tuple[float, ...] = (1.0,)

        def build(self):
            ...  # -> (data, model, TrainConfig), one model member per entry of self.members()

    run_experiment(GrokSetup.at_scale(p=31))    # -> History, cached; members labelled {"weight_decay", "seed"}
"""
from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, final

import torch

from ..core._validate import check_choice, check_float, check_seeds
from ..core.data import TaskData
from ..core.history import History
from ..core.models import Ensemble
from ..core.train import Penalty, TrainConfig, pick_device, train
from .scale import current_scale


@dataclass(frozen=True)
class Bounds:
    """The range a number setting (or every entry of a tuple setting) must lie in."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def check(self, name: str, value: Any) -> None:
        for v in value if isinstance(value, (tuple, list)) else [value]:
            if v is not None:
                check_float(name, v, self.low, self.high, low_open=self.low_open, high_open=self.high_open)


def _declared(cls: type, attribute: str) -> dict:
    """A class attribute merged along the class's bases, the subclass's entries winning."""
    merged: dict = {}
    for base in reversed(cls.__mro__):
        merged |= vars(base).get(attribute, {})
    return merged


@dataclass(frozen=True)
class Experiment(ABC):
    """Base of every chapter's setups; subclasses are frozen dataclasses with defaults."""

    FULL: ClassVar[dict[str, Any]] = {}  # full-scale values of the fields that differ from quick
    AXES: ClassVar[dict[str, str]] = {}  # member label -> name of the field holding its values
    CHOICES: ClassVar[dict[str, tuple]] = {}  # string setting -> its allowed values (each entry, for a tuple)
    BOUNDS: ClassVar[dict[str, Bounds]] = {}  # number setting -> its range (each entry, for a tuple)
    GPU_MEMORY_GIB: ClassVar[float] = 16.0  # most a full-scale run may need: a Colab T4 (tests/test_full_scale.py)

    def __post_init__(self) -> None:
        """Every declared setting is checked here, once: a bad one raises a ValueError naming it."""
        for name, choices in _declared(type(self), "CHOICES").items():
            value = getattr(self, name)
            for v in value if isinstance(value, tuple) else [value]:
                check_choice(name, v, choices)
        for name, bounds in _declared(type(self), "BOUNDS").items():
            bounds.check(name, getattr(self, name))
        for label, name in type(self).AXES.items():
            values = getattr(self, name)
            if not isinstance(values, (tuple, list)) or not values:
                raise ValueError(f"{name} must be a non-empty tuple (the values of the {label!r} axis); got {values!r}")
        if hasattr(self, "seeds"):
            check_seeds(self.seeds)

    @classmethod
    def at_scale(cls, scale: str | None = None, **overrides: Any):
        """The experiment at the current (or given) scale, with some fields overridden."""
        scale = scale or current_scale()
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"overrides must name fields of {cls.__name__} ({', '.join(sorted(names))}); "
                             f"got {unknown}")
        return cls(**{**(cls.FULL if scale == "full" else {}), **overrides})

    def members(self) -> list[dict[str, Any]]:
        """One label dict per ensemble member: the product of the axes, seeds last."""
        axes = {label: tuple(getattr(self, name)) for label, name in self.AXES.items()}
        axes["seed"] = tuple(getattr(self, "seeds", (0,)))
        return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]

    def member_values(self, label: str) -> list[Any]:
        """Every member's value of one label, in member order (e.g. the seeds to build a model)."""
        return [m[label] for m in self.members()]

    def requires(self) -> dict[str, Experiment]:
        """Experiments whose Histories this one reads, by the keyword they are handed under."""
        return {}

    @abstractmethod
    def compute(self, **inputs: History) -> History:
        """The History of this experiment, given the Histories of :meth:`requires` by name."""


@dataclass(frozen=True)
class ComputedExperiment(Experiment):
    """An experiment that declares :meth:`compute`: closed form (no training loop), or a library
    procedure that trains several times (e.g. :func:`genlib.measures.pruning.iterative_magnitude_pruning`)."""


@dataclass
class TrainedRun:
    """What the pipeline hands to :meth:`TrainedExperiment.after_training`: the data, the trained
    model, how it was trained, what :meth:`~TrainedExperiment.before_training` returned, and the
    arrays :meth:`~TrainedExperiment.kept` collected, one entry per evaluation."""

    data: TaskData
    model: Ensemble
    config: TrainConfig
    before: Any = None
    kept: dict[str, list[torch.Tensor]] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainedExperiment(Experiment):
    """An experiment trained by :func:`genlib.core.train.train`: it declares :meth:`build` and any
    of the hooks; the pipeline (:meth:`compute`) is the same for every one."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "compute" in vars(cls):
            raise TypeError(f"{cls.__name__} must not override compute(): a trained experiment declares build() "
                            "and hooks; a closed-form one is a ComputedExperiment")

    @abstractmethod
    def build(self, **inputs: History) -> tuple[TaskData, Ensemble, TrainConfig]:
        """The data, the model (one member per entry of :meth:`members`) and how to train it."""

    def extra_metrics(self, data: TaskData, model: Ensemble) -> dict[str, Callable[[Ensemble], Any]]:
        """Measurements recorded at every evaluation besides the built-in loss and accuracy (none by
        default): each function returns (S,) values, or a dict of them, recorded as "name/key"."""
        return {}

    def penalty(self, data: TaskData, model: Ensemble) -> Penalty | None:
        """A term added to each member's loss (none by default)."""
        return None

    def before_training(self, data: TaskData, model: Ensemble) -> Any:
        """Read the network before it trains (it trains in place), on its training device; handed
        to :meth:`after_training` as ``run.before``."""
        return None

    def kept(self, data: TaskData, model: Ensemble) -> dict[str, Callable[[Ensemble], torch.Tensor]]:
        """Arrays taken at every evaluation and kept in memory for :meth:`after_training` (not
        recorded, e.g. too large to store): each function's results go into ``run.kept[name]``."""
        return {}

    def after_training(self, history: History, run: TrainedRun) -> History:
        """Add results read off the trained model (e.g. fitted curves) to the History."""
        return history

    @final
    def train_built(self, data: TaskData, model: Ensemble, config: TrainConfig) -> tuple[History, TrainedRun]:
        """Train what :meth:`build` returned with this experiment's hooks: (History, TrainedRun),
        before :meth:`after_training` (a test may train a full-size setup for a few steps this way)."""
        model.to(pick_device(config.device))  # measured before training where it trains
        before = self.before_training(data, model)
        keepers = self.kept(data, model)
        kept: dict[str, list[torch.Tensor]] = {name: [] for name in keepers}

        def observe(m: Ensemble) -> None:
            for name, keep in keepers.items():
                kept[name].append(keep(m))

        history = train(model, data, config, members=self.members(), extra_metrics=self.extra_metrics(data, model),
                        penalty=self.penalty(data, model), observe=observe if keepers else None)
        return history, TrainedRun(data, model, config, before, kept)

    @final
    def compute(self, **inputs: History) -> History:
        return self.after_training(*self.train_built(*self.build(**inputs)))
