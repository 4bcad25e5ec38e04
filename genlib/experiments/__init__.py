"""Each chapter's experiments: their quick and full sizes declared in one place, runs cached.

One file per chapter; no chapter file imports another's. What two chapters share is a recipe in
:mod:`genlib.experiments.recipes`.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil


def declared_experiments() -> list[type]:
    """Every runnable experiment class the chapters declare (abstract recipes left out), in file order."""
    from ..running.experiment import Experiment

    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Experiment) and cls.__module__ == module.__name__ and not inspect.isabstract(cls):
                found.append(cls)
    return found
