"""Each chapter's experiments: their quick and full sizes declared in one place, runs cached.

One file per chapter; no chapter file imports another's. What two chapters share is a recipe in
:mod:`genlib.experiments.recipes`.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil


def _declared(base: type) -> list[type]:
    """Every concrete subclass of ``base`` that a chapter's module defines, in file order."""
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, base) and cls.__module__ == module.__name__ and not inspect.isabstract(cls):
                found.append(cls)
    return found


def declared_experiments() -> list[type]:
    """Every runnable experiment class the chapters declare (abstract recipes left out), in file order."""
    from ..running.experiment import Experiment

    return _declared(Experiment)


def declared_grids() -> list[type]:
    """Every grid class the chapters declare (:class:`genlib.running.grid.Grid`), in file order."""
    from ..running.grid import Grid

    return _declared(Grid)
