"""Synthetic tasks of the simplicity-bias chapter, each a TaskData whose extra subsets are the
chapter's probes (randomized features, Gaussian clones, conflicting cues), so that training
measures them at every evaluation. Every seed draws its own data set (per-member inputs).
"""
from __future__ import annotations

import torch

from ._validate import check_float, check_int, check_seeds
from .data import TaskData, digit_inputs, load_digits


def _slab_coordinate(y: torch.Tensor, slabs: int, margin: float, g: torch.Generator) -> torch.Tensor:
    """A k-slab coordinate in [-1, 1]: k intervals, alternating classes (class 1 on the outer ones)."""
    width = (2 - (slabs - 1) * margin) / slabs
    even, odd = torch.arange(0, slabs, 2), torch.arange(1, slabs, 2)  # class 1 owns the even slabs
    slab = torch.where(y == 1, even[torch.randint(0, len(even), (len(y),), generator=g)],
                       odd[torch.randint(0, len(odd), (len(y),), generator=g)])
    return -1 + slab * (width + margin) + width * torch.rand(len(y), generator=g)


def lms(
    n_train: int = 10_000,
    n_test: int = 5000,
    slabs: int = 5,
    dims: int = 50,
    margin: float = 0.1,
    shuffle_linear_in_training: bool = False,
    seeds: list[int] | tuple[int, ...] = (0,),
) -> TaskData:
    """Shah et al. 2020's LMS data: one linear coordinate and dims - 1 k-slab coordinates, each of
    which alone predicts the binary label perfectly, then a random rotation of all coordinates.

    Subsets: 'linear_randomized' and 'slabs_randomized' are the test set with the linear
    coordinate, or every slab coordinate, shuffled across test points (before the rotation), which
    destroys that coordinate's information while keeping its distribution.
    """
    check_int("slabs", slabs, low=2)
    check_int("dims", dims, low=2)
    check_int("n_train", n_train, low=2)
    check_int("n_test", n_test, low=2)
    check_float("margin", margin, 0.0, 2 / (slabs - 1), high_open=True)
    seeds = check_seeds(seeds)

    def block(g: torch.Generator) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:

        def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            y = torch.randint(0, 2, (n,), generator=g)
            sign = (2 * y - 1).float()
            linear = sign * (margin / 2 + (1 - margin / 2) * torch.rand(n, generator=g))
            slab_cols = [_slab_coordinate(y, slabs, margin, g) for _ in range(dims - 1)]
            return torch.stack([linear, *slab_cols], 1), y

        def shuffled(z: torch.Tensor, cols: slice) -> torch.Tensor:
            z = z.clone()
            for j in range(*cols.indices(z.shape[1])):
                z[:, j] = z[torch.randperm(len(z), generator=g), j]
            return z

        rotation = torch.linalg.qr(torch.randn(dims, dims, generator=g))[0]
        (z_train, y_train), (z_test, y_test) = draw(n_train), draw(n_test)
        if shuffle_linear_in_training:
            z_train = shuffled(z_train, slice(0, 1))
        return {
            "train": (z_train @ rotation, y_train),
            "test": (z_test @ rotation, y_test),
            "linear_randomized": (shuffled(z_test, slice(0, 1)) @ rotation, y_test),
            "slabs_randomized": (shuffled(z_test, slice(1, None)) @ rotation, y_test),
        }

    return TaskData.from_blocks([block(torch.Generator().manual_seed(seed)) for seed in seeds], 2,
                                f"LMS, 1 linear + {dims - 1} {slabs}-slab coordinates")


def cued_digits(
    n_train: int = 1000,
    cue_strength: float = 3.0,
    seeds: list[int] | tuple[int, ...] = (0,),
) -> TaskData:
    """The digits with a simple synthetic cue: one pixel of the top rows, at a position that
    encodes the class, brightened by ``cue_strength``. Cue and digit both predict the label.

    Subsets: 'cue_conflict' (test digits carrying the cue of another, random class; labelled by
    the *cue*), 'cue_conflict_digit' (the same images labelled by the *digit*), 'cue_only' (the cue
    on a blank image, labelled by the cue) and 'digit_only' (test digits without any cue, labelled
    by the digit).
    """
    check_int("n_train", n_train, low=1, high=1500)
    check_float("cue_strength", cue_strength, 0.0)
    seeds = check_seeds(seeds)
    pixels, labels = load_digits()
    x = digit_inputs("real", pixels)

    def cue(classes: torch.Tensor) -> torch.Tensor:
        c = torch.zeros(len(classes), 64)
        c[torch.arange(len(classes)), classes] = cue_strength  # pixels 0..9: the first row and a bit
        return c


    def block(g: torch.Generator) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        perm = torch.randperm(len(labels), generator=g)
        train, test = perm[:n_train], perm[n_train:]
        other = (labels[test] + torch.randint(1, 10, (len(test),), generator=g)) % 10
        return {
            "train": (x[train] + cue(labels[train]), labels[train]),
            "test": (x[test] + cue(labels[test]), labels[test]),
            "cue_conflict": (x[test] + cue(other), other),
            "cue_conflict_digit": (x[test] + cue(other), labels[test]),
            "cue_only": (cue(labels[test]), labels[test]),
            "digit_only": (x[test], labels[test]),
        }

    return TaskData.from_blocks([block(torch.Generator().manual_seed(seed)) for seed in seeds], 10,
                                f"digits with a class cue of strength {cue_strength}")


def cumulant_classes(
    n_train: int = 4000,
    n_test: int = 4000,
    higher_order_dims: int = 8,
    mean_shift: float = 0.5,
    variance_ratio: float = 2.0,
    seeds: list[int] | tuple[int, ...] = (0,),
) -> TaskData:
    """Two classes that differ in their means (one coordinate, +-``mean_shift``), their covariances
    (one coordinate with variance 1 or ``variance_ratio``) and, most, in higher-order statistics:
    on ``higher_order_dims`` coordinates class 0 is Gaussian and class 1 a noisy +-1 (Rademacher)
    variable of the same mean and variance (Refinetti et al. 2023's distributional simplicity bias).

    Subset 'clone': the Gaussian clone of the training set, each class replaced by a Gaussian with
    that class's mean and covariance: it keeps the first two moments and nothing else.
    """
    check_int("higher_order_dims", higher_order_dims, low=1)
    check_float("variance_ratio", variance_ratio, 0.0, low_open=True)
    seeds = check_seeds(seeds)

    def block(g: torch.Generator) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:

        def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            y = torch.randint(0, 2, (n,), generator=g)
            x = torch.randn(n, 2 + higher_order_dims, generator=g)
            x[:, 0] += torch.where(y == 1, mean_shift, -mean_shift)
            x[:, 1] *= torch.where(y == 1, variance_ratio**0.5, 1.0)
            sign = (torch.randint(0, 2, (n, higher_order_dims), generator=g) * 2 - 1).float()
            spiky = (sign + 0.3 * torch.randn(n, higher_order_dims, generator=g)) / 1.09**0.5  # variance 1
            x[:, 2:] = torch.where(y[:, None] == 1, spiky, x[:, 2:])
            return x, y

        def clone(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            parts = []
            for c in (0, 1):
                xc = x[y == c]
                chol = torch.linalg.cholesky(torch.cov(xc.T))
                parts.append(xc.mean(0) + torch.randn(len(xc), x.shape[1], generator=g) @ chol.T)
            return torch.cat(parts), torch.cat([torch.zeros((y == 0).sum(), dtype=torch.long),
                                                torch.ones((y == 1).sum(), dtype=torch.long)])

        train, test = draw(n_train), draw(n_test)
        return {"train": train, "test": test, "clone": clone(*test)}

    return TaskData.from_blocks([block(torch.Generator().manual_seed(seed)) for seed in seeds], 2,
                                "classes differing in mean, covariance and higher cumulants")


def two_cues(
    n_train: int = 1000,
    n_test: int = 2000,
    predictivity: tuple[float, float] = (0.8, 0.95),
    amplitude: tuple[float, float] = (3.0, 0.3),
    noise_dims: int = 20,
    seeds: list[int] | tuple[int, ...] = (0,),
) -> TaskData:
    """Two latent +-1 features a and b of the binary label (Hermann et al. 2023): feature i agrees
    with the label with probability ``predictivity[i]`` and is written into the input with
    ``amplitude[i]`` (its availability), next to ``noise_dims`` Gaussian coordinates.

    Subset 'conflict': test inputs with a = -b, labelled by a: accuracy there is the share of
    decisions that follow feature a (the model's reliance on it).
    """
    for name, pair, high in (("predictivity", predictivity, 1.0), ("amplitude", amplitude, None)):
        if len(pair) != 2:
            raise ValueError(f"{name} must be a pair (feature a, feature b); got {pair!r}")
        for v in pair:
            check_float(name, v, 0.0, high, low_open=True)
    seeds = check_seeds(seeds)

    def block(g: torch.Generator) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:

        def draw(n: int, conflict: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
            sign = torch.randint(0, 2, (n,), generator=g) * 2 - 1
            a = torch.where(torch.rand(n, generator=g) < predictivity[0], sign, -sign)
            b = -a if conflict else torch.where(torch.rand(n, generator=g) < predictivity[1], sign, -sign)
            x = torch.cat([amplitude[0] * a[:, None].float(), amplitude[1] * b[:, None].float(),
                           torch.randn(n, noise_dims, generator=g)], 1)
            return x, ((a if conflict else sign) > 0).long()

        return {"train": draw(n_train), "test": draw(n_test), "conflict": draw(n_test, conflict=True)}

    return TaskData.from_blocks([block(torch.Generator().manual_seed(seed)) for seed in seeds], 2,
                                f"two cues: predictivity {predictivity}, amplitude {amplitude}")
