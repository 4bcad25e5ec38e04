"""Where the time goes (genlib.running.profile) and what a run costs in arithmetic (footprint)."""
import time
from dataclasses import dataclass

import pytest
import torch

from genlib.core.data import digits
from genlib.core.history import History
from genlib.core.models import MLP
from genlib.core.train import TrainConfig
from genlib.running.experiment import ComputedExperiment, TrainedExperiment
from genlib.running.footprint import training_arithmetic
from genlib.running.profile import KINDS, Profile
from genlib.running.sweep import run_experiment, sweep


@dataclass(frozen=True)
class SlowHooks(TrainedExperiment):
    """A tiny digits run whose extra metric and after-training hook sleep, so their share is known."""

    steps: int = 5
    nap: float = 0.05

    def build(self):
        data = digits(100, [0])
        return data, MLP(64, (8,), 10, [0]), TrainConfig(steps=self.steps, lr=0.1, optimizer="sgd", eval_every=5,
                                                          eval_log_points=0)

    def extra_metrics(self, data, model):
        return {"slept": lambda m: (time.sleep(self.nap), torch.zeros(1))[1]}

    def after_training(self, history: History, run):
        time.sleep(self.nap)
        return history


@dataclass(frozen=True)
class SlowClosedForm(ComputedExperiment):
    nap: float = 0.05

    def compute(self):
        time.sleep(self.nap)
        return History(torch.arange(1).numpy(), {"x": torch.zeros(1, 1).numpy()}, [{"seed": 0}], {})


def test_each_kind_gets_its_own_time_and_the_kinds_add_up(tmp_path):
    profile = Profile().start()
    run_experiment(SlowHooks(), directory=tmp_path)
    sweep([SlowClosedForm()], directory=tmp_path)
    time.sleep(0.05)  # the notebook's own work
    seconds = profile.stop().seconds()
    assert set(seconds) == {*KINDS, "total"}
    # two evaluations (steps 0 and 5), each with a 0.05 s extra metric, and the after-training hook
    assert 0.15 <= seconds["measurements"] < 0.6
    assert 0.05 <= seconds["closed form"] < 0.3
    assert seconds["training steps"] > 0 and seconds["evaluations"] > 0
    assert 0.05 <= seconds["notebook"] < 0.5
    assert sum(v for k, v in seconds.items() if k != "total") == pytest.approx(seconds["total"], rel=1e-6)
    assert set(profile.by_experiment) == {f"{__name__}.SlowHooks", f"{__name__}.SlowClosedForm"}


def test_stop_restores_the_pipeline_and_a_profile_starts_once(tmp_path):
    import genlib.core.train as train_module
    import genlib.running.sweep as sweep_module

    before = (train_module.evaluate, sweep_module._run_point, train_module._Recorder.__call__)
    profile = Profile().start()
    with pytest.raises(ValueError, match="a Profile starts once"):
        profile.start()
    profile.stop()
    assert (train_module.evaluate, sweep_module._run_point, train_module._Recorder.__call__) == before
    with pytest.raises(ValueError, match="stop\\(\\) needs a started, running Profile"):
        profile.stop()
    with pytest.raises(ValueError, match="kind must be one of"):
        with profile.section("plots"):
            pass


def test_training_arithmetic_counts_the_matrix_products():
    data = digits(100, [0, 1])
    model = MLP(64, (32,), 10, [0, 1])
    config = TrainConfig(steps=20, batch_size=10, eval_every=10, eval_log_points=0)
    cost = training_arithmetic(model, data, config)
    forward = 2 * 10 * (64 * 32 + 32 * 10) * 2  # two members, batch 10
    # backward: the gradients of both weights and of the hidden activations (not of the input)
    assert cost.per_step == forward + 2 * 10 * (64 * 32 + 2 * 32 * 10) * 2
    n_eval = data.train_idx.shape[1] + data.test_idx.shape[1]
    assert cost.per_evaluation == 2 * n_eval * (64 * 32 + 32 * 10) * 2
    assert (cost.steps, cost.evaluations) == (20, 3)
    assert cost.total == 20 * cost.per_step + 3 * cost.per_evaluation
