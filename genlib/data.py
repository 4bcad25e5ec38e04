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
    return _split_and_corrupt(
        x, c, p, seeds, n_train, corrupt_fraction, description=f"a {op} b mod {p}, train fraction {train_fraction}"
    )


def _split_and_corrupt(
    x: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    seeds: list[int],
    n_train: int,
    corrupt_fraction: float,
    n_val: int = 0,
    description: str = "",
) -> TaskData:
    """One random split per seed (train, then ``n_val`` validation examples, the rest test); a
    ``corrupt_fraction`` of each member's training labels moved to a different random class."""
    n = len(labels)
    n_corrupt = round(corrupt_fraction * n_train)
    ys, parts = [], {"train": [], "val": [], "test": [], "corrupted": [], "clean_train": []}
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(n, generator=g)
        train = perm[:n_train]
        # Corrupted examples spread over the training order, so any prefix of train (a smaller
        # training set) keeps about the same corrupted share.
        is_bad = torch.zeros(n_train, dtype=torch.bool)
        is_bad[torch.randperm(n_train, generator=g)[:n_corrupt]] = True
        bad = train[is_bad]
        y = labels.clone()
        shift = torch.randint(1, num_classes, (n_corrupt,), generator=g)  # never the true class
        y[bad] = (y[bad] + shift) % num_classes
        ys.append(y)
        held_out = (perm[n_train : n_train + n_val], perm[n_train + n_val :])
        for name, part in zip(parts, (train, *held_out, bad, train[~is_bad])):
            parts[name].append(part)
    data = TaskData(
        x=x,
        y=torch.stack(ys),
        train_idx=torch.stack(parts["train"]),
        test_idx=torch.stack(parts["test"]),
        num_classes=num_classes,
        description=description,
    )
    if n_val:
        data.subsets["val"] = torch.stack(parts["val"])
    if n_corrupt:
        data.subsets["corrupted"] = torch.stack(parts["corrupted"])
        data.subsets["clean_train"] = torch.stack(parts["clean_train"])
    return data


def digits(
    n_train: int = 300,
    seeds: list[int] | tuple[int, ...] = (0,),
    corrupt_fraction: float = 0.0,
    n_val: int = 0,
) -> TaskData:
    """scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes; no download).

    Pixels are scaled to [0, 1], centred on the mean image and each image rescaled to norm sqrt(64),
    so coordinates are of order one. Per seed: ``n_train`` training images (a ``corrupt_fraction``
    of them relabelled to a different random class), ``n_val`` validation images in
    ``subsets['val']``, and the rest as the test set.
    """
    from sklearn.datasets import load_digits  # bundled with scikit-learn; imported only when used

    check_int("n_train", n_train, low=1, high=1796)
    check_int("n_val", n_val, low=0, high=1796 - n_train)
    check_float("corrupt_fraction", corrupt_fraction, 0.0, 1.0)
    seeds = _check_seeds(seeds)
    pixels, labels = load_digits(return_X_y=True)
    x = torch.tensor(pixels, dtype=torch.float32) / 16
    x = x - x.mean(0)
    x = x / x.norm(dim=1, keepdim=True) * x.shape[1] ** 0.5
    return _split_and_corrupt(
        x, torch.tensor(labels), 10, seeds, n_train, corrupt_fraction, n_val,
        description=f"digits, {n_train} training images, {corrupt_fraction:.0%} relabelled",
    )


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
