"""Where a chapter's time goes, split by kind of work (``benchmarks/profile_chapters.py`` prints it).

    profile = Profile().start()     # first thing in the notebook's kernel
    ...                             # the chapter runs
    profile.stop().seconds()        # {"training steps": ..., "evaluations": ..., ...}

While started, the pipeline's functions are wrapped so that each second goes to exactly one kind
(time inside a nested kind is taken out of the outer one):

- ``training steps``: inside :func:`genlib.core.train.train`, less the evaluations it makes;
- ``evaluations``: the built-in loss and accuracy on the evaluation sets (:func:`~genlib.core.train.evaluate`);
- ``measurements``: the experiments' extra metrics, kept arrays and ``before_``/``after_training``
  hooks (Hessian-vector products, kernels, scores);
- ``closed form``: :class:`~genlib.running.experiment.ComputedExperiment` computations outside any
  training they start;
- ``data and models``: each trained experiment's ``build``;
- ``cache``: reading and writing finished runs;
- ``notebook``: everything else between ``start`` and ``stop`` (plots, widget state, claims).

Nothing is changed but the timing: results, and so the cache, stay the same.
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Any

from ..core import train as train_module
from . import experiment as experiment_module
from . import sweep as sweep_module
from .cache import cached

KINDS = ("training steps", "evaluations", "measurements", "closed form", "data and models", "cache", "notebook")


class Profile:
    """Exclusive seconds per kind of work between :meth:`start` and :meth:`stop`."""

    def __init__(self) -> None:
        self.totals = dict.fromkeys(KINDS, 0.0)
        self._stack: list[tuple[str, float]] = []  # (kind, when it last resumed)
        self._patched: list[tuple[Any, str, Any]] = []
        self._started = self._stopped = None
        self.by_experiment: dict[str, float] = {}  # class name -> seconds computing its runs (cache reads too)

    @contextmanager
    def section(self, kind: str):
        """Count the time inside as ``kind``, pausing the enclosing section."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
        now = time.perf_counter()
        if self._stack:
            outer, since = self._stack[-1]
            self.totals[outer] += now - since
        self._stack.append((kind, now))
        try:
            yield
        finally:
            inner, since = self._stack.pop()
            now = time.perf_counter()
            self.totals[inner] += now - since
            if self._stack:
                self._stack[-1] = (self._stack[-1][0], now)

    def _timed(self, kind: str, function):
        def wrapper(*args, **kwargs):
            with self.section(kind):
                return function(*args, **kwargs)
        return wrapper

    def _patch(self, owner: Any, name: str, replacement) -> None:
        self._patched.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)

    def start(self) -> Profile:
        """Wrap the pipeline's functions and start the clock."""
        if self._started is not None:
            raise ValueError("a Profile starts once; make a new one")
        self._patch(train_module, "evaluate", self._timed("evaluations", train_module.evaluate))
        self._patch(train_module._Recorder, "__call__", self._timed("measurements", train_module._Recorder.__call__))
        original_train = train_module.train
        timed_train = self._timed("training steps", original_train)
        for module in list(sys.modules.values()):  # wherever train() was imported (the pipeline, pruning...)
            if module is not None and module.__name__.startswith("genlib.") and \
                    getattr(module, "train", None) is original_train:
                self._patch(module, "train", timed_train)
        self._patch(sweep_module, "_run_point", self._run_point)
        self._started = time.perf_counter()
        return self

    def _run_point(self, experiment, inputs: dict, directory):
        """The sweep's ``_run_point``, with the cache, build, hooks and closed forms timed apart."""
        name, config, source = sweep_module._where(experiment)

        def compute():
            if isinstance(experiment, experiment_module.TrainedExperiment):
                with self.section("data and models"):
                    built = experiment.build(**inputs)
                with self.section("measurements"):  # the hooks around training; train() is timed inside
                    return experiment.after_training(*experiment.train_built(*built))
            with self.section("closed form"):
                return experiment.compute(**inputs)

        began = time.perf_counter()
        with self.section("cache"):
            history = cached(name, config, compute, directory, source)
        self.by_experiment[name] = self.by_experiment.get(name, 0.0) + time.perf_counter() - began
        return history

    def stop(self) -> Profile:
        """Restore the pipeline's functions and stop the clock."""
        if self._started is None or self._stopped is not None:
            raise ValueError("stop() needs a started, running Profile")
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._stopped = time.perf_counter()
        return self

    def seconds(self) -> dict[str, float]:
        """Seconds per kind (``notebook`` is the rest of the wall time), and ``total``."""
        end = self._stopped if self._stopped is not None else time.perf_counter()
        total = end - self._started
        out = {k: v for k, v in self.totals.items() if k != "notebook"}
        out["notebook"] = max(0.0, total - sum(out.values()))
        out["total"] = total
        return out

