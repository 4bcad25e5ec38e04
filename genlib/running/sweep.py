"""Run experiments, each one cached as soon as it finishes: :func:`run_experiment` one, :func:`sweep` a list.

A sweep is a list of experiments (``dataclasses.replace`` copies of one declared setup, or a
:class:`~genlib.running.grid.Grid`'s points). Every experiment's requirements
(:meth:`~genlib.running.experiment.Experiment.requires`) are run first, once each however many
experiments share them, in the same cache directory and executor, and handed to it by name. An
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

from tqdm.auto import tqdm

from ..core.environment import show_progress
from ..core.history import History
from .cache import cache_path, cached
from .experiment import Experiment


def _where(experiment: Experiment) -> tuple[str, dict, str | None]:
    """(cache name, stored configuration, the file that declares the experiment)."""
    cls = type(experiment)
    module = sys.modules.get(cls.__module__)
    return f"{cls.__module__}.{cls.__qualname__}", asdict(experiment), getattr(module, "__file__", None)


def _run_point(experiment: Experiment, inputs: dict[str, History], directory: str | Path | None) -> History:
    name, config, source = _where(experiment)
    return cached(name, config, lambda: experiment.compute(**inputs), directory, source)


def is_cached(experiment: Experiment, directory: str | Path | None = None) -> bool:
    """Whether a finished run of this experiment is on disk."""
    name, config, source = _where(experiment)
    return cache_path(name, config, directory, source).exists()


def _stages(experiments: Sequence[Experiment], directory: str | Path | None) -> list[list[Experiment]]:
    """Every experiment and the requirements of those not cached, each once, in stages:
    requirements before what needs them."""
    depth: dict[Experiment, int] = {}

    def visit(e: Experiment, path: tuple[Experiment, ...]) -> int:
        if e in path:
            raise ValueError(f"requirements must not form a cycle; {type(e).__name__} requires itself")
        if e not in depth:
            needed = {} if is_cached(e, directory) else e.requires()
            depth[e] = 1 + max((visit(r, path + (e,)) for r in needed.values()), default=-1)
        return depth[e]

    for e in experiments:
        visit(e, ())
    return [[e for e, d in depth.items() if d == level] for level in range(max(depth.values()) + 1)]


def _compute_stage(stage: list[Experiment], done: dict[Experiment, History], executor: Executor | None,
                   directory: str | Path | None, progress: bool | None) -> None:
    todo = []
    for e in stage:
        if is_cached(e, directory):  # may still turn out damaged: then recomputed
            done[e] = _run_point(e, {}, directory)
        else:
            todo.append(e)
    bar = tqdm(total=len(todo), disable=not show_progress(progress) or not todo, desc=type(stage[0]).__name__,
               unit="run")

    def inputs(e: Experiment) -> dict[str, History]:
        return {name: done[r] for name, r in e.requires().items()}

    if executor is None:
        for e in todo:
            done[e] = _run_point(e, inputs(e), directory)
            bar.update()
    else:
        futures = {executor.submit(_run_point, e, inputs(e), directory): e for e in todo}
        for future in as_completed(futures):
            done[futures[future]] = future.result()
            bar.update()
    bar.close()


def sweep(
    experiments: Sequence[Experiment],
    executor: Executor | None = None,
    directory: str | Path | None = None,
    progress: bool | None = None,
) -> list[History]:
    """Histories for every experiment, in order; cached ones are read, the others computed after
    their requirements."""
    if not experiments:
        raise ValueError("experiments must hold at least one experiment; got []")
    for e in experiments:
        if not isinstance(e, Experiment):
            raise ValueError(f"experiments must be Experiments (a grid's are in .setups()); got {type(e).__name__}")
    done: dict[Experiment, History] = {}
    for stage in _stages(experiments, directory):
        _compute_stage(stage, done, executor, directory, progress)
    return [done[e] for e in experiments]


def run_experiment(experiment: Experiment, executor: Executor | None = None,
                   directory: str | Path | None = None) -> History:
    """The History of one experiment: read from the cache, or computed (after its requirements) and stored."""
    return sweep([experiment], executor, directory)[0]
