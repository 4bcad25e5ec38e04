"""Model-steps per second on the grokking workload: a Python loop over models vs one genlib ensemble.

Workload: a + b mod 97, 40% of the table for training, full batch, embedding 128, hidden 512,
AdamW. Variants:
  loop      one torch.nn.Module and one torch.optim.AdamW per seed, stepped in a Python loop,
            as the papers' repositories do;
  ensemble  one genlib EmbeddingMLP of S members and genlib's batched AdamW, stepped exactly as
            genlib.core.train does (on a CPU, forward/backward in cache-sized blocks of members);
  loop-S1   genlib's model with S = 1, in a loop: separates the gain of batching members from
            the gain of genlib's folded first layer.
The last line of each block is ``speedup <ensemble / loop>``. The rates are shares of this device's
float32 matmul rate: of the matrix products genlib actually does, and of the model FLOPs (the plain
network's, as the loop computes it: what a model-step stands for, the usual yardstick between two
implementations of one model). genlib's folded first layer skips most of that layer's arithmetic, so
in model FLOPs it can pass 100%.

On a GPU (the figures for the timing page):
    python benchmarks/ensemble_speed.py --device cuda --members 64 256 --precision both

``--workload mlp`` times the memorization chapter's network instead (digits, 64-256-256-10 ReLU
MLP, minibatches of 64, SGD): the loop, genlib's hand-batched MLP ensemble, and torch.func's way of
batching ordinary models (``stack_module_state`` + ``vmap`` of ``functional_call`` and of its
gradient). The embedding models stay hand-batched: ``embedding_bag`` has no vmap rule.
"""
from __future__ import annotations

import argparse
import functools
import time

import torch
from _args import count
from torch import nn

from genlib.core.data import digits, modular_arithmetic
from genlib.core.models import MLP, EmbeddingMLP
from genlib.core.optim import EnsembleOptimizer
from genlib.core.train import ensemble_backward, member_block, pick_device

P, EMBED, HIDDEN, FRACTION, LR, WD = 97, 128, 512, 0.4, 1e-3, 1.0


class PlainModel(nn.Module):
    """The usual single-seed grokking MLP."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(P, EMBED)
        self.hidden = nn.Linear(2 * EMBED, HIDDEN)
        self.out = nn.Linear(HIDDEN, P)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(self.embed(x).flatten(1))))


@functools.cache
def matmul_rate(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """This device's float32 matrix-product rate (FLOP/s) on n x n matrices, the yardstick for the rates below."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n**3 * repeats / timed(lambda: a @ b, repeats, device, warmup=2)


def flops_of(step) -> int:
    """Matrix-product FLOPs of one call of ``step`` (torch's counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def timed(step, steps: int, device: torch.device, warmup: int = 5) -> float:
    """Seconds for ``steps`` calls of ``step`` after a warm-up."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_loop(members: int, steps: int, device: torch.device) -> tuple[float, float]:
    """(model-steps/s, FLOPs per model-step) of a loop of plain PyTorch models on the grokking workload."""
    data = modular_arithmetic(P, "+", FRACTION, list(range(members))).to(device)
    models, optimizers, batches = [], [], []
    for s in range(members):
        torch.manual_seed(s)
        model = PlainModel().to(device)
        models.append(model)
        optimizers.append(torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WD, betas=(0.9, 0.98)))
        idx = data.train_idx[s]
        batches.append((data.x[idx], data.y[s, idx]))

    def step():
        for model, opt, (x, y) in zip(models, optimizers, batches):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return members * steps / timed(step, steps, device), flops_of(step) / members


def bench_ensemble(members: int, steps: int, device: torch.device,
                   block: int | None = None) -> tuple[float, int, float]:
    """(model-steps/s, members per pass, FLOPs per model-step) of genlib's ensemble on the grokking workload."""
    data = modular_arithmetic(P, "+", FRACTION, list(range(members))).to(device)
    model = EmbeddingMLP(P, list(range(members)), embed_dim=EMBED, hidden=(HIDDEN,)).to(device)
    opt = EnsembleOptimizer(list(model.parameters()), "adamw", torch.full((members,), LR, device=device),
                            torch.full((members,), WD, device=device))
    x, y = data.batch(data.train_idx)
    block = member_block(model, x.shape[1], device, block)

    def step():  # the same step as genlib.core.train.train
        opt.zero_grad()
        ensemble_backward(model, x, y, "cross_entropy", block)
        opt.step()

    work = flops_of(step) / members
    return members * steps / timed(step, steps, device), block, work


WIDTHS, BATCH, SGD_LR = (64, 256, 256, 10), 64, 0.05


def plain_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def mlp_batches(members: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One minibatch of digits per member: x (S, B, 64), y (S, B)."""
    data = digits(1000, list(range(members))).to(device)
    return data.batch(data.train_idx[:, :BATCH])


def bench_mlp_loop(members: int, steps: int, device: torch.device) -> float:
    x, y = mlp_batches(members, device)
    models = [plain_mlp().to(device) for _ in range(members)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=SGD_LR) for m in models]

    def step():
        for s, (model, opt) in enumerate(zip(models, optimizers)):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[s]), y[s]).backward()
            opt.step()

    return members * steps / timed(step, steps, device)


def bench_mlp_ensemble(members: int, steps: int, device: torch.device) -> tuple[float, float]:
    """(model-steps/s, FLOPs per model-step) of genlib's MLP ensemble on the digits workload."""
    x, y = mlp_batches(members, device)
    model = MLP(64, WIDTHS[1:-1], 10, list(range(members))).to(device)
    opt = EnsembleOptimizer(list(model.parameters()), "sgd", torch.full((members,), SGD_LR, device=device),
                            torch.zeros(members, device=device))
    block = member_block(model, BATCH, device)

    def step():  # the same step as genlib.core.train.train
        opt.zero_grad()
        ensemble_backward(model, x, y, "cross_entropy", block)
        opt.step()

    work = flops_of(step) / members
    return members * steps / timed(step, steps, device), work


def bench_mlp_vmap(members: int, steps: int, device: torch.device) -> float:
    from torch.func import functional_call, grad, stack_module_state, vmap

    x, y = mlp_batches(members, device)
    models = [plain_mlp().to(device) for _ in range(members)]
    params, buffers = stack_module_state(models)  # every tensor gains a leading member axis
    base = models[0]

    def loss(p, b, xs, ys):
        return nn.functional.cross_entropy(functional_call(base, (p, b), (xs,)), ys)

    per_member_grad = vmap(grad(loss))

    def step():
        grads = per_member_grad(params, buffers, x, y)
        with torch.no_grad():
            for name, g in grads.items():
                params[name].sub_(SGD_LR * g)

    return members * steps / timed(step, steps, device)


def print_rate(flops_per_second: float, device: torch.device, counted: str = "matrix products") -> None:
    peak = matmul_rate(device)
    share = 100 * flops_per_second / peak
    print(f"genlib ensemble: {flops_per_second / 1e9:.1f} GFLOP/s of {counted} = {share:.0f}% of this device's "
          f"float32 matmul rate ({peak / 1e9:.0f} GFLOP/s, 2048^2)")


def main_mlp(members: int, steps: int, device: torch.device) -> None:
    loop = bench_mlp_loop(members, steps, device)
    ensemble, work = bench_mlp_ensemble(members, steps, device)
    vmapped = bench_mlp_vmap(members, steps, device)
    print(f"loop of nn.Sequential   {loop:10.1f} model-steps/s")
    print(f"torch.func vmap         {vmapped:10.1f} model-steps/s")
    print(f"genlib MLP ensemble     {ensemble:10.1f} model-steps/s")
    print_rate(ensemble * work, device)
    print(f"speedup {ensemble / loop:.2f}  (vmap {vmapped / loop:.2f}; genlib / vmap {ensemble / vmapped:.2f})")


def main_grokking(members: int, steps: int, device: torch.device, block: int | None) -> None:
    loop, plain_work = bench_loop(members, steps, device)
    single = bench_ensemble(1, steps, device)[0]  # a loop of these runs at the same rate
    ensemble, block, work = bench_ensemble(members, steps, device, block)
    one_pass = bench_ensemble(members, steps, device, members)[0] if block < members else ensemble
    print(f"loop of nn.Modules      {loop:10.1f} model-steps/s")
    print(f"genlib, one member      {single:10.1f} model-steps/s  (folded first layer, no batching)")
    print(f"genlib, all S in one pass {one_pass:8.1f} model-steps/s")
    print(f"genlib ensemble (S={members}, {block} per pass) {ensemble:8.1f} model-steps/s")
    print_rate(ensemble * work, device, "matrix products done")
    # The model FLOPs (the plain network's, first layer unfolded): the arithmetic a model-step stands
    # for, the yardstick that compares implementations (and the loop) on one scale.
    print_rate(ensemble * plain_work, device, f"model FLOPs ({plain_work / 1e9:.2f} GFLOP per model-step)")
    print(f"loop of nn.Modules: {100 * loop * plain_work / matmul_rate(device):.0f}% of the matmul rate in model FLOPs")
    print(f"speedup {ensemble / loop:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--members", type=count, nargs="+", default=[8],
                        help="ensemble sizes S, each timed in turn (default 8; on a GPU: --members 64 256)")
    parser.add_argument("--steps", type=count, default=20, help="timed steps (default 20)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    parser.add_argument("--block", type=int, default=None,
                        help="members per forward/backward pass (default: genlib's choice for the device)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "both"],
                        help="float32 matrix products in full precision, in TF32 (CUDA), or each in turn")
    parser.add_argument("--workload", default="grokking", choices=["grokking", "mlp"],
                        help="grokking: embedding MLP, full batch, AdamW; mlp: digits MLP, minibatches, SGD")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    precisions = ["fp32", "tf32"] if args.precision == "both" else [args.precision]
    for precision in precisions:
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"  # TF32 exists on CUDA only
        for members in args.members:
            print(f"\ndevice {device.type}, S = {members}, {precision}, {args.steps} steps, torch {torch.__version__}, "
                  f"{torch.get_num_threads()} CPU threads, workload {args.workload}")
            if args.workload == "mlp":
                main_mlp(members, args.steps, device)
            else:
                main_grokking(members, args.steps, device, args.block)


if __name__ == "__main__":
    main()
