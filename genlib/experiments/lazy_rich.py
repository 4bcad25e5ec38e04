"""Experiments of the lazy-and-rich chapter (book/lazy_rich.ipynb): declared setups plus one build each.

- :class:`KernelRegimeSetup`: digits parity (+1 even, -1 odd) fitted by a centred two-layer ReLU
  network f = alpha (g(w) - g(w0)) with full-batch gradient descent on the squared error, each
  member's step a fraction of the largest stable one for its own initial NTK; members are output
  scales alpha x seeds. The NTK is measured before and after training. :class:`WidthGrid` gives
  one per width.
- :class:`FeatureSetup`: the same network on a single-index target y = He_2(beta . x) on Gaussian
  inputs: does the first layer turn towards beta, and does the NTK align with the target?
- :class:`CircuitSetup`: grokking modular addition (a transformer, or the grokking chapter's
  embedding MLP), with Nanda et al.'s progress measures (embedding spectrum, restricted and
  excluded loss at the final network's key frequencies) at every evaluation, and Zhong et al.'s
  clock-or-pizza measures of the final network.
"""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.func import functional_call, jvp, vjp

from ..core._validate import check_float, check_int, check_seeds
from ..core.data import DIGITS_IMAGES, TaskData, digit_inputs, load_digits
from ..core.history import History
from ..core.metrics import relative_change
from ..core.models import MLP
from ..core.train import TrainConfig, predict
from ..measures.circuits import (
    all_pair_logits,
    distance_irrelevance,
    embedding_spectrum,
    excluded_loss,
    gradient_symmetricity,
    key_frequencies,
    logit_spectrum,
    restricted_loss,
)
from ..measures.ntk import empirical_ntk, kernel_alignment, kernel_regression, relative_kernel_change
from ..running.experiment import Bounds, TrainedExperiment, TrainedRun
from ..running.grid import Grid
from .recipes import EMBEDDING_FOURIER, MODULAR_FULL, ModularRecipe

# --- sections 1 and 2: lazy and rich training of a two-layer network ---


def digit_parity(n_train: int = 200, seeds=(0,), n_test: int | None = None) -> TaskData:
    """scikit-learn's digits with targets +1 (even digit) and -1 (odd), a regression task: inputs as
    :func:`genlib.core.data.digit_inputs` gives them (centred, norm sqrt(64)); per seed a random
    ``n_train`` images for training and ``n_test`` others (None: all the others) for testing."""
    check_int("n_train", n_train, low=1, high=DIGITS_IMAGES - 1)
    n_test = DIGITS_IMAGES - n_train if n_test is None else check_int("n_test", n_test, 1, DIGITS_IMAGES - n_train)
    pixels, labels = load_digits()
    y = torch.where(labels % 2 == 0, 1.0, -1.0)
    orders = [torch.randperm(DIGITS_IMAGES, generator=torch.Generator().manual_seed(s)) for s in check_seeds(seeds)]
    order = torch.stack(orders)  # (S, N): each member's own split
    return TaskData(x=digit_inputs("real", pixels), y=y.expand(len(orders), -1).clone(),
                    train_idx=order[:, :n_train].clone(), test_idx=order[:, n_train : n_train + n_test].clone(),
                    description=f"digits parity, {n_train} training images")


def single_index(dim: int = 20, n_train: int = 300, n_test: int = 1000, seeds=(0,)) -> TaskData:
    """Regression on y = He_2(beta . x) = (beta . x)^2 - 1, x ~ N(0, I_dim): one input pool shared
    by the members, a unit direction beta per seed (:func:`teacher_direction`)."""
    check_int("dim", dim, low=2)
    check_int("n_train", n_train, low=1)
    check_int("n_test", n_test, low=1)
    seeds = check_seeds(seeds)
    x = torch.randn(n_train + n_test, dim, generator=torch.Generator().manual_seed(2023))
    y = torch.stack([(x @ teacher_direction(dim, s)) ** 2 - 1 for s in seeds])
    idx = torch.arange(n_train + n_test).expand(len(seeds), -1)
    return TaskData(x=x, y=y, train_idx=idx[:, :n_train].clone(), test_idx=idx[:, n_train:].clone(),
                    description=f"single index He_2(beta . x), dim {dim}, {n_train} training points")


def teacher_direction(dim: int, seed: int) -> torch.Tensor:
    """(dim,) the unit direction beta of :func:`single_index` for one seed."""
    beta = torch.randn(dim, generator=torch.Generator().manual_seed(10_000 + seed))
    return beta / beta.norm()


def ntk_top_eigenvalue(model: MLP, x: torch.Tensor, iterations: int = 20, seed: int = 0) -> torch.Tensor:
    """(S,) each member's largest NTK eigenvalue on its inputs x (S, n, dim), by power iteration on
    v -> K v = J (J^T v): one backward and one forward-mode pass per product, never the (n, n)
    kernel itself (a one-output model). The error falls as (lambda_2 / lambda_1)^(2 iterations); the
    chapter's NTKs have lambda_2 / lambda_1 below 1/2."""
    check_int("iterations", iterations, low=1)
    like = next(model.parameters())
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def outputs(params: dict) -> torch.Tensor:
        return functional_call(model, params | buffers, (x.to(like),))[..., 0]  # (S, n)

    v = torch.randn(x.shape[:2], generator=torch.Generator().manual_seed(seed)).to(like)
    top = torch.zeros(len(v), dtype=like.dtype, device=like.device)
    was_training = model.training
    model.eval()
    try:
        _, pullback = vjp(outputs, params)
        for _ in range(iterations):
            v = v / v.norm(dim=1, keepdim=True)
            kv = jvp(outputs, (params,), pullback(v))[1]  # (S, n)
            top = (v * kv).sum(1)  # Rayleigh quotient per member
            v = kv
    finally:
        model.train(was_training)
    return top


def kernel_gradient_descent(k_train: torch.Tensor, k_cross: torch.Tensor, y_train: torch.Tensor,
                            lr: torch.Tensor, steps: int) -> torch.Tensor:
    """(S, N_test) predictions of the linearized network after ``steps`` of full-batch gradient
    descent at step sizes lr (S,) on the mean squared error, from the zero function: kernel
    regression with the kernel K, stopped where gradient descent stops (Lee et al. 2019),

        f_T(x) = K(x, X) K^-1 (I - (I - 2 lr K / n)^T) y,

    through the eigendecomposition of K(train, train); T -> infinity gives ridgeless kernel
    regression (:func:`genlib.measures.ntk.kernel_regression`)."""
    check_int("steps", steps, low=0)
    n = k_train.shape[-1]
    values, vectors = torch.linalg.eigh(k_train.to(torch.float64))  # (S, n), (S, n, n)
    rate = 2 * lr.to(torch.float64).view(-1, 1) * values.clamp_min(0) / n  # per eigendirection and step
    # (1 - (1 - rate)^T) / lambda, and its limit 2 lr T / n as lambda -> 0
    filtered = torch.where(rate > 1e-12, (1 - (1 - rate) ** steps) / values.clamp_min(1e-300),
                           2 * lr.to(torch.float64).view(-1, 1) * steps / n)
    coefficients = vectors @ (filtered.unsqueeze(-1) * (vectors.transpose(1, 2) @ y_train.to(torch.float64)[..., None]))
    return (k_cross.to(torch.float64) @ coefficients)[..., 0]


@dataclass(frozen=True)
class KernelRecipe(TrainedExperiment):
    """Chizat et al. 2019: f_alpha = alpha (g(w) - g(w0)), g a two-layer ReLU network, trained by
    full-batch gradient descent on the squared error at lr = lr_fraction * n / lambda_max(K0), K0
    the member's own initial NTK on its training inputs (the NTK of f_alpha is alpha^2 that of g,
    so lr ~ 1/alpha^2: the function starts moving at the same speed for every alpha).

    Members are output scales x seeds. Recorded while training: the relative weight change,
    "probe_kernel_change", the relative change of the NTK on ``kernel_probe`` inputs (half
    training, half test: a small kernel, cheap enough to read at every evaluation), and train and
    test accuracy (the sign of the output). At the end (arrays, one value per member):
    "kernel_change" on all training inputs and the first ``kernel_test`` test inputs; on those
    test inputs, the network's relative distance and sign agreement with the linearized network
    (:func:`kernel_gradient_descent` with K0, the same steps), with ridgeless kernel regression
    with K0 ("limit_") and with ridgeless kernel regression with the final NTK ("final_kernel_":
    where Atanasov et al. 2022 find rich networks end), and their test losses and accuracies; the
    centred kernel-target alignment of K0 and of the final NTK on the training inputs; the step
    sizes. The linearized network needs K0 on the test inputs too: it is computed before training
    (:meth:`before_training`).
    """

    AXES = {"output_scale": "alphas"}
    BOUNDS = {"lr_fraction": Bounds(0.0, 1.0, low_open=True, high_open=True)}

    n_train: int = 200
    n_test: int | None = 800  # None: every image not used for training
    kernel_test: int = 200
    kernel_probe: int = 64
    width: int = 128
    alphas: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)
    lr_fraction: float = 0.3  # of the largest stable step, n / lambda_max(K0)
    steps: int = 500
    eval_every: int = 50
    eval_log_points: int = 6
    seeds: tuple[int, ...] = (0, 1, 2)

    @abstractmethod
    def task(self) -> TaskData:
        """The regression task, one split per member."""

    def build(self):
        data = self.task()
        model = MLP(data.x.shape[-1], (self.width,), 1, self.member_values("seed"),
                    output_scale=self.member_values("output_scale"), centered=True)
        top = ntk_top_eigenvalue(model, data.inputs(data.train_idx))  # (S,) lambda_max(K0) on the training inputs
        config = TrainConfig(steps=self.steps, lr=[self.lr_fraction * self.n_train / float(t) for t in top],
                             optimizer="sgd", loss="mse", eval_every=self.eval_every,
                             eval_log_points=self.eval_log_points)
        return data, model, config

    def _kernel_inputs(self, data: TaskData) -> torch.Tensor:
        """(S, n_train + kernel_test, dim): each member's training inputs, then its first test inputs."""
        return data.inputs(torch.cat([data.train_idx, data.test_idx[:, : self.kernel_test]], 1))

    def _probe_inputs(self, data: TaskData) -> torch.Tensor:
        half = self.kernel_probe // 2
        return data.inputs(torch.cat([data.train_idx[:, :half], data.test_idx[:, :half]], 1))

    def extra_metrics(self, data, model):
        initial = [p.detach().clone() for p in model.parameters()]
        probe = self._probe_inputs(data)
        probe_k0 = empirical_ntk(model, probe)
        return {
            "weight_change": lambda m: relative_change(m, [w.to(p) for w, p in zip(initial, m.parameters())]),
            "probe_kernel_change": lambda m: relative_kernel_change(probe_k0, empirical_ntk(m, probe).to(probe_k0)),
        }

    def before_training(self, data, model) -> torch.Tensor:
        """K0 on the training and kernel-test inputs (the network trains in place)."""
        return empirical_ntk(model, self._kernel_inputs(data)).cpu()

    def after_training(self, history: History, run: TrainedRun) -> History:
        k_end = empirical_ntk(run.model, self._kernel_inputs(run.data)).cpu()
        return self._kernel_measures(history, run.data.to("cpu"), run.model, run.before, k_end, run.config)

    def _kernel_measures(self, history: History, data: TaskData, model, k0: torch.Tensor, k_end: torch.Tensor,
                         config) -> History:
        n = self.n_train
        y_train = data.y.gather(1, data.train_idx).double()
        y_test = data.y.gather(1, data.test_idx[:, : self.kernel_test]).double()
        lr = torch.tensor(config.lr, dtype=torch.float64)
        linear = kernel_gradient_descent(k0[:, :n, :n], k0[:, n:, :n], y_train, lr, self.steps)
        limit = kernel_regression(k0[:, :n, :n].double(), k0[:, n:, :n].double(), y_train)
        final = kernel_regression(k_end[:, :n, :n].double(), k_end[:, n:, :n].double(), y_train)  # Atanasov et al.
        net = predict(model, data.inputs(data.test_idx[:, : self.kernel_test]))[..., 0].double().cpu()

        def distance(reference: torch.Tensor) -> np.ndarray:
            return ((net - reference).norm(dim=1) / reference.norm(dim=1)).numpy()

        def agreement(reference: torch.Tensor) -> np.ndarray:
            return (net.sign() == reference.sign()).double().mean(1).numpy()

        arrays = {
            "kernel_change": relative_kernel_change(k0, k_end).numpy(),
            "linear_distance": distance(linear), "linear_agreement": agreement(linear),
            "limit_distance": distance(limit), "limit_agreement": agreement(limit),
            "final_kernel_distance": distance(final), "final_kernel_agreement": agreement(final),
            "linear_test_acc": (linear.sign() == y_test.sign()).double().mean(1).numpy(),
            "limit_test_acc": (limit.sign() == y_test.sign()).double().mean(1).numpy(),
            "linear_test_loss": (linear - y_test).pow(2).mean(1).numpy(),
            "limit_test_loss": (limit - y_test).pow(2).mean(1).numpy(),
            "final_kernel_test_acc": (final.sign() == y_test.sign()).double().mean(1).numpy(),
            "final_kernel_test_loss": (final - y_test).pow(2).mean(1).numpy(),
            "net_test_loss": (net - y_test).pow(2).mean(1).numpy(),  # on the same test inputs
            "alignment_start": kernel_alignment(k0[:, :n, :n], y_train.to(k0), centered=True).numpy(),
            "alignment_end": kernel_alignment(k_end[:, :n, :n], y_train.to(k_end), centered=True).numpy(),
            "lr": lr.numpy(),
            "top_eigenvalue": torch.linalg.eigvalsh(k0[:, :n, :n].double())[:, -1].numpy(),  # exact, for lr
        }
        return replace(history, arrays=history.arrays | arrays)


@dataclass(frozen=True)
class KernelRegimeSetup(KernelRecipe):
    """Sections 1: digits parity; train and test accuracy read as the sign of the output."""

    FULL = dict(n_train=1000, n_test=None, kernel_test=500, steps=4000, eval_every=200, seeds=tuple(range(5)))

    def task(self) -> TaskData:
        return digit_parity(self.n_train, self.member_values("seed"), self.n_test)

    def extra_metrics(self, data, model):
        def accuracy(idx: torch.Tensor):
            x, y = data.batch(idx)
            return lambda m: (predict(m, x)[..., 0].sign().cpu() == y.sign()).float().mean(1)

        return super().extra_metrics(data, model) | {
            "train_acc": accuracy(data.train_idx),  # the sign of the output: a class
            "test_acc": accuracy(data.test_idx),
        }


@dataclass(frozen=True)
class WidthGrid(Grid):
    """One :class:`KernelRegimeSetup` per hidden width, every one with all the output scales."""

    POINT = KernelRegimeSetup
    FULL = dict(widths=(128, 512, 2048))

    widths: tuple[int, ...] = (32, 128, 512)

    def setups(self) -> dict[int, KernelRegimeSetup]:
        """{width: its setup}."""
        return self.vary("width", self.widths)


@dataclass(frozen=True)
class FeatureSetup(KernelRecipe):
    """Section 2: the same network and training on a single-index target y = He_2(beta . x), x ~
    N(0, I_dim). Also read at every evaluation: the first layer's alignment with beta
    (:func:`feature_alignment`); the loss is the measure (a regression target: no accuracy)."""

    FULL = dict(dim=50, n_train=1000, n_test=2000, kernel_test=500, width=512, steps=4000, eval_every=200,
                seeds=tuple(range(5)))

    dim: int = 20
    n_test: int = 1000
    n_train: int = 300
    width: int = 256

    def task(self) -> TaskData:
        return single_index(self.dim, self.n_train, self.n_test, self.member_values("seed"))

    def extra_metrics(self, data, model):
        betas = torch.stack([teacher_direction(self.dim, s) for s in self.member_values("seed")])  # (S, dim)

        def alignment(m) -> torch.Tensor:
            w = m.weights[0]  # (S, dim, width): unit i's incoming weights are w[s, :, i]
            return feature_alignment(w, betas.to(w))

        return super().extra_metrics(data, model) | {"feature_alignment": alignment}


def feature_alignment(w: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """(S,) share of a first layer's squared weights that lies along a unit direction: w (S, dim,
    width) the incoming weights of each unit, beta (S, dim); ||W^T beta||^2 / ||W||_F^2, which is
    about 1/dim for random weights and 1 when every unit points along beta."""
    along = torch.einsum("sdi,sd->si", w, beta).pow(2).sum(1)
    return along / w.pow(2).sum((1, 2))


# --- section 3: what the grokking network computes ---


@dataclass(frozen=True)
class CircuitRecipe(ModularRecipe):
    """Nanda et al. 2023: a network groks a + b mod p under AdamW with weight decay.

    Besides the embedding's Fourier concentration, every evaluation keeps the logits of all p^2
    inputs (in memory only: S p^3 floats each) and the embedding's power per frequency; once trained, the key
    frequencies are read off the final network's logits (the fewest that carry ``key_share`` of
    their Fourier power, :func:`strongest_frequencies`), and the restricted loss (on the held-out
    inputs, comparable with the test loss) and the excluded loss (on the training inputs) are
    computed at every evaluation with them, as metrics. Arrays: the key frequencies (S, p//2),
    0-padded; the embedding spectrum at every evaluation (S, T, p//2); the final logits' spectrum;
    the final network's gradient symmetricity and distance irrelevance, which say clock or pizza
    (Zhong et al. 2023).
    """

    eval_log_points: int = 10
    key_share: float = 0.98  # key frequencies: the fewest with this share of the final logits' power
    symmetricity_samples: int = 100

    def extra_metrics(self, data, model):
        return EMBEDDING_FOURIER | {
            "spectrum": lambda m: {f"{k}": v for k, v in enumerate(embedding_spectrum(m.token_embedding()).T, 1)}}

    def kept(self, data, model):
        return {"logits": lambda m: all_pair_logits(m).detach().to(torch.float32).cpu()}  # (S, p, p, p)

    def after_training(self, history: History, run: TrainedRun) -> History:
        data, model, kept = run.data.to("cpu"), run.model, run.kept["logits"]
        keys = strongest_frequencies(logit_spectrum(kept[-1]), self.key_share)  # the final network's
        restricted = np.stack([restricted_loss(lg, data, keys, inputs="test").numpy() for lg in kept])  # (T, S)
        excluded = np.stack([excluded_loss(lg, data, keys).numpy() for lg in kept])
        spectrum_names = [f"spectrum/{k}" for k in range(1, self.p // 2 + 1)]
        spectra = np.stack([history.metrics.pop(n) for n in spectrum_names], -1)  # (T, S, K)
        model = model.to("cpu", torch.float32)
        arrays = {
            "key_frequencies": np.array([row + [0] * (self.p // 2 - len(row)) for row in keys]),  # 0: none
            "embedding_spectrum": spectra.transpose(1, 0, 2),  # (S, T, K)
            "logit_spectrum": logit_spectrum(kept[-1]).numpy(),
            "gradient_symmetricity": gradient_symmetricity(model, self.symmetricity_samples).numpy(),
            "distance_irrelevance": distance_irrelevance(kept[-1]).numpy(),
        }
        metrics = history.metrics | {"restricted_loss": restricted, "excluded_loss": excluded}
        return replace(history, metrics=metrics, arrays=history.arrays | arrays)


@dataclass(frozen=True)
class CircuitSetup(CircuitRecipe):
    """Section 3: a one-layer transformer."""

    FULL = dict(p=113, train_fraction=0.3, embed_dim=128, hidden=512, lr=1e-3, steps=20000, eval_every=400,
                seeds=tuple(range(5)))  # the kept logits: 113^3 x 5 floats (29 MB) per evaluation, ~1.8 GB

    model: str = "transformer"
    hidden: int = 256
    lr: float = 1e-2
    steps: int = 500

    def build(self):
        return self.modular_task()


@dataclass(frozen=True)
class MLPCircuitSetup(CircuitRecipe):
    """The grokking chapter's embedding MLP at its own sizes (the recipe's), measured as
    :class:`CircuitSetup` measures the transformer: clock or pizza?"""

    FULL = MODULAR_FULL

    def build(self):
        return self.modular_task()


def strongest_frequencies(spectrum: torch.Tensor, share: float) -> list[list[int]]:
    """Per member, the fewest frequencies (1-based, strongest first) whose power in an (S, p//2)
    spectrum adds up to at least ``share`` of its total."""
    check_float("share", share, 0.0, 1.0, low_open=True)
    order = key_frequencies(spectrum, spectrum.shape[1])  # (S, p//2), strongest first
    power = spectrum.gather(1, order - 1)
    cumulative = power.cumsum(1) / power.sum(1, keepdim=True)
    counts = (cumulative < share - 1e-12).sum(1) + 1
    return [order[s, : int(c)].tolist() for s, c in enumerate(counts)]
