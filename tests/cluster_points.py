"""Tiny experiments for tests/test_cluster.py, in a module of their own so that worker processes
can import them (the test puts this folder on their path)."""
import os
import time
from dataclasses import dataclass

import numpy as np

from genlib.core.history import History
from genlib.running.experiment import ComputedExperiment


@dataclass(frozen=True)
class SquarePoint(ComputedExperiment):
    """One point of a sweep: records x squared, and which process computed it, in ``log``."""

    x: int = 0
    log: str = ""
    crash_marker: str = ""  # if set and the file is absent: create it and kill this process

    def compute(self, **inputs) -> History:
        if self.crash_marker and not os.path.exists(self.crash_marker):
            open(self.crash_marker, "w").close()
            os._exit(1)  # the worker dies mid-sweep, as on a pre-empted node
        time.sleep(0.3)  # long enough that the sweep is still running when the worker dies
        with open(self.log, "a") as f:
            f.write(f"{self.x} {os.getpid()}\n")
        return History(np.array([0]), {"value": np.array([[float(self.x**2)]])}, [{"seed": 0}])
