"""The two scales of every experiment, ``quick`` and ``full`` (the progress-bar switch is
:func:`genlib.core.environment.show_progress`).

``GENLIB_SCALE=quick|full`` chooses the scale; without it, ``quick``, on a GPU too (a reader on a
Colab GPU expects a chapter in minutes): full scale is always asked for. An experiment declares both
sizes in one place (see :class:`genlib.running.experiment.Experiment`).
"""
from __future__ import annotations

import os
from typing import TypeVar

from ..core._validate import check_choice

SCALES = ("quick", "full")
T = TypeVar("T")


def current_scale() -> str:
    """The scale in force: ``$GENLIB_SCALE`` if set, else ``quick``."""
    chosen = os.environ.get("GENLIB_SCALE", "").strip().lower()
    return check_choice("GENLIB_SCALE", chosen, SCALES) if chosen else "quick"


def by_scale(quick: T, full: T, scale: str | None = None) -> T:
    """Pick the value for the current (or the given) scale."""
    scale = current_scale() if scale is None else check_choice("scale", scale, SCALES)
    return quick if scale == "quick" else full
