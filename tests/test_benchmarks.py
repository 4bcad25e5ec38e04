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


def test_curvature_speed_compares_the_two_products_on_a_tiny_ensemble(capsys):
    main_of("curvature_speed.py")(["--n-train", "60", "--hidden", "5", "--steps", "1", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "written out:" in out and "autograd:" in out and "speedup of a product" in out
    difference = float(out.split("largest entry: ")[1].split()[0])
    assert difference < 1e-4  # float32: the two ways add in different orders


def test_curvature_speed_rejects_no_repeats():
    with pytest.raises(SystemExit):
        main_of("curvature_speed.py")(["--repeats", "0"])


def test_profile_table_sums_the_chapters():
    table = runpy.run_path(str(BENCHMARKS / "profile_chapters.py"))["table"]
    kinds = ("training steps", "evaluations", "measurements", "closed form", "data and models", "cache", "notebook")
    row = dict.fromkeys(kinds, 1.0) | {"wall": 8.0}
    lines = table({"a": row, "b": row | {"wall": 9.0}}).splitlines()
    assert lines[2].startswith("| {doc}`a <a>` | 1 | 1 |") and lines[2].endswith("| 8 |")
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


def test_a_recheck_keeps_the_training_run_s_date_hardware_and_time():
    rechecked = runpy.run_path(str(BENCHMARKS.parent / "scripts" / "record_full_run.py"))["rechecked"]
    trained = {"date": "2026-12-01", "hardware": "2-core CPU", "wall_s": 2579, "claims_held": False, "claims": 53,
               "failed": ["a"], "not_claimed": []}
    again = {"date": "2026-12-07", "hardware": "other", "wall_s": 40, "claims_held": True, "claims": 50, "failed": [],
             "not_claimed": ["a"]}
    assert rechecked(trained, again) == again | {"date": "2026-12-01", "hardware": "2-core CPU", "wall_s": 2579,
                                                 "claims_rechecked": "2026-12-07"}


FAKE_PEER = """
import sys, torch, torchvision.datasets  # the stand-in module must satisfy the peer's import
assert sys.argv[sys.argv.index("--num_epochs") + 1] == "2" and "--orthogonal_gradients" in sys.argv
torch.set_num_threads(5)  # as the peer does; a no-op in the second run
print("threads", torch.get_num_threads())
"""


def test_peer_speed_times_a_peer_checkout_and_genlib(tmp_path, capsys):
    (tmp_path / "grokking_experiments.py").write_text(FAKE_PEER)
    main_of("peer_speed.py")(["--peer", str(tmp_path), "--members", "2", "--epochs", "2"])
    out = capsys.readouterr().out
    assert "genlib, 2 seeds as one ensemble" in out and "x with threads as here" in out


@pytest.mark.parametrize("args", [[], ["--members", "0"], ["--epochs", "0"]])
def test_peer_speed_rejects_a_bad_checkout_or_size(args, tmp_path, capsys):
    if args:  # a checkout that would do: the size is what is wrong
        (tmp_path / "grokking_experiments.py").write_text(FAKE_PEER)
    with pytest.raises(SystemExit):
        main_of("peer_speed.py")(["--peer", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert (f"argument {args[0]}: must be at least 1; got 0" if args else "--peer must be") in err


@pytest.mark.parametrize("text, message", [("0", "at least 1; got 0"), ("-3", "at least 1; got -3"),
                                           ("2.5", "whole number; got '2.5'")])
def test_a_count_argument_refuses_what_is_not_a_whole_number_from_1(text, message):
    import argparse

    sys.path.insert(0, str(BENCHMARKS))
    try:
        from _args import count
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert count("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        count(text)


def test_full_scale_cost_counts_every_point_of_a_grid():
    cost = runpy.run_path(str(BENCHMARKS / "full_scale_cost.py"))
    from genlib.experiments.scale_transfer import InstabilityGrid, InstabilitySetup

    assert cost["grids_of_points"]()[InstabilitySetup] == [InstabilityGrid]
    points = len(InstabilityGrid.at_scale("quick").setups())
    one = cost["scale_arithmetic"](InstabilitySetup, [], "quick", None)
    over_grid = cost["scale_arithmetic"](InstabilitySetup, [InstabilityGrid], "quick", None)
    assert points == 6 and one < over_grid < points * one  # widths 16 and 32: the 16-wide points cost less


def test_page_faults_runs_both_kinds_of_process_on_a_tiny_ensemble(capsys):
    main_of("page_faults.py")(["--steps", "2", "--runs", "1", "--n-train", "60", "--hidden", "5"])
    out = capsys.readouterr().out
    assert "default:" in out and "kept:" in out and out.count("page faults per step") == 2


def test_page_faults_rejects_no_runs():
    with pytest.raises(SystemExit):
        main_of("page_faults.py")(["--runs", "0"])
