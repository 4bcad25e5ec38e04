"""What each experiment costs at full scale against quick scale, in arithmetic, and an estimate of
each chapter's full-scale time on this machine.

    python benchmarks/profile_chapters.py --save profile.json    # quick seconds per experiment
    python benchmarks/full_scale_cost.py profile.json

For every declared trained experiment, its quick and full setups are built (not trained) and one
training step and one evaluation are counted (:func:`genlib.running.footprint.training_arithmetic`):
members x steps x FLOPs. An experiment that is the point of a grid is counted over all the grid's
points at each scale (a grid may add points at full scale, or grow a size along its axis). A chapter's
estimate scales each experiment's measured quick seconds by its full/quick arithmetic ratio; it leaves
out measurements that grow faster than training, so it is a lower estimate where those grow.
"""
import json
import os
import sys
import tempfile
from dataclasses import replace

from genlib.experiments import declared_experiments, declared_grids
from genlib.running.experiment import TrainedExperiment
from genlib.running.footprint import build_setup, training_arithmetic


def arithmetic_of(setup, directory: str) -> float:
    """FLOPs of one declared setup's run, for its own number of steps (building it may have
    shortened the run to reach its requirements' end points cheaply)."""
    _, data, model, config = build_setup(setup, directory)
    steps = getattr(setup, "steps", config.steps)
    return training_arithmetic(model, data, replace(config, steps=steps)).total


def grids_of_points() -> dict[type, list[type]]:
    """{experiment class: the declared grid classes whose points it is}."""
    grids: dict[type, list[type]] = {}
    for grid in declared_grids():
        grids.setdefault(grid.POINT, []).append(grid)
    return grids


def scale_arithmetic(cls: type, grids: list[type], scale: str, directory: str) -> float:
    """FLOPs of ``cls`` at ``scale``: over every point of its grids (the largest grid, if it is
    the point of several), or of the setup alone."""
    if not grids:
        return arithmetic_of(cls.at_scale(scale), directory)
    return max(sum(arithmetic_of(point, directory) for point in grid.at_scale(scale).setups().values())
               for grid in grids)


def ratios() -> dict[str, tuple[float, float]]:
    """{experiment name: (quick GFLOP, full GFLOP)} for every declared trained experiment."""
    out, grids = {}, grids_of_points()
    for cls in declared_experiments():
        if not issubclass(cls, TrainedExperiment):
            continue
        name = f"{cls.__module__}.{cls.__qualname__}"
        try:
            with tempfile.TemporaryDirectory() as scratch:
                quick = scale_arithmetic(cls, grids.get(cls, []), "quick", scratch)
                full = scale_arithmetic(cls, grids.get(cls, []), "full", scratch)
        except (OSError, RuntimeError) as e:  # e.g. CIFAR-10 not downloadable here
            print(f"{name}: not built ({e})", file=sys.stderr)
            continue
        out[name] = (quick / 1e9, full / 1e9)
        over = f" (over {', '.join(g.__name__ for g in grids[cls])})" if cls in grids else ""
        print(f"{name:60s} quick {quick / 1e9:10.2f} GFLOP   full {full / 1e9:12.1f} GFLOP   "
              f"x{full / max(quick, 1):.0f}{over}", flush=True)
    return out


def main() -> None:
    os.environ.setdefault("GENLIB_PROGRESS", "0")
    arithmetic = ratios()
    if len(sys.argv) < 2:
        return
    profile = json.loads(open(sys.argv[1]).read())
    print("\n| chapter | quick (s, measured) | full (min, estimated) |\n|---|---|---|")
    for chapter, row in profile.items():
        estimate = 0.0
        for name, seconds in row.get("experiments", {}).items():
            quick, full = arithmetic.get(name, (1.0, 1.0))  # closed forms: counted as they are
            estimate += seconds * full / max(quick, 1e-12)
        print(f"| {{doc}}`{chapter}` | {row['wall']:.0f} | {estimate / 60:.0f} |")


if __name__ == "__main__":
    main()
