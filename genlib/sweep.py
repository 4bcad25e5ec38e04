"""Run a grid of configurations, each one cached as soon as it finishes.

An interrupted sweep resumes where it stopped: finished points are read back from the cache.
Pass a ``concurrent.futures.Executor`` to run points in parallel (with a process pool the run
function must be importable, i.e. defined at module level).
"""
from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, as_completed
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .cache import cache_path, cached
from .history import History


def as_tuples(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config with its lists (as JSON or a user may give them) turned back into nested tuples,
    the form the experiments' frozen dataclasses hold."""
    def fix(value):
        if isinstance(value, Mapping):
            return {k: fix(v) for k, v in value.items()}
        return tuple(fix(v) for v in value) if isinstance(value, (list, tuple)) else value
    return {k: fix(v) for k, v in config.items()}


def grid(**axes: Sequence[Any]) -> list[dict[str, Any]]:
    """All combinations of the given axes: ``grid(wd=[0, 1], fraction=[.3, .5])`` -> 4 dicts."""
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"{name} must be a non-empty list of values; got {values!r}")
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*axes.values())]


def _run_point(run: Callable[[dict], History], name: str, config: dict, directory) -> History:
    return cached(name, config, lambda: run(config), directory)


def sweep(
    run: Callable[[dict], History],
    configs: Sequence[Mapping[str, Any]],
    name: str | None = None,
    executor: Executor | None = None,
    directory: str | Path | None = None,
    progress: bool | None = None,
) -> list[History]:
    """Histories for every config, in order; cached points are read, the others computed."""
    if not configs:
        raise ValueError("configs must hold at least one configuration; got []")
    name = name or f"{run.__module__}.{run.__qualname__}"
    configs = [dict(c) for c in configs]
    results: list[History | None] = [None] * len(configs)
    todo = [i for i, c in enumerate(configs) if not cache_path(name, c, directory).exists()]
    for i in set(range(len(configs))) - set(todo):  # may still turn out damaged: then recomputed
        results[i] = _run_point(run, name, configs[i], directory)
    show = progress if progress is not None else os.environ.get("GENLIB_PROGRESS", "1") != "0"
    bar = tqdm(total=len(todo), disable=not show or not todo, desc=name.rsplit(".", 1)[-1], unit="run")
    if executor is None:
        for i in todo:
            results[i] = _run_point(run, name, configs[i], directory)
            bar.update()
    else:
        futures = {executor.submit(_run_point, run, name, configs[i], directory): i for i in todo}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            bar.update()
    bar.close()
    return results  # type: ignore[return-value]
