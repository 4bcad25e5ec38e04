"""Seconds per model against Prieto et al.'s own code, on the ⊥Grad run of their Figure 1.

    python benchmarks/peer_speed.py --peer PATH/TO/grokking-at-the-edge-of-numerical-stability

The peer is github.com/LucasPrietoAl/grokking-at-the-edge-of-numerical-stability, a checkout you
name with ``--peer`` (nothing of it is copied into this project). Its command for that panel is

    python grokking_experiments.py --lr 0.01 --num_epochs 300 --log_frequency 10 --train_fraction 0.4
        --beta2 0.99 --orthogonal_gradients

a + b mod 113, one-hot(a) || one-hot(b) -> 200 -> 200 -> 113 ReLU MLP without biases, AdamW (lr 0.01,
betas 0.9/0.99, eps 1e-25, no weight decay) with ⊥Grad, full batch, float32 softmax cross-entropy, train
and test evaluated every 10 epochs. It runs here in a scratch copy of the checkout (it writes its
logs and checkpoints into its working directory), on the CPU, twice: as published (the script sets
torch to 5 threads, more than a small CPU has) and with torch's thread count left as it is here, as
genlib's is (torchvision, which the peer imports for an MNIST variant, is replaced by an empty
stand-in module; pandas must be installed). genlib runs the same network (``prieto_mlp``: a
bias-free linear layer on the one-hot pair is a sum of two embedding rows), optimizer, ⊥Grad and
evaluations, for ``--members`` seeds as one ensemble. Each side is timed as a whole process, Python's start and the
imports included, and the last line prints the ratio of seconds per model.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _args import count

ROOT = Path(__file__).resolve().parents[1]
PEER_ARGS = ["--lr", "0.01", "--log_frequency", "10", "--device", "cpu", "--train_fraction", "0.4", "--beta2", "0.99",
             "--orthogonal_gradients"]  # and --num_epochs

# The peer's script, run as its own __main__. Its datasets module imports torchvision for an MNIST
# variant this run does not use; a stand-in module spares installing torchvision (whose wheels are
# built against one torch release). The second run also makes torch.set_num_threads a no-op.
PEER_RUN = (
    "import runpy, sys, types, torch; "
    "vision = types.ModuleType('torchvision'); vision.datasets = types.ModuleType('torchvision.datasets'); "
    "sys.modules.update({'torchvision': vision, 'torchvision.datasets': vision.datasets}); "
    "sys.path.insert(0, '.'); sys.argv = ['grokking_experiments.py'] + sys.argv[1:]; "
    "runpy.run_path('grokking_experiments.py', run_name='__main__')"
)
PEER_KEEP_THREADS = "import torch; torch.set_num_threads = lambda n: None; " + PEER_RUN

GENLIB_RUN = """
import sys, torch
from genlib.core.data import modular_arithmetic
from genlib.core.models import prieto_mlp
from genlib.core.train import TrainConfig, train
seeds, epochs = list(range(int(sys.argv[1]))), int(sys.argv[2])
data = modular_arithmetic(113, "+", 0.4, seeds)
model = prieto_mlp(113, seeds)
config = TrainConfig(steps=epochs, lr=0.01, betas=(0.9, 0.99), eps=1e-25, perpendicular_grad=True,
                     eval_every=10, eval_log_points=0, device="cpu", progress=False)
history = train(model, data, config)
print("final test accuracy per member:", [round(float(a), 3) for a in history.final("test_acc")])
"""


def timed_process(command: list[str], cwd: Path) -> float:
    """Wall seconds of one process; its output is shown only if it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:3])}... failed (exit {done.returncode}):\n{done.stdout[-2000:]}"
                         f"\n{done.stderr[-2000:]}")
    return wall


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", type=Path, required=True,
                        help="a checkout of LucasPrietoAl/grokking-at-the-edge-of-numerical-stability")
    parser.add_argument("--members", type=count, default=8, help="seeds in genlib's ensemble (default 8)")
    parser.add_argument("--epochs", type=count, default=300,
                        help="full-batch steps of each run (default 300, the paper's)")
    args = parser.parse_args(argv)
    if not (args.peer / "grokking_experiments.py").is_file():
        parser.error(f"--peer must be a checkout holding grokking_experiments.py; got {args.peer}")
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads here; Figure 1's ⊥Grad run, "
          f"{args.epochs} epochs")
    peer_args = [*PEER_ARGS, "--num_epochs", str(args.epochs)]
    with tempfile.TemporaryDirectory() as scratch:
        peer = Path(scratch) / "peer"
        shutil.copytree(args.peer, peer, ignore=shutil.ignore_patterns(".git"))
        as_published = timed_process([sys.executable, "-c", PEER_RUN, *peer_args], peer)
        keep_threads = timed_process([sys.executable, "-c", PEER_KEEP_THREADS, *peer_args], peer)
    ours = timed_process([sys.executable, "-c", GENLIB_RUN, str(args.members), str(args.epochs)], ROOT)
    per_model = ours / args.members
    print(f"peer, as published (5 threads)   {as_published:7.1f} s for 1 model")
    print(f"peer, threads as here            {keep_threads:7.1f} s for 1 model")
    print(f"genlib, {args.members} seeds as one ensemble  {ours:7.1f} s = {per_model:.1f} s per model")
    print(f"per model, genlib is {as_published / per_model:.2f}x the peer as published, "
          f"{keep_threads / per_model:.2f}x with threads as here")


if __name__ == "__main__":
    main()
