"""Run a list of experiments, each one cached as soon as it finishes.

A sweep is a list of experiments (``dataclasses.replace`` copies of one declared setup). An
interrupted sweep resumes where it stopped: finished points are read back from the cache. Pass a
``concurrent.futures.Executor`` (a process pool, or a cluster's: Dask's ``Client.get_executor()``)
to run points in parallel; experiments are frozen dataclasses from importable modules, so they
travel to other processes by pickling.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from concurrent.futures import Executor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from .cache import cache_path, cached
from .history import History
from .scale import show_progress

if TYPE_CHECKING:
    from .experiment import Experiment


def _where(experiment: Experiment) -> tuple[str, dict, str | None]:
    """(cache name, stored configuration, the file that declares the experiment)."""
    cls = type(experiment)
    module = sys.modules.get(cls.__module__)
    return f"{cls.__module__}.{cls.__qualname__}", asdict(experiment), getattr(module, "__file__", None)


def _run_point(experiment: Experiment, directory: str | Path | None) -> History:
    name, config, source = _where(experiment)
    return cached(name, config, experiment.compute, directory, source)


def is_cached(experiment: Experiment, directory: str | Path | None = None) -> bool:
    """Whether a finished run of this experiment is on disk."""
    name, config, source = _where(experiment)
    return cache_path(name, config, directory, source).exists()


def sweep(
    experiments: Sequence[Experiment],
    executor: Executor | None = None,
    directory: str | Path | None = None,
    progress: bool | None = None,
) -> list[History]:
    """Histories for every experiment, in order; cached ones are read, the others computed."""
    if not experiments:
        raise ValueError("experiments must hold at least one experiment; got []")
    results: list[History | None] = [None] * len(experiments)
    todo = [i for i, e in enumerate(experiments) if not is_cached(e, directory)]
    for i in set(range(len(experiments))) - set(todo):  # may still turn out damaged: then recomputed
        results[i] = _run_point(experiments[i], directory)
    label = type(experiments[0]).__name__
    bar = tqdm(total=len(todo), disable=not show_progress(progress) or not todo, desc=label, unit="run")
    if executor is None:
        for i in todo:
            results[i] = _run_point(experiments[i], directory)
            bar.update()
    else:
        futures = {executor.submit(_run_point, experiments[i], directory): i for i in todo}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            bar.update()
    bar.close()
    return results  # type: ignore[return-value]
