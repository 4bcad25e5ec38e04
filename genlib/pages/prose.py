"""Numbers for the chapters' prose, taken from the run that just executed.

``glue("delay", 26.0)`` in a code cell and ``{glue:text}`delay:.0f``` in the markdown put the
measured value into the sentence of the built book (myst-nb's glue), at whichever scale it ran.
Nothing is printed: the value waits in ``glued_since_last_taken`` until the chapter's claims list
(``genlib.pages.claims``) shows it under the cell, so a reader in Jupyter or on Colab (no myst-nb
there) sees the same number next to the figure, and the HTML shows it once, in its sentence.
"""
from __future__ import annotations

import math
from typing import Any

_glued: list[tuple[str, str]] = []  # (name, value as the text shows it) since the last take


def glue(name: str, value: Any, fmt: str = "") -> Any:
    """Store ``value`` under ``name`` for the prose; returns the value (a plain number)."""
    if hasattr(value, "item"):  # numpy or torch scalar -> Python number, which myst-nb can format
        value = value.item()
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # plain Jupyter, Colab: the claims list shows the value
        myst_glue = None
    if myst_glue is not None:
        myst_glue(name, value, display=False)
    _glued.append((name, format(value, fmt)))
    return value


def glued_since_last_taken() -> list[tuple[str, str]]:
    """The (name, formatted value) pairs glued since the last call, oldest first; forgets them."""
    taken = list(_glued)
    _glued.clear()
    return taken


def lower_bound(value: float, digits: int = 0) -> float:
    """``value`` rounded down to ``digits`` decimals: a glued lower bound ("at least 33x") stays one."""
    return math.floor(value * 10**digits) / 10**digits


def upper_bound(value: float, digits: int = 0) -> float:
    """``value`` rounded up to ``digits`` decimals: a glued upper bound ("at most 0.41") stays one."""
    return math.ceil(value * 10**digits) / 10**digits
