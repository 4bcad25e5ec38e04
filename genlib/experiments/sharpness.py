"""Experiments of the sharpness chapter (book/sharpness.ipynb): declared setups plus one build each.

- :class:`DigitsRecipe` (abstract): an MLP on the digits trained by gradient descent on the squared
  error; :class:`SharpnessRecipe` (abstract) adds the sharpness (top Hessian eigenvalue on the whole
  training set) read during training and the Hessian trace read at the end.
- :class:`StabilitySetup`: gradient descent (full batch or minibatches, optionally SAM) at several
  step sizes (the ensemble's axis), keeping each member's final parameters. :class:`StabilityGrid`
  gives one per batch size, and SAM.
- :class:`EscapeSetup`: Wu et al. 2018's escape test: minibatch SGD started from the end point of a
  :class:`StabilitySetup` run (its requirement).
- :class:`CatapultSetup`: step sizes set per member as multiples of 2 / (its own initial sharpness).
- :class:`HessianSpectrumSetup`: every Hessian eigenvalue of a small network of the same kind,
  before and after training.
- :class:`PerceptronSetup`: logistic regression on separable data at growing step sizes, with its
  normalized margin.
- :class:`LargeBatchSetup`: small and large batches on CIFAR-10 at equal epochs and equal updates
  (full scale only: CIFAR-10 is downloaded).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch

from ..core._validate import check_int, check_seeds
from ..core.cifar import TEST_IMAGES, TRAIN_IMAGES, cifar10
from ..core.data import DIGITS_IMAGES, TaskData, digit_inputs, digits, load_digits
from ..core.history import History
from ..core.models import ACTIVATIONS, MLP, Ensemble
from ..core.train import TrainConfig, evaluation_mode
from ..measures.curvature import dense_hessian, hessian_trace, top_eigenpair
from ..running.experiment import Bounds, TrainedExperiment, TrainedRun
from ..running.grid import Grid

AT_LEAST_ONE = Bounds(1)
AT_LEAST_ZERO = Bounds(0)
POSITIVE = Bounds(0.0, low_open=True)


@dataclass(frozen=True)
class DigitsRecipe(TrainedExperiment):
    """An MLP on scikit-learn's digits (one-hot targets), trained by gradient descent on the
    squared error: the task and network of every setup here but the perceptron and CIFAR-10."""

    LOSS: ClassVar[str] = "mse"  # the loss trained, and whose curvature is measured
    CHOICES = {"activation": tuple(ACTIVATIONS)}
    BOUNDS = {"n_train": Bounds(1, DIGITS_IMAGES - 1), "hidden": AT_LEAST_ONE, "steps": AT_LEAST_ONE}

    n_train: int = 1000
    hidden: tuple[int, ...] = (100, 100)
    activation: str = "tanh"
    init_scale: float = 0.5
    steps: int = 1000
    seeds: tuple[int, ...] = (0, 1, 2)

    def digits_task(self, lrs: list[float], **config: Any) -> tuple[TaskData, Ensemble, TrainConfig]:
        """The data, the network (one member per entry of :meth:`members`) and plain SGD at step
        sizes ``lrs`` (one per member) for ``steps`` steps; ``config``: TrainConfig's other settings."""
        seeds = self.member_values("seed")
        data = digits(self.n_train, seeds=seeds)
        model = MLP(64, self.hidden, 10, seeds, activation=self.activation, init_scale=self.init_scale)
        return data, model, TrainConfig(steps=self.steps, lr=lrs, optimizer="sgd", loss=self.LOSS, **config)


@dataclass(frozen=True)
class SharpnessRecipe(DigitsRecipe):
    """The digits recipe with its sharpness read every ``eval_every`` steps (and at
    ``eval_log_points`` log-spaced early steps) by the Lanczos method, and its Hessian trace
    (Hutchinson's estimator) read at the end, both on the whole training set.

    Each reading starts from a fresh random vector (another one at each reading: a warm start from
    the previous reading's eigenvector can settle on an eigenvector that is no longer the top one,
    and read low) and stops once the top Ritz pair's residual ||H v - theta v|| is at most
    ``lanczos_tolerance`` x theta, or after ``lanczos_iterations``; the products each reading took
    are recorded as "sharpness_iterations"."""

    BOUNDS = {"eval_every": AT_LEAST_ONE, "eval_log_points": AT_LEAST_ZERO, "lanczos_iterations": Bounds(2),
              "lanczos_tolerance": Bounds(0.0, 1.0, low_open=True), "trace_samples": AT_LEAST_ONE}

    eval_every: int = 25
    eval_log_points: int = 0  # extra log-spaced readings in the first steps
    lanczos_iterations: int = 100  # at most, per reading
    lanczos_tolerance: float = 2e-3  # on the residual, relative: the reading is then within 0.2% of an eigenvalue
    trace_samples: int = 20

    def tracked_task(self, lrs: list[float], **config: Any) -> tuple[TaskData, Ensemble, TrainConfig]:
        """:meth:`digits_task`, evaluated (and its sharpness read) on this recipe's schedule."""
        return self.digits_task(lrs, eval_every=self.eval_every, eval_log_points=self.eval_log_points, **config)

    def extra_metrics(self, data, model):
        reader = SharpnessReader(data, self.LOSS, self.lanczos_tolerance, self.lanczos_iterations)
        return {"sharpness": reader, "sharpness_iterations": reader.iterations_used}

    def after_training(self, history: History, run: TrainedRun) -> History:
        trace = hessian_trace(run.model, run.data, self.LOSS, samples=self.trace_samples)
        return replace(history, arrays=history.arrays | {"trace": trace.detach().cpu().numpy()})


class SharpnessReader:
    """The sharpness metric: each call reads every member's top Hessian eigenvalue with
    :func:`~genlib.measures.curvature.top_eigenpair` (residual rule), each call from its own random
    start (seed: the number of calls before it); :meth:`iterations_used` gives the products the
    last call took (read it after)."""

    def __init__(self, data: TaskData, loss: str, tolerance: float, max_iterations: int):
        self.data, self.loss, self.tolerance, self.max_iterations = data, loss, tolerance, max_iterations
        self.calls = 0
        self.used: torch.Tensor | None = None

    def __call__(self, model: Ensemble) -> torch.Tensor:
        pair = top_eigenpair(model, self.data, self.loss, tolerance=self.tolerance,
                             max_iterations=self.max_iterations, seed=self.calls, rule="residual")
        self.calls, self.used = self.calls + 1, pair.iterations
        return pair.values.detach()

    def iterations_used(self, model: Ensemble) -> torch.Tensor:
        if self.used is None:
            raise ValueError("iterations_used must be read after a sharpness reading; got none yet")
        return self.used.float()


def flat_parameters(model: Ensemble) -> np.ndarray:
    """(S, P) every member's parameters flattened in ``model.parameters()`` order."""
    return torch.cat([p.detach().flatten(1) for p in model.parameters()], 1).cpu().numpy()


def load_flat_parameters(model: Ensemble, flat: np.ndarray) -> Ensemble:
    """Set every member's parameters from ``flat`` (S, P), as :func:`flat_parameters` gives them."""
    params = list(model.parameters())
    sizes = [p[0].numel() for p in params]
    expected = (model.members, sum(sizes))
    if tuple(np.shape(flat)) != expected:
        raise ValueError(f"flat must be shaped (members, parameters) = {expected}; got {tuple(np.shape(flat))}")
    with torch.no_grad():
        for p, piece in zip(params, torch.as_tensor(np.asarray(flat)).split(sizes, dim=1)):
            p.copy_(piece.reshape(p.shape))
    return model


@dataclass(frozen=True)
class StabilitySetup(SharpnessRecipe):
    """Cohen et al. 2021 (full batch) and Wu et al. 2018 (minibatches): members are step sizes x seeds."""

    FULL = dict(n_train=1500, hidden=(200, 200), steps=3000, seeds=tuple(range(5)))
    AXES = {"lr": "lrs"}
    BOUNDS = {"lrs": POSITIVE, "batch_size": AT_LEAST_ONE, "sam_radius": Bounds(0.0)}

    lrs: tuple[float, ...] = (0.4, 0.8, 1.6, 3.2)
    batch_size: int | None = None  # None: full batch (gradient descent)
    sam_radius: float = 0.0
    eval_every: int = 50
    eval_log_points: int = 8  # early readings, e.g. near 4, 16 and 64 steps (epochs of the minibatch runs)

    def build(self):
        return self.tracked_task(self.member_values("lr"), batch_size=self.batch_size, sam_radius=self.sam_radius)

    def after_training(self, history: History, run: TrainedRun) -> History:
        """The trace, and each member's final parameters ("final_params", (S, P)) for :class:`EscapeSetup`."""
        history = super().after_training(history, run)
        return replace(history, arrays=history.arrays | {"final_params": flat_parameters(run.model)})


@dataclass(frozen=True)
class EscapeSetup(SharpnessRecipe):
    """Wu et al. 2018's escape test: minibatch SGD (batches of ``batch_size``, step size ``lr``) for
    ``steps`` steps, started at the end point of ``start``'s members at ``lr`` (its requirement,
    e.g. the full-batch run of :class:`StabilityGrid`). Does SGD stay at gradient descent's end
    point or leave it? ``batch_size=None`` continues gradient descent instead, the control.
    Members are seeds, each continuing its own seed's run on the same data."""

    FULL = {k: v for k, v in StabilitySetup.FULL.items() if k != "steps"} | dict(
        start=replace(StabilitySetup(), **StabilitySetup.FULL), steps=1000)
    BOUNDS = {"lr": POSITIVE, "batch_size": AT_LEAST_ONE}

    start: StabilitySetup = StabilitySetup()
    lr: float = 0.8
    batch_size: int | None = 4  # None: full batch, gradient descent continued (the control)
    steps: int = 500
    eval_every: int = 50
    eval_log_points: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        digits_fields = ("n_train", "hidden", "activation", "init_scale", "seeds")
        differ = [f for f in digits_fields if getattr(self, f) != getattr(self.start, f)]
        if differ:
            raise ValueError(f"start must train the same task and network ({', '.join(differ)}); use EscapeSetup.of")
        if self.lr not in self.start.lrs:
            raise ValueError(f"lr must be one of start's step sizes {self.start.lrs}; got {self.lr}")

    @classmethod
    def of(cls, start: StabilitySetup, **settings: Any) -> EscapeSetup:
        """The escape test from ``start``'s end point; ``settings``: lr, batch_size, steps, ..."""
        same = {f: getattr(start, f) for f in ("n_train", "hidden", "activation", "init_scale", "seeds")}
        return cls(start=start, **same, **settings)

    def requires(self):
        return {"start": self.start}

    def build(self, start: History):
        data, model, config = self.tracked_task([self.lr] * len(self.members()), batch_size=self.batch_size)
        return data, load_flat_parameters(model, start.select(lr=self.lr).arrays["final_params"]), config


@dataclass(frozen=True)
class StabilityGrid(Grid):
    """One :class:`StabilitySetup` per batch size (None: full batch), all at the base's step sizes;
    and SAM at full batch, at the one step size where batch sizes are compared."""

    POINT = StabilitySetup
    FULL = dict(batch_sizes=(None, 256, 64, 16, 4))

    batch_sizes: tuple[int | None, ...] = (None, 64, 16, 4)
    compared_lr: float = 0.8
    sam_radii: tuple[float, ...] = (0.05,)
    minibatch_sharpness_every: int = 200  # a reading costs as much as many cheap minibatch steps
    sam_sharpness_every: int = 100

    def setups(self) -> dict[str, StabilitySetup]:
        """{"full batch" | "batch 64" | ...: its setup}."""
        return {batch_label(b): s if b is None else replace(s, eval_every=self.minibatch_sharpness_every,
                                                             eval_log_points=0)
                for b, s in self.vary("batch_size", self.batch_sizes).items()}

    def sam_setups(self) -> dict[str, StabilitySetup]:
        """{"SAM rho=0.05" | ...: full-batch SAM at ``compared_lr``}."""
        gd = self.setups()[batch_label(None)]
        return {f"SAM rho={r:g}": replace(gd, lrs=(self.compared_lr,), sam_radius=r,
                                          eval_every=self.sam_sharpness_every, eval_log_points=0)
                for r in self.sam_radii}


def batch_label(batch_size: int | None) -> str:
    return "full batch" if batch_size is None else f"batch {batch_size}"


@dataclass(frozen=True)
class CatapultSetup(SharpnessRecipe):
    """Lewkowycz et al. 2020: a wide one-hidden-layer ReLU network, squared error, full-batch
    gradient descent; each member's step size is a multiple of 2 / lambda_0, its own sharpness at
    initialisation. Members are multiples x seeds."""

    FULL = dict(hidden=(2048,), n_train=500, seeds=tuple(range(5)))
    AXES = {"multiple": "multiples"}
    BOUNDS = {"multiples": POSITIVE}

    n_train: int = 200
    hidden: tuple[int, ...] = (512,)
    activation: str = "relu"
    init_scale: float = 1.0
    multiples: tuple[float, ...] = (0.5, 1.25, 1.75, 2.5)  # lr = multiple x 2 / lambda_0
    steps: int = 200
    eval_every: int = 20
    eval_log_points: int = 30
    trace_samples: int = 1
    seeds: tuple[int, ...] = (0, 1, 2)

    def build(self):
        data, model, config = self.tracked_task([1.0] * len(self.members()))
        initial = top_eigenpair(model, data, self.LOSS, tolerance=1e-6, max_iterations=200).values  # (S,) lambda_0
        lrs = [m * 2 / float(s) for m, s in zip(self.member_values("multiple"), initial)]
        return data, model, replace(config, lr=lrs)


@dataclass(frozen=True)
class HessianSpectrumSetup(DigitsRecipe):
    """Sagun et al. 2017: every eigenvalue of the Hessian of a network of :class:`StabilitySetup`'s
    kind but small enough to write its Hessian out (``hidden`` widths, ``n_train`` images), at
    initialisation and after full-batch gradient descent for ``steps`` steps. Members are step
    sizes x seeds; arrays "before" and "after", (members, parameters), each member's eigenvalues
    sorted from the largest down."""

    FULL = dict(steps=StabilitySetup.FULL["steps"])
    AXES = {"lr": "lrs"}
    BOUNDS = {"lrs": POSITIVE}

    n_train: int = 200
    hidden: tuple[int, ...] = (16, 16)
    lrs: tuple[float, ...] = (0.8,)
    seeds: tuple[int, ...] = (0,)

    @classmethod
    def of(cls, setup: StabilitySetup, lr: float, seeds: tuple[int, ...] = (0,), **sizes: Any) -> HessianSpectrumSetup:
        """The spectra of networks of ``setup``'s kind (its activation, initial scale and number of
        steps) at step size ``lr``, one per seed; ``sizes``: n_train and hidden, if not the defaults."""
        return cls(activation=setup.activation, init_scale=setup.init_scale, steps=setup.steps, lrs=(lr,),
                   seeds=tuple(seeds), **sizes)

    def build(self):
        return self.digits_task(self.member_values("lr"), eval_every=self.steps, eval_log_points=0)

    def spectra(self, data: TaskData, model: Ensemble) -> np.ndarray:
        """(members, parameters) every member's Hessian eigenvalues, from the largest down."""
        return np.stack([torch.linalg.eigvalsh(dense_hessian(model, data, self.LOSS, s).double()).flip(0).cpu().numpy()
                         for s in range(model.members)])

    def before_training(self, data, model):
        return self.spectra(data, model)

    def after_training(self, history: History, run: TrainedRun) -> History:
        return replace(history, arrays=history.arrays | {"before": run.before,
                                                         "after": self.spectra(run.data, run.model)})


@dataclass(frozen=True)
class PerceptronSetup(TrainedExperiment):
    """Logistic regression by full-batch gradient descent on separable data (two digit classes),
    at growing step sizes (the ensemble's axis): steps until every training point is classified,
    and the normalized margin on the training set at every step ("margin")."""

    AXES = {"lr": "lrs"}
    BOUNDS = {"lrs": POSITIVE, "steps": AT_LEAST_ONE}

    classes: tuple[int, int] = (1, 8)
    lrs: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 10_000.0)
    steps: int = 300
    seeds: tuple[int, ...] = (0, 1, 2)

    def build(self):
        seeds = self.member_values("seed")
        data = two_digit_classes(self.classes, seeds)
        model = MLP(64, (), 2, seeds, init_scale=0.0)  # from w = 0, as the perceptron starts
        config = TrainConfig(steps=self.steps, lr=self.member_values("lr"), optimizer="sgd",
                             eval_every=1, eval_log_points=0)
        return data, model, config

    def extra_metrics(self, data, model):
        x, y = data.batch(data.train_idx)
        return {"margin": lambda m: normalized_margin(m, x, y)}


def normalized_margin(model: Ensemble, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(S,) min over the examples of (2y - 1) f(x) / ||(w, b)|| for each member's linear two-class
    model, f = logit 1 - logit 0 = w.x + b (w and b read off the model's outputs at 0 and at the
    unit inputs); negative while some example is misclassified, 0 at w = b = 0."""
    like = next(model.parameters())
    x, y = x.to(like), y.to(like.device)
    members, _, dim = x.shape
    with torch.no_grad(), evaluation_mode(model):
        probes = torch.cat([torch.zeros(1, dim), torch.eye(dim)]).to(like).expand(members, dim + 1, dim)
        out = model(probes)
        f_probe = out[..., 1] - out[..., 0]  # (S, 1 + dim)
        b, w = f_probe[:, 0], f_probe[:, 1:] - f_probe[:, :1]
        logits = model(x)
        f = logits[..., 1] - logits[..., 0]
        norm = torch.sqrt((w * w).sum(1) + b * b)
        worst = ((2 * y - 1).to(f) * f).min(1).values
        return torch.where(norm > 0, worst / norm, torch.zeros_like(worst))


def two_digit_classes(classes: tuple[int, int], seeds, n_train: int = 150, n_test: int = 150) -> TaskData:
    """The digits of two classes (about 180 images each), relabelled 0 and 1; per seed a random
    ``n_train`` of them for training and ``n_test`` others for testing."""
    pixels, labels = load_digits()
    x = digit_inputs("real", pixels)
    pool = torch.nonzero((labels == classes[0]) | (labels == classes[1])).flatten()
    check_int("n_train + n_test", n_train + n_test, low=2, high=len(pool))
    blocks = []
    for seed in check_seeds(seeds):
        order = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))]
        split = {"train": order[:n_train], "test": order[n_train : n_train + n_test]}
        blocks.append({k: (x[i], (labels[i] == classes[1]).long()) for k, i in split.items()})
    return TaskData.from_blocks(blocks, 2, f"digits {classes[0]} and {classes[1]}")


def steps_to_separate(history: History) -> np.ndarray:
    """(members,) first step with every training point classified correctly (NaN: never)."""
    return history.first_step("train_acc", 1.0)


@dataclass(frozen=True)
class LargeBatchSetup(TrainedExperiment):
    """Keskar et al. 2017 and Hoffer et al. 2017 on real images: CIFAR-10 as flat vectors, a ReLU MLP,
    SGD with momentum at one step size; members are seeds, one run per (batch size, number of updates)
    (:meth:`comparison`). CIFAR-10 is downloaded (163 MB), so the chapter runs this at full scale only."""

    FULL = dict(n_train=50_000, n_test=10_000, steps=11_720, large_batch=4096, seeds=(0, 1, 2), eval_every=390)
    BOUNDS = {"n_train": Bounds(1, TRAIN_IMAGES), "n_test": Bounds(1, TEST_IMAGES), "hidden": AT_LEAST_ONE,
              "batch_size": AT_LEAST_ONE, "large_batch": AT_LEAST_ONE, "steps": AT_LEAST_ONE, "lr": POSITIVE,
              "momentum": Bounds(0.0, 1.0, high_open=True), "eval_every": AT_LEAST_ONE}

    n_train: int = 5000
    n_test: int = 2000
    hidden: tuple[int, ...] = (512, 512)
    batch_size: int = 128
    large_batch: int = 2048
    steps: int = 1200
    lr: float = 0.05
    momentum: float = 0.9
    seeds: tuple[int, ...] = (0, 1)
    eval_every: int = 100

    def build(self):
        seeds = self.member_values("seed")
        data = cifar10(self.n_train, self.n_test, seeds)
        config = TrainConfig(steps=self.steps, lr=self.lr, optimizer="sgd", momentum=self.momentum,
                             batch_size=self.batch_size, eval_every=self.eval_every, eval_log_points=0)
        return data, MLP(3072, self.hidden, 10, seeds), config

    def comparison(self) -> dict[str, LargeBatchSetup]:
        """The small batch; the large batch for as many epochs (fewer updates); and for as many updates."""
        ratio = self.large_batch / self.batch_size
        epochs = replace(self, batch_size=self.large_batch, steps=max(1, round(self.steps / ratio)),
                         eval_every=max(1, round(self.eval_every / ratio)))
        return {f"batch {self.batch_size}": self, f"batch {self.large_batch}, as many epochs": epochs,
                f"batch {self.large_batch}, as many updates": replace(self, batch_size=self.large_batch)}
