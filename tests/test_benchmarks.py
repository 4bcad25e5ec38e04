"""The benchmark scripts run (tiny sizes, on the CPU; the figures they print are not checked here)."""
import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def main_of(script: str):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return runpy.run_path(str(BENCHMARKS / script))["main"]
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.mark.parametrize("workload", ["grokking", "mlp"])
def test_ensemble_speed_runs_on_the_cpu_for_several_sizes_and_precisions(workload, capsys):
    main_of("ensemble_speed.py")(["--device", "cpu", "--members", "1", "2", "--steps", "1", "--precision", "both",
                                  "--workload", workload])
    out = capsys.readouterr().out
    assert out.count("speedup") == 4 and "S = 2, tf32" in out


def test_ensemble_speed_rejects_a_bad_size():
    with pytest.raises(SystemExit):
        main_of("ensemble_speed.py")(["--members", "0"])


def test_profile_table_sums_the_chapters():
    table = runpy.run_path(str(BENCHMARKS / "profile_chapters.py"))["table"]
    kinds = ("training steps", "evaluations", "measurements", "closed form", "data and models", "cache", "notebook")
    row = dict.fromkeys(kinds, 1.0) | {"wall": 8.0}
    lines = table({"a": row, "b": row | {"wall": 9.0}}).splitlines()
    assert lines[2].startswith("| {doc}`a` | 1 | 1 |") and lines[2].endswith("| 8 |")
    assert lines[-1] == "| **all** | " + " | ".join(["**2**"] * 7) + " | **17** |"


def test_recording_a_full_run_changes_only_the_recorded_runs_table(tmp_path):
    script = runpy.run_path(str(BENCHMARKS.parent / "scripts" / "record_full_run.py"))
    (tmp_path / "book").mkdir()
    page = tmp_path / "book" / "timing.md"
    profile_row = "| {doc}`spectral_bias` | 3 | 4 |"
    page.write_text(f"## Where the time goes\n\n{profile_row}\n\n{script['RECORDED_RUNS']}\n\n"
                    "| {doc}`spectral_bias` | not yet run | | | |\n")
    script["update_timing_page"].__globals__["ROOT"] = tmp_path
    record = {"date": "2026-12-06", "hardware": "2-core CPU", "wall_s": 600, "claims_held": True, "claims": 3,
              "failed": []}
    script["update_timing_page"]("spectral_bias", record)
    lines = page.read_text().splitlines()
    assert profile_row in lines
    assert "| {doc}`spectral_bias` | 2026-12-06 | 2-core CPU | 10 min | yes |" in lines
