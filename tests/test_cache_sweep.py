from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import pytest

from genlib.core.history import History
from genlib.running.cache import cache_key, cache_path, cached
from genlib.running.experiment import ComputedExperiment
from genlib.running.sweep import is_cached, sweep


def fake_history(value: float) -> History:
    return History(np.arange(3), {"test_acc": np.full((3, 2), value)}, [{"seed": 0}, {"seed": 1}], {"note": "x"})


def test_save_and_load_round_trip(tmp_path):
    h = fake_history(0.5)
    h.save(tmp_path / "h.npz")
    back = History.load(tmp_path / "h.npz")
    assert np.array_equal(back["test_acc"], h["test_acc"]) and back.members == h.members and back.meta == h.meta
    assert back.axis_name == "step" and np.array_equal(back.steps, h.steps)


def test_named_axis_and_member_arrays_survive_storage_and_selection(tmp_path):
    h = History(np.array([10, 20]), {"mse": np.ones((2, 2))}, [{"seed": 0}, {"seed": 1}], axis_name="features",
                arrays={"fit": np.array([[1.0, 2.0], [3.0, 4.0]])})
    h.save(tmp_path / "h.npz")
    back = History.load(tmp_path / "h.npz")
    assert back.axis_name == "features" and back.axis.tolist() == [10, 20]
    assert back.select(seed=1).arrays["fit"].tolist() == [[3.0, 4.0]]
    with pytest.raises(AttributeError, match="features"):
        back.steps  # noqa: B018 - a feature axis is not a step axis


def test_median_and_band_summarize_over_members():
    h = History(np.arange(2), {"acc": np.array([[0.1, 0.5, 0.9], [0.2, np.nan, 0.4]])}, [{"seed": s} for s in range(3)])
    median, low, high = h.band("acc")
    assert median.tolist() == [0.5, pytest.approx(0.3)] and low.tolist() == [0.1, 0.2] and high.tolist() == [0.9, 0.4]
    assert np.array_equal(h.median("acc"), median)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_damaged_file_is_a_value_error(tmp_path, damage):
    path = tmp_path / "h.npz"
    fake_history(0.5).save(path)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "garbage":
        raw = bytearray(b"not a history")
    else:  # one byte inside the stored arrays
        raw[len(raw) // 3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="path"):
        History.load(path)


def test_cached_reuses_finished_runs():
    calls = []
    compute = lambda: calls.append(1) or fake_history(1.0)  # noqa: E731
    first = cached("exp", {"a": 1}, compute)
    second = cached("exp", {"a": 1}, compute)
    assert len(calls) == 1 and np.array_equal(first["test_acc"], second["test_acc"])
    cached("exp", {"a": 2}, compute)
    assert len(calls) == 2, "another config is another run"


def test_half_written_entry_is_detected_and_recomputed():
    config = {"a": 1}
    cached("exp", config, lambda: fake_history(1.0))
    path = cache_path("exp", config)
    path.write_bytes(path.read_bytes()[:100])  # as if the writer had been killed mid-write
    with pytest.warns(UserWarning, match="damaged"):
        h = cached("exp", config, lambda: fake_history(2.0))
    assert h.final("test_acc")[0] == 2.0
    assert History.load(path).final("test_acc")[0] == 2.0, "the repaired entry is stored"


def test_key_depends_on_name_config_and_version(monkeypatch):
    k = cache_key("exp", {"a": 1})
    assert k == cache_key("exp", {"a": 1}) and k != cache_key("exp", {"a": 2}) and k != cache_key("other", {"a": 1})
    monkeypatch.setattr("genlib.running.cache.__version__", "999")
    assert cache_key("exp", {"a": 1}) != k


@dataclass(frozen=True)
class Point(ComputedExperiment):
    """A stand-in experiment: its result encodes its fields; ``fail`` raises like an interruption."""

    wd: float = 0.0
    fraction: float = 0.5
    fail: bool = False

    def compute(self, **inputs) -> History:
        if self.fail:
            raise KeyboardInterrupt
        return fake_history(self.wd * 10 + self.fraction)


def test_interrupted_sweep_resumes():
    points = [Point(wd, fraction) for wd in (0, 1) for fraction in (0.3, 0.5)]
    interrupted = points[:2] + [replace(points[2], fail=True)] + points[3:]
    with pytest.raises(KeyboardInterrupt):
        sweep(interrupted)
    assert [is_cached(p) for p in points] == [True, True, False, False], "finished points are kept"
    results = sweep(points)
    assert [r.final("test_acc")[0] for r in results] == [0.3, 0.5, 10.3, 10.5]


def test_sweep_in_worker_processes_matches_serial(tmp_path):
    points = [Point(wd) for wd in (0, 1, 2)]
    with ProcessPoolExecutor(2) as pool:  # experiments and Histories cross process boundaries by pickling
        parallel = sweep(points, executor=pool, directory=tmp_path / "parallel")
    serial = sweep(points, directory=tmp_path / "serial")
    assert [h.final("test_acc")[0] for h in parallel] == [h.final("test_acc")[0] for h in serial] == [0.5, 10.5, 20.5]
    assert len(list((tmp_path / "parallel").rglob("*.npz"))) == 3, "each point cached once"


def test_bad_sweep_inputs():
    with pytest.raises(ValueError, match="experiments"):
        sweep([])
    with pytest.raises(ValueError, match="config"):
        cache_key("x", {"f": object()})


def test_fingerprint_follows_the_imports_of_the_chapter(tmp_path, monkeypatch):
    import genlib.running.cache as cache
    import genlib.running.sources as sources

    fake = tmp_path / "genlib"
    for folder in ("core", "pages", "running", "experiments"):
        (fake / folder).mkdir(parents=True)
        (fake / folder / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "core" / "train.py").write_text("a = 1")
    (fake / "core" / "data.py").write_text("d = 1")
    (fake / "pages" / "plots.py").write_text("from ..core.train import a")
    (fake / "running" / "sweep.py").write_text("from ..core import data")
    chapter, other = fake / "experiments" / "one.py", fake / "experiments" / "two.py"
    chapter.write_text("def f():\n    from ..core.train import a  # an import inside a function counts too")
    other.write_text("import genlib.core.train")
    monkeypatch.setattr(sources, "PACKAGE_ROOT", fake)
    monkeypatch.setattr(cache, "PACKAGE_ROOT", fake)
    monkeypatch.setattr(cache, "PIPELINE", fake / "running" / "sweep.py")

    def fingerprint(path):
        cache.source_fingerprint.cache_clear()
        sources.dependencies.cache_clear()
        return cache.source_fingerprint(str(path))

    assert {p.name for p in sources.dependencies(str(chapter))} == {"one.py", "train.py"}
    before = fingerprint(chapter)
    (fake / "pages" / "plots.py").write_text("from ..core.train import a  # restyled")
    assert fingerprint(chapter) == before, "a plotting change should not invalidate results"
    other.write_text("import genlib.core.train  # changed")
    assert fingerprint(chapter) == before, "another chapter's change should not invalidate this chapter's results"
    chapter.write_text("from ..core.train import a")
    assert fingerprint(chapter) != before, "a change of this chapter's file should"
    changed = fingerprint(chapter)
    (fake / "core" / "train.py").write_text("a = 2")
    assert fingerprint(chapter) != changed, "a change of a module it imports should"
    changed = fingerprint(chapter)
    (fake / "core" / "data.py").write_text("d = 2")
    assert fingerprint(chapter) != changed, "so should a change of the pipeline that runs every experiment"
    cache.source_fingerprint.cache_clear()
    sources.dependencies.cache_clear()
