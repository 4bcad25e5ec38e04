from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from genlib.cache import cache_key, cache_path, cached
from genlib.history import History
from genlib.sweep import grid, sweep


def fake_history(value: float) -> History:
    return History(np.arange(3), {"test_acc": np.full((3, 2), value)}, [{"seed": 0}, {"seed": 1}], {"note": "x"})


def test_save_and_load_round_trip(tmp_path):
    h = fake_history(0.5)
    h.save(tmp_path / "h.npz")
    back = History.load(tmp_path / "h.npz")
    assert np.array_equal(back["test_acc"], h["test_acc"]) and back.members == h.members and back.meta == h.meta


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
    monkeypatch.setattr("genlib.cache.__version__", "999")
    assert cache_key("exp", {"a": 1}) != k


def run_point(config):
    if config.get("fail"):
        raise RuntimeError("interrupted")
    return fake_history(config["wd"] * 10 + config["fraction"])


def test_interrupted_sweep_resumes():
    configs = grid(wd=[0, 1], fraction=[0.3, 0.5])
    calls = []

    def flaky(config):
        calls.append(config)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return run_point(config)

    with pytest.raises(KeyboardInterrupt):
        sweep(flaky, configs, name="s")
    calls.clear()
    results = sweep(flaky, configs, name="s")
    assert len(calls) == 2, "the two finished points are read back, the other two computed"
    assert [r.final("test_acc")[0] for r in results] == [0.3, 0.5, 10.3, 10.5]


def test_sweep_with_an_executor_matches_serial():
    configs = grid(wd=[0, 1, 2], fraction=[0.5])
    with ThreadPoolExecutor(2) as pool:
        parallel = sweep(run_point, configs, name="p", executor=pool)
    serial = sweep(run_point, configs, name="q")
    assert [h.final("test_acc")[0] for h in parallel] == [h.final("test_acc")[0] for h in serial]


def test_bad_sweep_inputs():
    with pytest.raises(ValueError, match="configs"):
        sweep(run_point, [])
    with pytest.raises(ValueError, match="wd"):
        grid(wd=[])
    with pytest.raises(ValueError, match="config"):
        cache_key("x", {"f": object()})


def test_fingerprint_ignores_view_only_modules(tmp_path, monkeypatch):
    import genlib.cache as cache

    fake = tmp_path / "genlib"
    fake.mkdir()
    (fake / "train.py").write_text("a = 1")
    (fake / "plots.py").write_text("b = 1")
    monkeypatch.setattr(cache, "__file__", str(fake / "cache.py"))
    cache.source_fingerprint.cache_clear()
    before = cache.source_fingerprint()
    (fake / "plots.py").write_text("b = 2")
    cache.source_fingerprint.cache_clear()
    assert cache.source_fingerprint() == before, "a plotting change should not invalidate results"
    (fake / "train.py").write_text("a = 2")
    cache.source_fingerprint.cache_clear()
    assert cache.source_fingerprint() != before, "a training change should"
    cache.source_fingerprint.cache_clear()


def test_as_tuples_restores_nested_tuples():
    from genlib.sweep import as_tuples

    assert as_tuples({"a": [1, [2, 3]], "b": "x", "c": {"d": [4]}}) == {"a": (1, (2, 3)), "b": "x", "c": {"d": (4,)}}
