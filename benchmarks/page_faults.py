"""Page faults and seconds per training step with malloc's defaults and with freed memory kept
(genlib.core.memory), on the sharpness chapter's full-batch ensemble.

    python benchmarks/page_faults.py                  # 300 steps, three fresh processes of each
    python benchmarks/page_faults.py --steps 5 --runs 1 --n-train 100 --hidden 8   # a tiny one

malloc's settings hold for a whole process, so every run is a fresh Python process; the two kinds
take turns, so that a change in the machine's speed falls on both. ``train`` keeps freed memory on
its first call; the default runs switch that off.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

from _args import count

ONE_RUN = textwrap.dedent("""
    import json, resource, sys, time
    from dataclasses import replace
    from genlib.core import train as training
    from genlib.experiments.sharpness import StabilitySetup
    keep, steps, n_train, hidden = sys.argv[1] == "kept", int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    if not keep:
        training.keep_freed_memory = lambda: False
    setup = StabilitySetup(n_train=n_train, hidden=tuple(map(int, hidden)), steps=steps, eval_every=steps,
                           eval_log_points=0)
    data, model, config = setup.build()
    faults, started = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    training.train(model, data, replace(config, progress=False))
    print(json.dumps({"faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults,
                      "seconds": time.perf_counter() - started}))
""")


def one_run(kind: str, steps: int, n_train: int, hidden: list[int]) -> dict:
    done = subprocess.run([sys.executable, "-c", ONE_RUN, kind, str(steps), str(n_train), *map(str, hidden)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    from genlib.experiments.sharpness import StabilitySetup

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=count, default=300)
    parser.add_argument("--runs", type=count, default=3, help="fresh processes of each kind")
    parser.add_argument("--n-train", type=count, default=StabilitySetup.n_train)
    parser.add_argument("--hidden", type=count, nargs="+", default=list(StabilitySetup.hidden))
    args = parser.parse_args(argv)
    runs = {"default": [], "kept": []}
    for _ in range(args.runs):
        for kind, results in runs.items():
            results.append(one_run(kind, args.steps, args.n_train, args.hidden))
    print(f"{args.steps} steps of the sharpness chapter's full-batch ensemble (MLP 64-"
          f"{'-'.join(map(str, args.hidden))}-10, {args.n_train} images), {args.runs} fresh processes each:")
    for kind, results in runs.items():
        faults = sorted(result["faults"] / args.steps for result in results)
        seconds = sorted(result["seconds"] for result in results)
        print(f"{kind:>8}: {faults[0]:,.0f} to {faults[-1]:,.0f} page faults per step, "
              f"{seconds[0]:.2f} to {seconds[-1]:.2f} s")


if __name__ == "__main__":
    main()
