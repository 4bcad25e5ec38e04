"""Experiments of the scale-transfer chapter (book/scale_transfer.ipynb): declared setups plus one
build each. Members of every run are step sizes x seeds.

- :class:`TransferSetup`: an MLP of one width and parameterization (SP or muP) on the digits,
  full-batch gradient descent on the squared error at a grid of step sizes (section 1);
  :class:`TransferGrid` gives one per (parameterization, width).
- :class:`CurvatureSetup`: the same network at one step size, its sharpness read during training
  in the coordinates where the step is one number (section 2); :class:`CurvatureGrid`.
- :class:`InstabilitySetup`: the one-layer transformer on modular addition trained by Adam at a
  grid of step sizes, with qk-layernorm and/or the z-loss as fixes (section 3);
  :class:`InstabilityGrid` gives one per (fix, width).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from ..core.data import DIGITS_IMAGES, TaskData, digits, modular_arithmetic
from ..core.models import MLP, PARAMETERIZATIONS, Ensemble, Transformer
from ..core.train import TrainConfig
from ..measures.curvature import preconditioned_top_eigenvalue
from ..running.experiment import Bounds, TrainedExperiment
from ..running.grid import Grid

POSITIVE = Bounds(0.0, low_open=True)
AT_LEAST_ONE = Bounds(1)
FIXES = ("none", "qk_norm", "z_loss", "both")


@dataclass(frozen=True)
class DigitsGD(TrainedExperiment):
    """Abstract recipe: a one-hidden-layer ReLU MLP of ``width`` units on the digits, in SP or muP
    (relative to SP at ``base_width``), trained by full-batch gradient descent on the squared error."""

    CHOICES = {"parameterization": PARAMETERIZATIONS}
    BOUNDS = {"width": AT_LEAST_ONE, "base_width": AT_LEAST_ONE, "n_train": Bounds(1, DIGITS_IMAGES - 1),
              "steps": AT_LEAST_ONE}

    parameterization: str = "sp"
    width: int = 32
    base_width: int = 32
    n_train: int = 256
    steps: int = 60
    seeds: tuple[int, ...] = (0, 1, 2)

    def task(self, lrs: list[float], **config: Any) -> tuple[TaskData, Ensemble, TrainConfig]:
        seeds = self.member_values("seed")
        data = digits(self.n_train, seeds=seeds)
        model = MLP(64, (self.width,), 10, seeds, parameterization=self.parameterization,
                    base_width=self.base_width)
        return data, model, TrainConfig(steps=self.steps, lr=lrs, optimizer="sgd", loss="mse", **config)


@dataclass(frozen=True)
class TransferSetup(DigitsGD):
    """Section 1: training loss after ``steps`` steps at every step size in ``lrs`` (the axis)."""

    FULL = dict(n_train=1000, steps=200, seeds=tuple(range(5)))
    AXES = {"lr": "lrs"}
    BOUNDS = {"lrs": POSITIVE}

    lrs: tuple[float, ...] = tuple(2.0**k for k in range(-5, 3))  # 1/32 ... 4, one octave apart

    def build(self):
        return self.task(self.member_values("lr"), eval_every=self.steps, eval_log_points=0)


@dataclass(frozen=True)
class TransferGrid(Grid):
    """One :class:`TransferSetup` per (parameterization, width)."""

    POINT = TransferSetup
    FULL = dict(widths=(32, 64, 128, 256, 512, 1024, 2048))

    widths: tuple[int, ...] = (32, 64, 128, 256, 512)
    parameterizations: tuple[str, ...] = PARAMETERIZATIONS

    def setups(self) -> dict[tuple[str, int], TransferSetup]:
        return {(p, w): replace(self.base, parameterization=p, width=w)
                for p in self.parameterizations for w in self.widths}


def effective_sharpness(model: MLP, data: TaskData, loss: str, iterations: int, seed: int = 0) -> torch.Tensor:
    """(S,) the top eigenvalue of M^1/2 H M^1/2, M the diagonal of the per-layer SGD step-size
    multipliers: the Hessian in the coordinates where gradient descent takes one step size eta, so
    that it is stable while this is below 2 / eta. With SP's multipliers (all 1) it is the sharpness."""
    multipliers = model.lr_multipliers("sgd")
    preconditioner = [torch.full_like(p, 1 / m) for p, m in zip(model.parameters(), multipliers)]
    return preconditioned_top_eigenvalue(model, data, loss, preconditioner, iterations=iterations, seed=seed)


@dataclass(frozen=True)
class CurvatureSetup(DigitsGD):
    """Section 2: one step size ``lr``; the (effective) sharpness read every ``eval_every`` steps by
    ``iterations`` steps of power iteration (20 read up to 13% low on the trained muP networks; 100
    stay within 2% of 400); members are seeds."""

    FULL = dict(n_train=1000, steps=300, iterations=200, seeds=tuple(range(5)))
    BOUNDS = {"lr": POSITIVE, "eval_every": AT_LEAST_ONE, "iterations": AT_LEAST_ONE}

    lr: float = 1.0
    eval_every: int = 15
    iterations: int = 100

    def build(self):
        return self.task([self.lr] * len(self.seeds), eval_every=self.eval_every, eval_log_points=0)

    def extra_metrics(self, data, model):
        return {"sharpness": lambda m: effective_sharpness(m, data, "mse", self.iterations).detach()}


@dataclass(frozen=True)
class CurvatureGrid(Grid):
    """One :class:`CurvatureSetup` per (parameterization, width), each parameterization at its own
    step size (``lrs``, in the order of ``parameterizations``)."""

    POINT = CurvatureSetup
    FULL = dict(widths=(32, 128, 512, 2048))

    widths: tuple[int, ...] = (32, 128, 512)
    parameterizations: tuple[str, ...] = PARAMETERIZATIONS
    lrs: tuple[float, ...] = (0.0625, 2.0)

    def setups(self) -> dict[tuple[str, int], CurvatureSetup]:
        return {(p, w): replace(self.base, parameterization=p, width=w, lr=lr)
                for p, lr in zip(self.parameterizations, self.lrs) for w in self.widths}


class ZLoss:
    """Wortsman et al. 2024's (after PaLM's) z-loss: ``weight`` x (log Z)^2, log Z the log-sum-exp of
    a member's output logits, averaged over its batch (a :class:`genlib.core.train.Penalty`)."""

    def __init__(self, weight: float):
        self.weight = weight

    def to(self, device, dtype) -> ZLoss:
        return self

    def __call__(self, outputs: torch.Tensor, idx: torch.Tensor, members: slice) -> torch.Tensor:
        return self.weight * torch.logsumexp(outputs, -1).pow(2).mean(-1)


@dataclass(frozen=True)
class InstabilitySetup(TrainedExperiment):
    """Section 3: the one-layer transformer (``d_model`` wide, 4 heads, MLP 4 x d_model) on a + b
    mod p, full-batch Adam without weight decay at every step size in ``lrs`` (the axis), with
    ``fix``: qk-layernorm, the z-loss (weight ``z_weight``), both or none. Records the largest
    attention logit and the mean log Z of the output logits over all p^2 pairs."""

    FULL = dict(p=59, steps=500, seeds=tuple(range(5)))
    AXES = {"lr": "lrs"}
    CHOICES = {"fix": FIXES}
    BOUNDS = {"lrs": POSITIVE, "d_model": Bounds(4), "p": Bounds(3), "steps": AT_LEAST_ONE,
              "z_weight": POSITIVE}

    fix: str = "none"
    d_model: int = 32
    p: int = 23
    steps: int = 50
    z_weight: float = 1e-4
    lrs: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3)
    seeds: tuple[int, ...] = (0, 1, 2)

    def build(self):
        if self.d_model % 4:
            raise ValueError(f"d_model must be divisible by the 4 heads; got {self.d_model!r}")
        seeds = self.member_values("seed")
        data = modular_arithmetic(self.p, train_fraction=0.5, seeds=seeds)
        model = Transformer(self.p, seeds, d_model=self.d_model, heads=4, d_mlp=4 * self.d_model,
                            qk_norm=self.fix in ("qk_norm", "both"))
        config = TrainConfig(steps=self.steps, lr=self.member_values("lr"), weight_decay=0.0,
                             eval_every=self.steps // 3 or 1, eval_log_points=0)
        return data, model, config

    def penalty(self, data, model):
        return ZLoss(self.z_weight) if self.fix in ("z_loss", "both") else None

    def extra_metrics(self, data, model):
        def pairs(m):
            x = data.x.to(next(m.parameters()).device)
            return x.expand(m.members, *x.shape)

        def attention(m):
            with torch.no_grad():
                return m.attention_logits(pairs(m)).abs().amax((1, 2, 3))

        def log_z(m):
            with torch.no_grad():
                return torch.logsumexp(m(pairs(m)), -1).mean(-1)

        return {"attention_logit": attention, "log_z": log_z}


@dataclass(frozen=True)
class InstabilityGrid(Grid):
    """One :class:`InstabilitySetup` per (fix, width)."""

    POINT = InstabilitySetup
    FULL = dict(widths=(32, 64, 128))

    fixes: tuple[str, ...] = ("none", "qk_norm", "z_loss")
    widths: tuple[int, ...] = (16, 32)

    def setups(self) -> dict[tuple[str, int], InstabilitySetup]:
        return {(f, w): replace(self.base, fix=f, d_model=w)
                for f in self.fixes for w in self.widths}
