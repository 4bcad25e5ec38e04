"""Experiments of the double-descent chapter (book/double_descent.ipynb), each with its quick and
full size.

- :class:`FeatureSweep`: random ReLU features on the digits, solved in closed form (minimum norm,
  ridge, tuned ridge, gradient descent for t steps) for every width, label-noise level and seed.
  The result is a History whose "steps" axis is the number of features (or, for the sample-wise
  sweep, the number of training examples) and whose members are (noise, fit, seed) triples.
- :class:`NetworkSweep`: two-layer ReLU networks of many widths trained as one masked ensemble
  (members are (width, seed) pairs), once per optimiser.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..data import digits
from ..history import History
from ..models import MLP
from ..regression import SpectralSolver, relu_features
from ..scale import by_scale
from ..sweep import as_tuples, sweep
from ..train import TrainConfig, train

MIN_NORM, TUNED = "min-norm", "tuned ridge"


def _widths_around(threshold: int, low: int, high: int, points: int, near: tuple[float, ...]) -> tuple[int, ...]:
    """A log-spaced grid from low to high, plus points at the given multiples of the threshold."""
    spread = np.geomspace(low, high, points).round().astype(int)
    close = [round(threshold * m) for m in near]
    return tuple(sorted({int(w) for w in spread} | set(close)))


NEAR = (0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25)


@dataclass(frozen=True)
class FeatureSweep:
    """Random-features regression on the digits; one History over widths (or training-set sizes)."""

    n_train: int = 300
    n_val: int = 300  # clean images that pick the tuned ridge; the rest of the 1,797 are the test set
    widths: tuple[int, ...] = _widths_around(300, 10, 4000, 16, NEAR)
    noises: tuple[float, ...] = (0.0, 0.1, 0.2, 0.4)
    ridges: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)
    gd_steps: tuple[int, ...] = (100, 1000, 10000)
    seeds: tuple[int, ...] = (0, 1, 2)
    sample_wise: bool = False  # True: fixed width ``widths[0]``, sweep the training-set sizes below
    train_sizes: tuple[int, ...] = ()

    def fits(self) -> list[str]:
        return ([MIN_NORM] + [f"ridge {r:g}" for r in self.ridges] + [TUNED]
                + [f"GD {t} steps" for t in self.gd_steps])


FEATURES_QUICK = FeatureSweep()
FEATURES_FULL = FeatureSweep(widths=_widths_around(300, 10, 10000, 40, NEAR + (0.97, 0.99, 1.01, 1.03)),
                             seeds=tuple(range(10)))
SAMPLES_QUICK = FeatureSweep(widths=(200,), noises=(0.0, 0.2), sample_wise=True,
                             train_sizes=_widths_around(200, 20, 1000, 12, (0.5,) + NEAR))
SAMPLES_FULL = replace(SAMPLES_QUICK, seeds=tuple(range(10)),
                       train_sizes=_widths_around(200, 20, 1000, 30, (0.5,) + NEAR))
TUNING_GRID = tuple(float(r) for r in np.geomspace(1e-8, 10, 28))
GD_LR = 1.0  # stable for every width: feature vectors have squared norm ~1, so s_max^2 / n <~ 1


def feature_sweep(sample_wise: bool = False, **overrides) -> FeatureSweep:
    """The width sweep (or, with ``sample_wise``, the training-set-size sweep) at the current scale."""
    base = by_scale(SAMPLES_QUICK, SAMPLES_FULL) if sample_wise else by_scale(FEATURES_QUICK, FEATURES_FULL)
    return replace(base, **overrides)


def _filters(solver: SpectralSolver, s: FeatureSweep) -> dict[str, torch.Tensor]:
    filters = {MIN_NORM: solver.min_norm()}
    filters |= {f"ridge {r:g}": solver.ridge(r) for r in s.ridges}
    filters |= {f"GD {t} steps": solver.gradient_descent(GD_LR, t) for t in s.gd_steps}
    return filters


def _scores(projected: torch.Tensor, coefficients: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(MSE summed over the 10 outputs, classification error) of predictions on one set."""
    predictions = projected @ coefficients
    mse = (predictions - F.one_hot(labels, 10)).pow(2).sum(1).mean()
    return float(mse), float((predictions.argmax(1) != labels).double().mean())


def _fit_point(s: FeatureSweep, x, labels, true_labels, split, n_features, feature_seed):
    """Every fit of one (width, training set) for every noise level: {(noise, fit): metrics}."""
    train_idx, val_idx, test_idx = split
    features = relu_features(x, n_features, feature_seed)
    solver = SpectralSolver(features[train_idx])
    test, val = solver.project(features[test_idx]), solver.project(features[val_idx])
    train_proj = solver.project(features[train_idx])
    out = {}
    for noise, y in zip(s.noises, labels):
        targets = F.one_hot(y[train_idx], 10)
        coefs = {name: solver.coefficients(targets, f) for name, f in _filters(solver, s).items()}
        val_mse = [(_scores(val, solver.coefficients(targets, solver.ridge(r)), true_labels[val_idx])[0], r)
                   for r in TUNING_GRID]
        best_ridge = min(val_mse)[1]
        coefs[TUNED] = solver.coefficients(targets, solver.ridge(best_ridge))
        for name, c in coefs.items():
            test_mse, test_err = _scores(test, c, true_labels[test_idx])
            out[(noise, name)] = dict(
                test_mse=test_mse, test_err=test_err, train_mse=_scores(train_proj, c, y[train_idx])[0],
                weight_norm=float(c.norm()), ridge=best_ridge if name == TUNED else float("nan"),
            )
    return out


def _run_features(config: dict) -> History:
    s = FeatureSweep(**as_tuples(config))
    n_max = max(s.train_sizes) if s.sample_wise else s.n_train
    clean = digits(n_max, s.seeds, 0.0, s.n_val)  # the same splits as the noisy sets, true labels
    noisy = [digits(n_max, s.seeds, noise, s.n_val).y for noise in s.noises]
    xs = s.train_sizes if s.sample_wise else s.widths
    members = [dict(noise=noise, fit=fit, seed=seed) for noise in s.noises for fit in s.fits() for seed in s.seeds]
    metrics = {m: np.full((len(xs), len(members)), np.nan) for m in ("test_mse", "test_err", "train_mse",
                                                                     "weight_norm", "ridge")}
    for j, seed in enumerate(s.seeds):
        labels = [y[j] for y in noisy]
        for i, value in enumerate(xs):
            n, width = (value, s.widths[0]) if s.sample_wise else (n_max, value)
            split = (clean.train_idx[j, :n], clean.subsets["val"][j], clean.test_idx[j])
            point = _fit_point(s, clean.x, labels, clean.y[j], split, width, feature_seed=10_000 + seed)
            for k, member in enumerate(members):
                if member["seed"] == seed:
                    for name, value in point[(member["noise"], member["fit"])].items():
                        metrics[name][i, k] = value
    axis = "training examples" if s.sample_wise else "features"
    return History(np.asarray(xs), metrics, members, meta={"axis": axis, "n_train": s.n_train})


def run_features(s: FeatureSweep) -> History:
    """Solve (or read from the cache) every point of a feature sweep."""
    return sweep(_run_features, [asdict(s)], name="double_descent_features")[0]


@dataclass(frozen=True)
class NetworkSweep:
    """Two-layer ReLU networks on the digits, MSE on one-hot labels, full batch."""

    n_train: int = 100
    noise: float = 0.2
    widths: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64)
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 3000
    optimizer: str = "adamw"
    lr: float = 0.01
    eval_every: int = 50
    eval_log_points: int = 60

    @property
    def threshold_width(self) -> float:
        """Width whose parameter count (65 w + 10 (w + 1)) equals n_train x 10 outputs."""
        return (10 * self.n_train - 10) / 75


NETWORK_QUICK = NetworkSweep()
NETWORK_FULL = NetworkSweep(n_train=300, widths=(1, 2, 4, 6, 8, 12, 16, 20, 24, 28, 32, 36, 40, 48, 56, 64, 96,
                                                 128, 192, 256),
                            seeds=tuple(range(5)), steps=20000, eval_every=200)
GD_RATE = 0.5  # plain gradient descent: the largest step that was stable for every width tried


def network_sweeps(**overrides) -> dict[str, NetworkSweep]:
    """Adam (reaches zero training loss at the threshold), plain gradient descent (does not), and
    Adam on clean labels (the control for epoch-wise double descent)."""
    adam = replace(by_scale(NETWORK_QUICK, NETWORK_FULL), **overrides)
    return {"Adam": adam, "gradient descent": replace(adam, optimizer="sgd", lr=GD_RATE),
            "Adam, clean labels": replace(adam, noise=0.0)}


def _train_networks(config: dict) -> History:
    s = NetworkSweep(**as_tuples(config))
    widths = [w for w in s.widths for _ in s.seeds]
    seeds = [seed for _ in s.widths for seed in s.seeds]
    data = digits(s.n_train, seeds, s.noise)
    model = MLP(64, (max(s.widths),), 10, seeds, member_widths=widths)
    history = train(model, data, TrainConfig(steps=s.steps, lr=s.lr, optimizer=s.optimizer, loss="mse",
                                              eval_every=s.eval_every, eval_log_points=s.eval_log_points))
    for member, width in zip(history.members, widths):
        member["width"] = width
    return history


def run_networks(sweeps: dict[str, NetworkSweep]) -> dict[str, History]:
    """Train (or read from the cache) each sweep; members are (width, seed) pairs, width-major."""
    histories = sweep(_train_networks, [asdict(s) for s in sweeps.values()], name="double_descent_networks")
    return dict(zip(sweeps, histories))
