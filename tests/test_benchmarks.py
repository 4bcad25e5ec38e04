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
