"""The experiment shape every chapter uses: declared sizes, labelled members, one build, one run."""
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from genlib.core.data import TaskData, modular_arithmetic
from genlib.core.history import History
from genlib.core.models import EmbeddingMLP
from genlib.core.train import TrainConfig
from genlib.running.experiment import Bounds, ComputedExperiment, TrainedExperiment
from genlib.running.grid import Grid
from genlib.running.sweep import run_experiment, sweep


@dataclass(frozen=True)
class TinyGrok(TrainedExperiment):
    FULL = dict(p=13, seeds=(0, 1, 2))
    AXES = {"weight_decay": "weight_decays", "lr": "lrs"}
    CHOICES = {"op": ("+", "-")}
    BOUNDS = {"lrs": Bounds(0.0, low_open=True)}

    p: int = 7
    weight_decays: tuple[float, ...] = (0.0, 1.0)
    lrs: tuple[float, ...] = (0.01,)
    seeds: tuple[int, ...] = (0, 1)
    steps: int = 3
    op: str = "+"

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
    history = run_experiment(experiment)
    assert history.select(weight_decay=1.0, seed=1).members[0]["lr"] == 0.01
    assert history.meta["experiment"]["name"].endswith("TinyGrok")
    again = run_experiment(experiment)
    assert again.meta["seconds"] == history.meta["seconds"], "the second run is read from the cache"


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
class TinyGrid(Grid):
    POINT = TinyGrok
    POINT_QUICK = dict(steps=2)
    FULL = dict(ps=(5, 7, 11))

    ps: tuple[int, ...] = (5, 7)

    def setups(self):
        return self.vary("p", self.ps)


def test_a_grid_holds_plain_base_experiments():
    grid = TinyGrid.at_scale(lrs=(0.02,))
    points = grid.setups()
    assert [type(p) for p in points.values()] == [TinyGrok, TinyGrok] and list(points) == [5, 7]
    assert points[5].steps == 2 and points[5].lrs == (0.02,), "the grid's base settings and overrides carry over"
    full = TinyGrid.at_scale(scale="full")
    assert full.ps == (5, 7, 11) and full.base.seeds == (0, 1, 2), "each at its full size"
    with pytest.raises(ValueError, match="overrides must name fields of TinyGrid.*or of TinyGrok.*'depth'"):
        TinyGrid.at_scale(depth=3)
    with pytest.raises(ValueError, match="base must be a TinyGrok"):
        TinyGrid(base=Square())


def test_settings_are_checked_when_made():
    with pytest.raises(ValueError, match=r"op must be one of '\+', '-'; got '\*'"):
        TinyGrok(op="*")
    with pytest.raises(ValueError, match=r"lrs must be > 0.0; got -1.0"):
        TinyGrok(lrs=(0.1, -1.0))
    with pytest.raises(ValueError, match=r"lrs must be a non-empty tuple \(the values of the 'lr' axis\)"):
        TinyGrok(lrs=())
    with pytest.raises(ValueError, match="seeds"):
        TinyGrok(seeds=(-1,))


def test_a_trained_experiment_cannot_override_the_pipeline():
    with pytest.raises(TypeError, match="must not override compute"):
        @dataclass(frozen=True)
        class Sneaky(TinyGrok):
            def compute(self, **inputs):
                return None


@dataclass(frozen=True)
class Square(ComputedExperiment):
    x: float = 2.0

    def compute(self) -> History:
        return History(np.array([0]), {"value": np.array([[self.x**2]])}, [{"seed": 0}])


@dataclass(frozen=True)
class PlusOne(ComputedExperiment):
    """Reads the History of the Square it requires."""

    x: float = 2.0

    def requires(self):
        return {"square": Square(self.x)}

    def compute(self, square: History) -> History:
        return History(np.array([0]), {"value": square["value"] + 1}, [{"seed": 0}])


def test_requirements_run_first_once_each_and_are_handed_over(tmp_path):
    one, two = sweep([PlusOne(2.0), PlusOne(3.0), PlusOne(2.0)], directory=tmp_path)[:2]
    assert one["value"][0, 0] == 5.0 and two["value"][0, 0] == 10.0
    names = sorted(p.parent.name.rsplit("_", 1)[-1] for p in tmp_path.rglob("*.npz"))
    assert names == ["PlusOne", "PlusOne", "Square", "Square"], "each experiment, requirement or not, cached once"


@dataclass(frozen=True)
class KeptGrok(TinyGrok):
    """Uses every hook of the pipeline: before_training, kept arrays and after_training."""

    def before_training(self, data, model):
        return sum(float(p.detach().abs().sum()) for p in model.parameters())

    def kept(self, data, model):
        return {"first": lambda m: next(m.parameters()).detach().clone()}

    def after_training(self, history, run):
        history.meta["before"] = run.before
        history.arrays["moved"] = np.array([float((run.kept["first"][-1] - run.kept["first"][0]).abs().sum())])
        history.arrays["readings"] = np.array([len(run.kept["first"])])
        return history


def test_the_hooks_see_the_network_before_and_while_training():
    history = run_experiment(KeptGrok(steps=3))
    assert history.meta["before"] > 0
    assert history.arrays["readings"][0] == len(history.steps), "one kept array per evaluation"
    assert history.arrays["moved"][0] > 0, "the kept arrays follow the training"


@dataclass(frozen=True)
class Clashing(TinyGrok):
    def extra_metrics(self, data, model):
        return {"test_acc": lambda m: torch.zeros(m.members)}


def test_an_extra_metric_cannot_replace_a_built_in_one():
    with pytest.raises(ValueError, match=r"must not replace a measure recorded already; got \['test_acc'\]"):
        run_experiment(Clashing())


def test_glue_keeps_the_number_for_the_claims_list_and_returns_a_plain_value(capsys, monkeypatch):
    import sys

    from genlib.pages.prose import glue, glued_since_last_taken

    monkeypatch.setitem(sys.modules, "myst_nb", None)  # as on Colab: no myst-nb
    glued_since_last_taken()
    value = glue("delay", np.float64(26.4), ".0f")
    assert type(value) is float and capsys.readouterr().out == "", "nothing printed: the HTML shows it once"
    assert glued_since_last_taken() == [("delay", "26")] and glued_since_last_taken() == []


def _string_fields(cls) -> list[str]:
    """Fields whose annotation is a string or a tuple of strings."""
    from dataclasses import fields

    return [f.name for f in fields(cls) if str(f.type).replace(" ", "") in ("str", "tuple[str,...]")]


def test_every_string_setting_of_every_chapter_is_a_declared_choice():
    from genlib.experiments import declared_experiments
    from genlib.running.experiment import _declared

    undeclared = {cls.__name__: missing for cls in declared_experiments()
                  if (missing := sorted(set(_string_fields(cls)) - set(_declared(cls, "CHOICES"))))}
    assert not undeclared, f"string settings without CHOICES: {undeclared}"


def test_no_chapter_file_trains_or_runs_experiments_itself_or_imports_another_chapter():
    """The pipeline owns every run: a chapter's file declares experiments (build, hooks, requires)."""
    import ast
    from pathlib import Path

    import genlib.experiments

    functions, methods = {"train", "sweep", "run_experiment"}, {"run", "compute"}  # model.train(mode) is allowed
    found = []
    for path in sorted(Path(genlib.experiments.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id in functions:
                    found.append(f"{path.name}:{node.lineno} calls {func.id}()")
                if isinstance(func, ast.Attribute) and func.attr in methods:
                    found.append(f"{path.name}:{node.lineno} calls .{func.attr}()")
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module not in (None, "recipes"):
                found.append(f"{path.name}:{node.lineno} imports the chapter file {node.module}")
    assert not found, found
