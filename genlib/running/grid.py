"""A grid: separate experiments (one ensemble each) that differ in one or more settings.

A grid is not an experiment: it holds a ``base`` experiment and varies it along its own fields, so
each point is a plain experiment whose cached run does not depend on the grid. ``POINT`` is the
base's class; ``POINT_QUICK`` and ``POINT_FULL`` are the base's fields as this grid sets them at
each scale (at full scale on top of the base's own ``FULL``); ``FULL`` holds the grid's own fields
at full scale.

    @dataclass(frozen=True)
    class CueSweep(Grid):
        POINT = CueSetup
        FULL = dict(cue_strengths=(0.0, 2.0, 4.0, 8.0))
        cue_strengths: tuple[float, ...] = (0.0, 3.0)

        def setups(self):
            return self.vary("cue_strength", self.cue_strengths)

    CueSweep.at_scale(steps=100)   # steps is the base's field, cue_strengths the grid's
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

from .experiment import Experiment
from .scale import current_scale


@dataclass(frozen=True)
class Grid(ABC):
    """A base experiment and the settings along which its points differ."""

    POINT: ClassVar[type[Experiment]]
    POINT_QUICK: ClassVar[dict[str, Any]] = {}
    POINT_FULL: ClassVar[dict[str, Any]] = {}
    FULL: ClassVar[dict[str, Any]] = {}

    base: Experiment

    def __post_init__(self) -> None:
        if not isinstance(self.base, self.POINT):
            raise ValueError(f"base must be a {self.POINT.__name__}; got {type(self.base).__name__}")

    @classmethod
    def at_scale(cls, scale: str | None = None, **overrides: Any):
        """The grid at the current (or given) scale; an override names a field of the grid or of its base."""
        scale = scale or current_scale()
        own = {f.name for f in fields(cls)} - {"base"}
        point_fields = {f.name for f in fields(cls.POINT)}
        unknown = sorted(set(overrides) - own - point_fields)
        if unknown:
            raise ValueError(f"overrides must name fields of {cls.__name__} ({', '.join(sorted(own))}) or of "
                             f"{cls.POINT.__name__} ({', '.join(sorted(point_fields))}); got {unknown}")
        defaults = cls.POINT_FULL if scale == "full" else cls.POINT_QUICK
        point = {k: v for k, v in overrides.items() if k not in own}
        base = cls.POINT.at_scale(scale, **(defaults | point))
        grid = {k: v for k, v in overrides.items() if k in own}
        return cls(base=base, **((cls.FULL if scale == "full" else {}) | grid))

    def vary(self, name: str, values) -> dict:
        """{value: the base with field ``name`` set to it}."""
        return {v: replace(self.base, **{name: v}) for v in values}

    @abstractmethod
    def setups(self) -> dict[Any, Experiment]:
        """{label: experiment}, one separate experiment per point of the grid."""
