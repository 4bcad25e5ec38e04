"""Data sets as ensemble-ready tensors.

A :class:`TaskData` holds inputs shared by all S members of an ensemble and, per member, its own
labels and its own train/test split (members differ by seed). Everything is on one device and is
used for full-batch or minibatch training by :func:`genlib.core.train.train`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from ._validate import check_choice, check_float, check_int, check_seeds

OPERATIONS = ("+", "-", "*", "/")


@dataclass
class TaskData:
    """Inputs, and per member its labels and its own train/test split.

    x: (N, ...) inputs shared by every member, or (S, N, ...) one set per member
    (``per_member_inputs``: each member's own data set); y: (S, N) class labels or (S, N[, k])
    targets; train_idx: (S, n_train) and test_idx: (S, n_test) indices into N; subsets: extra named
    index sets (S, n_subset) that training also evaluates (e.g. the corrupted training examples).
    soft_targets: optional (S, N, C) probabilities that training fits instead of the labels
    (cross-entropy against them, e.g. a teacher's predictions for distillation); evaluation still
    scores the class ids in y.
    """

    x: torch.Tensor
    y: torch.Tensor
    train_idx: torch.Tensor
    test_idx: torch.Tensor
    num_classes: int | None = None
    subsets: dict[str, torch.Tensor] = field(default_factory=dict)
    description: str = ""
    per_member_inputs: bool = False
    soft_targets: torch.Tensor | None = None

    @property
    def members(self) -> int:
        return self.y.shape[0]

    def inputs(self, idx: torch.Tensor) -> torch.Tensor:
        """Inputs (S, B, ...) for per-member indices idx (S, B)."""
        if self.per_member_inputs:
            return self.x[torch.arange(len(idx), device=idx.device)[:, None], idx]
        return self.x[idx]

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (S, B, ...) and targets (S, B[, k]) for per-member indices idx (S, B)."""
        return self.inputs(idx), self.y[torch.arange(len(idx), device=idx.device)[:, None], idx]

    def soft_batch(self, idx: torch.Tensor) -> torch.Tensor:
        """Soft targets (S, B, C) for per-member indices idx (S, B); requires ``soft_targets``."""
        if self.soft_targets is None:
            raise ValueError("soft_targets must be set to take a batch of them; got None")
        return self.soft_targets[torch.arange(len(idx), device=idx.device)[:, None], idx]

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
            soft_targets=None if self.soft_targets is None else move(self.soft_targets),
        )

    @classmethod
    def from_blocks(
        cls,
        blocks: list[dict[str, tuple[torch.Tensor, torch.Tensor]]],
        num_classes: int | None = None,
        description: str = "",
        subsets: dict[str, list[torch.Tensor]] | None = None,
    ) -> TaskData:
        """One data set per member, each given as named sets {name: (x, y)}; 'train' and 'test'
        become the splits, every other name a subset evaluated during training. Every member's
        sets have the same sizes. Inputs equal for every member stay shared (N, ...); otherwise
        they are per member (S, N, ...). ``subsets`` adds index sets into a member's 'train'
        rows (one (n,) tensor per member), e.g. its relabelled examples."""
        if not blocks or "train" not in blocks[0] or "test" not in blocks[0]:
            raise ValueError("blocks must hold one dict per member with at least 'train' and 'test' sets")
        names = list(blocks[0])
        xs = [torch.cat([block[name][0] for name in names]) for block in blocks]
        y = torch.stack([torch.cat([block[name][1] for name in names]) for block in blocks])
        shared = all(torch.equal(x, xs[0]) for x in xs[1:])
        index, start = {}, 0
        for name in names:
            size = len(blocks[0][name][1])
            index[name] = torch.arange(start, start + size).expand(len(blocks), -1).clone()
            start += size
        index.update({name: torch.stack(rows) + index["train"][:, :1] for name, rows in (subsets or {}).items()})
        return cls(x=xs[0] if shared else torch.stack(xs), y=y, train_idx=index.pop("train"),
                   test_idx=index.pop("test"), num_classes=num_classes, subsets=index,
                   description=description, per_member_inputs=not shared)


def fourier_features(x: torch.Tensor, scale: float, features: int, seed: int = 0) -> torch.Tensor:
    """[cos 2 pi B x, sin 2 pi B x] for x (N, 1), B ~ N(0, scale^2) drawn from ``seed`` (Tancik et
    al. 2020's random Fourier features; spectral-bias chapter)."""
    check_float("scale", scale, 0.0, low_open=True)
    check_int("features", features, low=1)
    b = torch.randn(1, features, generator=torch.Generator().manual_seed(seed)) * scale
    return torch.cat([torch.cos(2 * math.pi * x @ b), torch.sin(2 * math.pi * x @ b)], 1)


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
    seeds = check_seeds(seeds)

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


DIGITS_IMAGES = 1797
INPUT_KINDS = ("real", "shuffled pixels", "random pixels", "gaussian")


def digit_inputs(kind: str, pixels: torch.Tensor) -> torch.Tensor:
    """The digits' pixels (as :func:`load_digits` gives them) centred and each image rescaled to norm
    sqrt(64), or first turned into one of Zhang et al.'s corruptions of them (seeded, so fixed)."""
    g = torch.Generator().manual_seed(2017)
    if kind == "shuffled pixels":  # one permutation of the 64 pixels, the same for every image
        pixels = pixels[:, torch.randperm(pixels.shape[1], generator=g)]
    elif kind == "random pixels":  # a different permutation for every image
        order = torch.argsort(torch.rand(pixels.shape, generator=g), dim=1)
        pixels = pixels.gather(1, order)
    elif kind == "gaussian":  # independent pixels with the real ones' means and variances
        pixels = pixels.mean(0) + pixels.std(0) * torch.randn(pixels.shape, generator=g)
    x = pixels - pixels.mean(0)
    return x / x.norm(dim=1, keepdim=True) * x.shape[1] ** 0.5


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 digits: pixels (1797, 64) in [0, 1] and labels (1797,)."""
    from sklearn import datasets  # bundled with scikit-learn; imported only when used

    pixels, labels = datasets.load_digits(return_X_y=True)
    return torch.tensor(pixels, dtype=torch.float32) / 16, torch.tensor(labels)


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
    check_int("n_train", n_train, low=1, high=DIGITS_IMAGES - 1)
    check_int("n_val", n_val, low=0, high=DIGITS_IMAGES - 1 - n_train)
    check_float("corrupt_fraction", corrupt_fraction, 0.0, 1.0)
    seeds = check_seeds(seeds)
    pixels, labels = load_digits()
    return _split_and_corrupt(
        digit_inputs("real", pixels), labels, 10, seeds, n_train, corrupt_fraction, n_val,
        description=f"digits, {n_train} training images, {corrupt_fraction:.0%} relabelled",
    )


def randomized_digits(
    conditions: list[tuple[str, float]] | tuple[tuple[str, float], ...],
    n_train: int = 1000,
    seeds: list[int] | tuple[int, ...] = (0,),
) -> TaskData:
    """Zhang et al. 2017's randomization tests on the digits, one member per (condition, seed).

    A condition is (inputs, label noise): inputs one of ``INPUT_KINDS`` (the real images, a fixed
    shuffle of the pixels, a separate shuffle per image, Gaussian noise), label noise the share of
    training labels moved to a different class (0.9 makes the labels uniformly random). Members
    with corrupted inputs are trained and tested on corrupted images; test labels stay true.
    """
    if not conditions:
        raise ValueError("conditions must list at least one (inputs, label noise) pair; got []")
    for kind, noise in conditions:
        check_choice("inputs", kind, INPUT_KINDS)
        check_float("label noise", noise, 0.0, 1.0)
    seeds = check_seeds(seeds)
    pixels, _ = load_digits()
    kinds = sorted({kind for kind, _ in conditions}, key=INPUT_KINDS.index)
    offset = {kind: i * DIGITS_IMAGES for i, kind in enumerate(kinds)}  # one block of rows per kind
    x = torch.cat([digit_inputs(kind, pixels) for kind in kinds])
    ys, trains, tests = [], [], []
    for kind, noise in conditions:
        labelled = digits(n_train, seeds, noise)
        ys.append(labelled.y.repeat(1, len(kinds)))  # every block carries the member's labels
        trains.append(labelled.train_idx + offset[kind])
        tests.append(labelled.test_idx + offset[kind])
    return TaskData(x=x, y=torch.cat(ys), train_idx=torch.cat(trains), test_idx=torch.cat(tests), num_classes=10,
                    description=f"digits randomization tests, {n_train} training images")


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
    seeds = check_seeds(seeds)
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


def xor_clusters(
    n_train: int = 40,
    n_test: int = 500,
    dim: int = 10_000,
    mean_norm: float = 32.0,
    flip_fraction: float = 0.15,
    seeds: list[int] | tuple[int, ...] = (0,),
) -> TaskData:
    """XOR clusters (Xu et al. 2024): x = +-mu1 + xi has label 1, x = +-mu2 + xi label 0.

    mu1 and mu2 are orthogonal with norm ``mean_norm``, xi ~ N(0, I_dim). The four clusters are
    balanced in the training set; a ``flip_fraction`` of the training labels is flipped
    (``subsets['corrupted']``), test labels are clean. Each seed draws its own data set (inputs per
    member).
    """
    check_int("n_train", n_train, low=4)
    check_int("n_test", n_test, low=1)
    check_int("dim", dim, low=2)
    check_float("mean_norm", mean_norm, 0.0, low_open=True)
    check_float("flip_fraction", flip_fraction, 0.0, 0.5, high_open=True)
    seeds = check_seeds(seeds)
    n_flip = round(flip_fraction * n_train)
    blocks, flipped, clean = [], [], []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        means = torch.linalg.qr(torch.randn(dim, 2, generator=g))[0].T * mean_norm  # orthogonal
        cluster = torch.cat([torch.arange(n_train) % 4, torch.randint(0, 4, (n_test,), generator=g)])
        sign = torch.where(cluster % 2 == 0, 1.0, -1.0)[:, None]
        x = sign * means[cluster // 2] + torch.randn(n_train + n_test, dim, generator=g)
        y = (cluster // 2 == 0).long()  # clusters 0, 1 (+-mu1) are class 1
        bad = torch.randperm(n_train, generator=g)[:n_flip]
        y[bad] = 1 - y[bad]
        blocks.append({"train": (x[:n_train], y[:n_train]), "test": (x[n_train:], y[n_train:])})
        flipped.append(bad)
        clean.append(torch.tensor(sorted(set(range(n_train)) - set(bad.tolist()))))
    subsets = {"corrupted": flipped, "clean_train": clean} if n_flip else None
    return TaskData.from_blocks(blocks, 2, f"XOR clusters, d = {dim}, {n_train} training points", subsets)


def diluted_digits(
    n_clean: int = 100,
    alpha: int = 10,
    seeds: list[int] | tuple[int, ...] = (0,),
    n_test: int = 500,
) -> TaskData:
    """Massive label noise (Rolnick et al. 2017): each clean training image comes with ``alpha``
    noisy ones, images from a separate pool of digits with uniformly random labels.

    Per seed: ``n_test`` test images, ``n_clean`` clean training images (``subsets['clean_train']``),
    and alpha x n_clean noisy examples drawn with replacement from the remaining images (so one image
    may carry several random labels). Inputs per member.
    """
    check_int("n_clean", n_clean, low=1)
    check_int("alpha", alpha, low=0)
    check_int("n_test", n_test, low=1)
    if n_test + n_clean >= DIGITS_IMAGES:
        raise ValueError(f"n_clean must leave images for the noisy pool ({DIGITS_IMAGES - n_test - 1} at most "
                         f"with n_test={n_test}); got {n_clean}")
    seeds = check_seeds(seeds)
    pixels, labels = load_digits()
    base = digit_inputs("real", pixels)
    n_noisy = alpha * n_clean
    blocks = []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(DIGITS_IMAGES, generator=g)
        pool = perm[n_test + n_clean :]
        noisy_x = base[pool[torch.randint(0, len(pool), (n_noisy,), generator=g)]]
        noisy_y = torch.randint(0, 10, (n_noisy,), generator=g)
        clean, test = perm[n_test : n_test + n_clean], perm[:n_test]
        blocks.append({"train": (torch.cat([base[clean], noisy_x]), torch.cat([labels[clean], noisy_y])),
                       "test": (base[test], labels[test])})
    first_clean = [torch.arange(n_clean)] * len(seeds)  # the clean images come first in each training set
    return TaskData.from_blocks(blocks, 10, f"digits, {n_clean} clean images, {alpha} noisy ones per clean one",
                                {"clean_train": first_clean})
