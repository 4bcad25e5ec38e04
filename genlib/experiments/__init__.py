"""Each chapter's experiments: their quick and full sizes declared in one place, runs cached."""
from __future__ import annotations

import importlib
import inspect
import pkgutil


def declared_experiments() -> list[type]:
    """Every runnable experiment class the chapters declare (those with their own ``build`` or
    ``compute``; bases such as a shared training recipe are left out), in file order."""
    from ..experiment import Experiment

    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if not issubclass(cls, Experiment) or cls.__module__ != module.__name__:
                continue
            if cls.build is not Experiment.build or cls.compute is not Experiment.compute:
                found.append(cls)
    return found
