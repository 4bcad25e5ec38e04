"""The two scales of every experiment: ``quick`` (CPU, CI, a laptop) and ``full`` (GPU, paper-like).

``GENLIB_SCALE=quick|full`` chooses; without it, ``full`` where CUDA is available and ``quick``
otherwise. An experiment declares both sizes in one place with :func:`by_scale`.
"""
from __future__ import annotations

import os
from typing import TypeVar

import torch

from ._validate import check_choice

SCALES = ("quick", "full")
T = TypeVar("T")


def current_scale() -> str:
    """The scale in force: ``$GENLIB_SCALE`` if set, else ``full`` on CUDA and ``quick`` otherwise."""
    chosen = os.environ.get("GENLIB_SCALE", "").strip().lower()
    if chosen:
        return check_choice("GENLIB_SCALE", chosen, SCALES)
    return "full" if torch.cuda.is_available() else "quick"


def by_scale(quick: T, full: T, scale: str | None = None) -> T:
    """Pick the value for the current (or the given) scale."""
    scale = current_scale() if scale is None else check_choice("scale", scale, SCALES)
    return quick if scale == "quick" else full
