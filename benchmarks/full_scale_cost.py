"""What each experiment costs at full scale against quick scale, in arithmetic, and an estimate of
each chapter's full-scale time on this machine.

    python benchmarks/profile_chapters.py --save profile.json    # quick seconds per experiment
    python benchmarks/full_scale_cost.py profile.json

For every declared trained experiment, its quick and full setups are built (not trained) and one
training step and one evaluation are counted (:func:`genlib.running.footprint.training_arithmetic`):
members x steps x FLOPs. A chapter's estimate scales each experiment's measured quick seconds by its
full/quick arithmetic ratio; it leaves out what the ratio cannot see (a grid with more points at full
scale, extra measurements that grow faster than training), so it is a lower estimate where those grow.
"""
import json
import os
import sys
import tempfile
from dataclasses import replace

from genlib.experiments import declared_experiments
from genlib.running.experiment import TrainedExperiment
from genlib.running.footprint import build_at_scale, training_arithmetic


def arithmetic_at(cls: type, scale: str, directory: str):
    """The arithmetic of ``cls`` at ``scale``, for its own number of steps (building it may have
    shortened the run to reach its requirements' end points cheaply)."""
    setup, data, model, config = build_at_scale(cls, scale, directory)
    steps = getattr(cls.at_scale(scale), "steps", config.steps)
    return training_arithmetic(model, data, replace(config, steps=steps))


def ratios() -> dict[str, tuple[float, float]]:
    """{experiment name: (quick GFLOP, full GFLOP)} for every declared trained experiment."""
    out = {}
    for cls in declared_experiments():
        if not issubclass(cls, TrainedExperiment):
            continue
        name = f"{cls.__module__}.{cls.__qualname__}"
        try:
            with tempfile.TemporaryDirectory() as scratch:
                quick = arithmetic_at(cls, "quick", scratch)
                full = arithmetic_at(cls, "full", scratch)
        except (OSError, RuntimeError) as e:  # e.g. CIFAR-10 not downloadable here
            print(f"{name}: not built ({e})", file=sys.stderr)
            continue
        out[name] = (quick.total / 1e9, full.total / 1e9)
        print(f"{name:60s} quick {quick.total / 1e9:10.2f} GFLOP   full {full.total / 1e9:12.1f} GFLOP   "
              f"x{full.total / max(quick.total, 1):.0f}", flush=True)
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
