"""Milliseconds per Hessian-vector product, written out (genlib.measures.mlp_hvp) against autograd's,
and per sharpness reading, on the sharpness chapter's full-batch ensemble.

    python benchmarks/curvature_speed.py                      # the chapter's quick-scale ensemble
    python benchmarks/curvature_speed.py --n-train 100 --hidden 8 --steps 1 --repeats 2   # a tiny one

The ensemble (four step sizes x three seeds of a tanh MLP on the digits, squared error) is first
trained ``--steps`` steps by gradient descent, so that the products are those of a trained network;
both operators then run ``--repeats`` products after three to warm up, in turns, and their results
are compared.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch
from _args import count

from genlib.core.train import train
from genlib.experiments.sharpness import StabilitySetup
from genlib.measures import mlp_hvp
from genlib.measures.curvature import _autograd_hessian_operator, _random_vectors, _training_batch, top_eigenpair


def milliseconds_per_product(make_operator, vectors, repeats: int) -> tuple[float, list[torch.Tensor]]:
    operator = make_operator()
    for _ in range(3):
        products = operator(vectors)
    started = time.perf_counter()
    for _ in range(repeats):
        products = operator(vectors)
    return (time.perf_counter() - started) / repeats * 1e3, products


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=count, default=StabilitySetup.n_train)
    parser.add_argument("--hidden", type=count, nargs="+", default=list(StabilitySetup.hidden))
    parser.add_argument("--steps", type=count, default=100, help="training steps before the products")
    parser.add_argument("--repeats", type=count, default=20)
    args = parser.parse_args(argv)
    setup = StabilitySetup(n_train=args.n_train, hidden=tuple(args.hidden), steps=args.steps,
                           eval_every=args.steps, eval_log_points=0)
    data, model, config = setup.build()
    train(model, data, replace(config, progress=False))
    x, y = _training_batch(model, data, setup.LOSS, None)
    vectors = next(_random_vectors(model, "normal", 0))
    print(f"{model.members} members, MLP 64-{'-'.join(map(str, args.hidden))}-10, {args.n_train} images, "
          f"{torch.get_num_threads()} threads")
    timings = {"written out": [], "autograd": []}
    for _ in range(2):  # in turns, so that a change in the machine's speed falls on both
        ms, mine = milliseconds_per_product(lambda: mlp_hvp.hessian_operator(model, x, y, setup.LOSS), vectors,
                                            args.repeats)
        timings["written out"].append(ms)
        ms, reference = milliseconds_per_product(lambda: _autograd_hessian_operator(model, x, y, setup.LOSS), vectors,
                                                 args.repeats)
        timings["autograd"].append(ms)
    difference = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(mine, reference))
    for name, values in timings.items():
        print(f"{name:>12}: {min(values):.2f} ms per product (best of {len(values)} rounds)")
    print(f"largest difference between the two, relative to the product's largest entry: {difference:.1e}")
    started = time.perf_counter()
    pair = top_eigenpair(model, data, setup.LOSS, tolerance=setup.lanczos_tolerance,
                         max_iterations=setup.lanczos_iterations, rule="residual")
    print(f"one sharpness reading: {(time.perf_counter() - started) * 1e3:.0f} ms, "
          f"{pair.iterations.float().mean():.1f} products per member on average, {int(pair.iterations.max())} at most")
    print(f"speedup of a product: {min(timings['autograd']) / min(timings['written out']):.2f}x")


if __name__ == "__main__":
    main()
