"""An experiment is a declared object: a frozen dataclass whose field defaults are its quick-scale
sizes, whose ``FULL`` class attribute overrides them for full scale, and whose ``AXES`` name the
fields it sweeps inside one ensemble. Every chapter file is such declarations plus one ``build``:

    @dataclass(frozen=True)
    class GrokSetup(Experiment):
        FULL = dict(p=97, steps=4000, seeds=tuple(range(5)))
        AXES = {"weight_decay": "weight_decays"}   # member label -> field listing its values
        p: int = 59
        weight_decays: tuple[float, ...] = (1.0,)

        def build(self):
            ...  # -> (data, model, TrainConfig), one model member per entry of self.members()

    GrokSetup.at_scale(p=31).run()    # -> History, cached; members labelled {"weight_decay", "seed"}

A sweep is a list of ``dataclasses.replace`` copies, run by :func:`genlib.sweep.sweep`. Results are
cached by the experiment's class, its fields, and the source of genlib's core and of its own file.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch

from .data import TaskData
from .history import History
from .models import Ensemble
from .scale import current_scale
from .train import Penalty, TrainConfig, train


@dataclass(frozen=True)
class Experiment:
    """Base class of every chapter's setups; subclasses are frozen dataclasses with defaults."""

    FULL: ClassVar[dict[str, Any]] = {}  # full-scale values of the fields that differ from quick
    AXES: ClassVar[dict[str, str]] = {}  # member label -> name of the field holding its values
    GPU_MEMORY_GIB: ClassVar[float] = 16.0  # most a full-scale run may need: a Colab T4 (tests/test_full_scale.py)

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

    def sweep_over(self, base: type[Experiment], field: str, values) -> list:
        """One ``base`` experiment per value of ``field``, with this experiment's other fields.

        For a sweep over separate ensembles declared as a subclass (a grid with its own sizes):
        each point is a plain ``base`` instance, so its cached run does not depend on the grid.
        """
        names = [f.name for f in fields(base)]
        if field not in names:
            raise ValueError(f"field must name a field of {base.__name__}; got {field!r}")
        return [base(**{n: getattr(self, n) for n in names} | {field: v}) for v in values]

    # --- what a training experiment declares ---

    def build(self) -> tuple[TaskData, Ensemble, TrainConfig]:
        """The data, the model (one member per entry of :meth:`members`) and how to train it."""
        raise NotImplementedError(f"{type(self).__name__} must define build() or compute()")

    def prerequisites(self) -> list[Experiment]:
        """Experiments whose runs :meth:`build` reads (e.g. teachers for distillation); none by default."""
        return []

    def extra_metrics(self, data: TaskData, model: Ensemble) -> dict[str, Callable[[Ensemble], torch.Tensor]]:
        """Measurements recorded at every evaluation besides loss and accuracy (none by default): each
        function returns (S,) values, or a dict of them, recorded as "name/key"."""
        return {}

    def penalty(self, data: TaskData, model: Ensemble) -> Penalty | None:
        """A term added to each member's loss (none by default)."""
        return None

    def after_training(self, history: History, data: TaskData, model: Ensemble) -> History:
        """Add results read off the trained model (e.g. fitted curves) to the History."""
        return history

    def compute(self) -> History:
        """Build and train (closed-form experiments override this instead of :meth:`build`)."""
        data, model, config = self.build()
        history = train(model, data, config, members=self.members(),
                        extra_metrics=self.extra_metrics(data, model), penalty=self.penalty(data, model))
        return self.after_training(history, data, model)

    def run(self) -> History:
        """The History of this experiment: read from the cache, or computed and stored there."""
        from .sweep import sweep

        return sweep([self])[0]
