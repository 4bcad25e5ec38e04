"""Data sets as ensemble-ready tensors.

A :class:`TaskData` holds inputs shared by all S members of an ensemble and, per member, its own
labels and its own train/test split (members differ by seed). Everything is on one device and is
used for full-batch or minibatch training by :func:`genlib.train.train`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from ._validate import check_choice, check_float, check_int

OPERATIONS = ("+", "-", "*", "/")


@dataclass
class TaskData:
    """Inputs shared across members; labels and splits per member.

    x: (N, ...) inputs (token ids or features); y: (S, N) class labels or (S, N, k) targets;
    train_idx: (S, n_train) and test_idx: (S, n_test) indices into N; subsets: extra named index
    sets (S, n_subset) that training also evaluates (e.g. the corrupted training examples).
    """

    x: torch.Tensor
    y: torch.Tensor
    train_idx: torch.Tensor
    test_idx: torch.Tensor
    num_classes: int | None = None
    subsets: dict[str, torch.Tensor] = field(default_factory=dict)
    description: str = ""

    @property
    def members(self) -> int:
        return self.y.shape[0]

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (S, B, ...) and targets (S, B[, k]) for per-member indices idx (S, B)."""
        return self.x[idx], self.y[torch.arange(len(idx), device=idx.device)[:, None], idx]

    def eval_sets(self) -> dict[str, torch.Tensor]:
        """Named index sets to evaluate: train, test and any extra subsets."""
        return {"train": self.train_idx, "test": self.test_idx, **self.subsets}

    def to(self, device: torch.device | str, float_dtype: torch.dtype | None = None) -> TaskData:
        """A copy on ``device``; floating-point tensors cast to ``float_dtype`` when given."""

        def move(t: torch.Tensor) -> torch.Tensor:
            t = t.to(device)
            return t.to(float_dtype) if float_dtype is not None and t.is_floating_point() else t

        return replace(
            self,
            x=move(self.x),
            y=move(self.y),
            train_idx=self.train_idx.to(device),
            test_idx=self.test_idx.to(device),
            subsets={k: v.to(device) for k, v in self.subsets.items()},
        )


def _modular_table(p: int, op: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs (a, b) for which ``a op b mod p`` is defined, and their results."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    if op == "/":  # a / b = a * b^(p-2) mod p (Fermat), defined for b != 0 with p prime
        keep = b != 0
        a, b = a[keep], b[keep]
        inverse = torch.tensor([pow(int(v), p - 2, p) for v in range(p)])
        c = (a * inverse[b]) % p
    else:
        c = {"+": a + b, "-": a - b, "*": a * b}[op] % p
    return torch.stack([a, b], dim=1), c


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % k for k in range(2, int(n**0.5) + 1))


def modular_arithmetic(
    p: int = 59,
    op: str = "+",
    train_fraction: float = 0.4,
    seeds: list[int] | tuple[int, ...] = (0,),
    corrupt_fraction: float = 0.0,
) -> TaskData:
    """Equations ``a op b = c (mod p)``, one random train/test split per seed (grokking chapter).

    With ``corrupt_fraction > 0`` that share of each member's training labels is replaced by a
    different random class; ``subsets['corrupted']`` and ``subsets['clean_train']`` index them.
    """
    check_int("p", p, low=2)
    check_choice("op", op, OPERATIONS)
    if op == "/" and not _is_prime(p):
        raise ValueError(f"p must be prime for op='/'; got {p!r}")
    check_float("train_fraction", train_fraction, 0.0, 1.0, low_open=True, high_open=True)
    check_float("corrupt_fraction", corrupt_fraction, 0.0, 1.0, high_open=True)
    seeds = _check_seeds(seeds)

    x, c = _modular_table(p, op)
    n = len(c)
    n_train = round(train_fraction * n)
    if not 0 < n_train < n:
        raise ValueError(
            f"train_fraction must leave at least one train and one test example for p={p}; "
            f"got {train_fraction!r}"
        )
    n_corrupt = round(corrupt_fraction * n_train)
    ys, trains, tests, corrupted = [], [], [], []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(n, generator=g)
        train, test = perm[:n_train], perm[n_train:]
        y = c.clone()
        bad = train[:n_corrupt]  # train is already a random order
        shift = torch.randint(1, p, (n_corrupt,), generator=g)  # never the true class
        y[bad] = (y[bad] + shift) % p
        ys.append(y)
        trains.append(train)
        tests.append(test)
        corrupted.append(bad)
    data = TaskData(
        x=x,
        y=torch.stack(ys),
        train_idx=torch.stack(trains),
        test_idx=torch.stack(tests),
        num_classes=p,
        description=f"a {op} b mod {p}, train fraction {train_fraction}",
    )
    if n_corrupt:
        data.subsets["corrupted"] = torch.stack(corrupted)
        data.subsets["clean_train"] = torch.stack([t[n_corrupt:] for t in trains])
    return data


def quadratic_teacher(
    dim: int = 100,
    n_train: int = 550,
    n_test: int = 1000,
    seeds: list[int] | tuple[int, ...] = (0,),
) -> TaskData:
    """Regression on y = (beta . x)^2 / 2 with x ~ N(0, I/dim) (Kumar et al. 2024, lazy vs rich)."""
    check_int("dim", dim, low=1)
    check_int("n_train", n_train, low=1)
    check_int("n_test", n_test, low=1)
    seeds = _check_seeds(seeds)
    # One shared input pool (so x stays shared); each member draws its own teacher direction.
    g = torch.Generator().manual_seed(12345)
    n = n_train + n_test
    x = torch.randn(n, dim, generator=g) / dim**0.5
    ys = []
    for seed in seeds:
        beta = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
        beta = beta / beta.norm() * dim**0.5
        ys.append((x @ beta) ** 2 / 2)
    idx = torch.arange(n)
    return TaskData(
        x=x,
        y=torch.stack(ys),
        train_idx=idx[:n_train].expand(len(seeds), -1).clone(),
        test_idx=idx[n_train:].expand(len(seeds), -1).clone(),
        description=f"quadratic teacher, dim {dim}, {n_train} training points",
    )


def _check_seeds(seeds) -> list[int]:
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must be a non-empty sequence of integers (S >= 1); got []")
    for s in seeds:
        check_int("seeds", s, low=0)
    return seeds
