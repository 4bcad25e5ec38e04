"""Every full-scale setup of every chapter builds, fits on a 16 GB GPU and takes training steps.

Full scale is meant for a GPU and too slow to run here, so this checks the parts that break
silently: each setup is built at its full size, its cache key computed, its memory measured
(genlib.running.footprint: parameters, gradients, optimizer state, the activations of one step with all
members in one pass, the data) and two training steps taken on the CPU. The footprints are printed
(`pytest -s tests/test_full_scale.py`, or `python benchmarks/full_scale_memory.py`).
"""
from dataclasses import replace

import numpy as np
import pytest

from genlib.core.cifar import DownloadError
from genlib.experiments import declared_experiments
from genlib.running.experiment import TrainedExperiment
from genlib.running.footprint import GiB, build_at_full_scale, training_footprint
from genlib.running.sweep import is_cached

EXPERIMENTS = declared_experiments()


def test_every_chapter_declares_experiments():
    chapters = {cls.__module__.rsplit(".", 1)[-1] for cls in EXPERIMENTS}
    assert {"grokking", "double_descent", "memorization", "simplicity", "spectral", "sharpness"} <= chapters


@pytest.mark.parametrize("cls", EXPERIMENTS, ids=lambda c: f"{c.__module__.rsplit('.', 1)[-1]}.{c.__name__}")
def test_full_scale_setup_builds_fits_and_trains(cls, tmp_path):
    setup = cls.at_scale("full")
    assert not is_cached(setup, tmp_path)  # the cache key computes (an empty cache has nothing)
    if not issubclass(cls, TrainedExperiment):  # its own compute(): closed form, or a library procedure
        pytest.skip(f"{cls.__name__} is a ComputedExperiment, not one training run")
    try:  # runs that build() reads (teachers, scores) are trained for 2 steps first
        setup, data, model, config = build_at_full_scale(cls, tmp_path)
    except DownloadError as error:  # CIFAR-10 on a machine without it: tests/test_cifar.py checks that path
        pytest.skip(f"{cls.__name__} needs a download that is not on this machine: {error}")
    footprint = training_footprint(model, data, config)
    print(f"\n{cls.__module__}.{cls.__name__} at full scale: {footprint}")
    assert footprint.total <= cls.GPU_MEMORY_GIB * GiB, f"{cls.__name__} needs {footprint}"
    history, _ = setup.train_built(data, model, replace(config, steps=2, eval_every=2, eval_log_points=0,
                                                        device="cpu", progress=False))
    assert list(history.steps) == [0, 2]
    assert np.all(np.isfinite(history["train_loss"])), f"{cls.__name__}: non-finite loss in two steps"


def test_build_setup_rejects_what_is_not_a_trained_experiment():
    from genlib.experiments.scale_transfer import TransferGrid
    from genlib.running.footprint import build_setup

    with pytest.raises(ValueError, match="setup must be a TrainedExperiment instance"):
        build_setup(TransferGrid.at_scale("quick"))


def test_declared_grids_are_grids_of_declared_experiments():
    from genlib.experiments import declared_grids

    grids = declared_grids()
    assert grids and all(grid.POINT in EXPERIMENTS for grid in grids)
