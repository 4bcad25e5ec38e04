"""The two scales of every experiment, ``quick`` and ``full``, and the progress-bar switch.

``GENLIB_SCALE=quick|full`` chooses the scale; without it, ``quick``, on a GPU too (a reader on a
Colab GPU expects a chapter in minutes): full scale is always asked for. An experiment declares both
sizes in one place (see :class:`genlib.experiment.Experiment`).
"""
from __future__ import annotations

import os
from typing import TypeVar

from ._validate import check_choice

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


def show_progress(requested: bool | None = None) -> bool:
    """Whether to draw progress bars: as requested, else on unless ``$GENLIB_PROGRESS=0``."""
    return requested if requested is not None else os.environ.get("GENLIB_PROGRESS", "1") != "0"
