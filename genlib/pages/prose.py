"""Numbers for the chapters' prose, taken from the run that just executed.

``glue("delay", 26.0)`` in a code cell and ``{glue:text}`delay:.0f``` in the markdown put the
measured value into the sentence of the built book (myst-nb's glue), at whichever scale it ran.
The value is also printed, so a reader in Jupyter or on Colab (no myst-nb there) sees the same
number next to the figure.
"""
from __future__ import annotations

import math
from typing import Any


def glue(name: str, value: Any, fmt: str = "") -> Any:
    """Store ``value`` under ``name`` for the prose and print it; returns the value (a plain number)."""
    if hasattr(value, "item"):  # numpy or torch scalar -> Python number, which myst-nb can format
        value = value.item()
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # plain Jupyter, Colab: printing is enough
        myst_glue = None
    if myst_glue is not None:
        myst_glue(name, value, display=False)
    print(f"{name} = {format(value, fmt)}")
    return value


def lower_bound(value: float, digits: int = 0) -> float:
    """``value`` rounded down to ``digits`` decimals: a glued lower bound ("at least 33x") stays one."""
    return math.floor(value * 10**digits) / 10**digits


def upper_bound(value: float, digits: int = 0) -> float:
    """``value`` rounded up to ``digits`` decimals: a glued upper bound ("at most 0.41") stays one."""
    return math.ceil(value * 10**digits) / 10**digits
