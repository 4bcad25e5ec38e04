"""The experiment shape every chapter uses: declared sizes, labelled members, one build, one run."""
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from genlib.data import TaskData, modular_arithmetic
from genlib.experiment import Experiment
from genlib.models import EmbeddingMLP
from genlib.train import TrainConfig


@dataclass(frozen=True)
class TinyGrok(Experiment):
    FULL = dict(p=13, seeds=(0, 1, 2))
    AXES = {"weight_decay": "weight_decays", "lr": "lrs"}

    p: int = 7
    weight_decays: tuple[float, ...] = (0.0, 1.0)
    lrs: tuple[float, ...] = (0.01,)
    seeds: tuple[int, ...] = (0, 1)
    steps: int = 3

    def build(self):
        seeds = self.member_values("seed")
        data = modular_arithmetic(self.p, "+", 0.5, seeds)
        model = EmbeddingMLP(self.p, seeds, embed_dim=4, hidden=(8,))
        return data, model, TrainConfig(steps=self.steps, lr=self.member_values("lr"),
                                        weight_decay=self.member_values("weight_decay"))


def test_quick_sizes_are_the_defaults_and_full_overrides_them():
    assert TinyGrok.at_scale().p == 7 and TinyGrok.at_scale(scale="full").p == 13
    assert TinyGrok.at_scale(scale="full", p=11).p == 11, "an override wins over the scale"
    with pytest.raises(ValueError, match="overrides must name fields of TinyGrok.*'depth'"):
        TinyGrok.at_scale(depth=3)


def test_members_are_the_product_of_the_axes_with_seeds_last():
    members = TinyGrok().members()
    assert members == [{"weight_decay": wd, "lr": 0.01, "seed": s} for wd in (0.0, 1.0) for s in (0, 1)]


def test_run_records_the_labels_and_is_cached():
    experiment = TinyGrok()
    history = experiment.run()
    assert history.select(weight_decay=1.0, seed=1).members[0]["lr"] == 0.01
    assert history.meta["experiment"]["name"].endswith("TinyGrok")
    assert experiment.run().meta["seconds"] == history.meta["seconds"], "the second run is read from the cache"


def test_from_blocks_keeps_equal_inputs_shared_and_others_per_member():
    x = torch.arange(10.0)[:, None]
    shared = TaskData.from_blocks([{"train": (x[:6], torch.zeros(6)), "test": (x[6:], torch.ones(4))}] * 2)
    assert not shared.per_member_inputs and shared.x.shape == (10, 1) and shared.y.shape == (2, 10)
    assert shared.test_idx.tolist() == [[6, 7, 8, 9]] * 2
    blocks = [{"train": (x[:6] + s, torch.zeros(6)), "test": (x[6:] + s, torch.ones(4)),
               "probe": (x[:2] - s, torch.ones(2))} for s in (0, 100)]
    own = TaskData.from_blocks(blocks, subsets={"first": [torch.tensor([0]), torch.tensor([1])]})
    assert own.per_member_inputs and own.x.shape == (2, 12, 1)
    assert own.subsets["probe"].tolist() == [[10, 11], [10, 11]] and own.subsets["first"].tolist() == [[0], [1]]
    inputs, targets = own.batch(own.subsets["first"])
    assert inputs[:, 0, 0].tolist() == [0.0, 101.0], "each member reads its own rows"
    assert np.array_equal(own.inputs(own.test_idx)[1, :, 0].numpy(), np.arange(106, 110))


@dataclass(frozen=True)
class TinyGrid(TinyGrok):
    ps: tuple[int, ...] = (5, 7)


def test_sweep_over_a_grid_gives_plain_base_experiments():
    points = TinyGrid(steps=2).sweep_over(TinyGrok, "p", (5, 7))
    assert [type(p) for p in points] == [TinyGrok, TinyGrok] and [p.p for p in points] == [5, 7]
    assert points[0].steps == 2, "the grid's other fields carry over"
    with pytest.raises(ValueError, match="field must name a field of TinyGrok; got 'ps'"):
        TinyGrid().sweep_over(TinyGrok, "ps", (1,))


def test_glue_prints_the_number_and_returns_a_plain_value(capsys, monkeypatch):
    import sys

    from genlib.prose import glue

    monkeypatch.setitem(sys.modules, "myst_nb", None)  # as on Colab: no myst-nb, printing only
    value = glue("delay", np.float64(26.4), ".0f")
    assert type(value) is float and capsys.readouterr().out == "delay = 26\n"
