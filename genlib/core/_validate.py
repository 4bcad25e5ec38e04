"""Argument checks shared by genlib's public functions.

Every public function checks its arguments at the entry and raises a ``ValueError`` that names the
parameter, the allowed values and the value received (scikit-learn's convention).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def _fail(name: str, allowed: str, value: Any) -> None:
    raise ValueError(f"{name} must be {allowed}; got {value!r}")


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` if it is an integer in [low, high], else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(name, "an integer", value)
    if (low is not None and value < low) or (high is not None and value > high):
        _fail(name, _range_text(low, high, closed=True), value)
    return value


def check_float(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``float(value)`` if it lies in the given (half-)open or closed range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(name, "a number", value)
    value = float(value)
    if value != value:  # NaN
        _fail(name, "a number, not NaN", value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        _fail(name, _range_text(low, high, low_open=low_open, high_open=high_open), value)
    return value


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        _fail(name, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def check_seeds(seeds: Any) -> list[int]:
    """Return the seeds as a list if it is a non-empty sequence of integers >= 0."""
    seeds = list(seeds)
    if not seeds:
        _fail("seeds", "a non-empty sequence of integers (S >= 1)", seeds)
    for s in seeds:
        check_int("seeds", s, low=0)
    return seeds


def per_member(name: str, value: Any, members: int, **range_kw: Any) -> list[float]:
    """Broadcast a number or a sequence of ``members`` numbers to a checked list of floats."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * members
    if len(values) != members:
        _fail(name, f"a number or a sequence of {members} numbers (one per member)", value)
    return [check_float(name, v, **range_kw) for v in values]


def _range_text(low, high, closed=False, low_open=False, high_open=False) -> str:
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    if low is not None and high is not None:
        return f"in {left}{low}, {high}{right}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    return f"{'<' if high_open else '<='} {high}"
