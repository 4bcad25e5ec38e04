"""Command-line argument types shared by the benchmark scripts."""
from __future__ import annotations

import argparse


def count(text: str) -> int:
    """An argparse type: a whole number of at least 1 (steps, repeats, members, units...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value
