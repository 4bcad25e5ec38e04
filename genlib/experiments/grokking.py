"""Experiments of the grokking chapter (book/grokking.ipynb): declared setups plus one build each.

- :class:`GrokSetup`: modular arithmetic learned by an embedding MLP (or a transformer); members
  are every (weight decay, seed) pair. Section 1, and the trainer widget.
- :class:`PhaseDiagram`: section 2's grid, one GrokSetup per training fraction.
- :class:`SoftmaxCollapseSetup`: section 3, no weight decay; :meth:`variants` gives the four ways of training.
- :class:`LazyRichSetup`: section 4, Kumar et al.'s regression; members are (output scale, seed).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..core.data import quadratic_teacher
from ..core.metrics import relative_change
from ..core.models import MLP
from ..core.train import TrainConfig
from ..running.experiment import TrainedExperiment
from ..running.grid import Grid
from .recipes import EMBEDDING_FOURIER, MODULAR_FULL, ModularRecipe


@dataclass(frozen=True)
class GrokSetup(ModularRecipe):
    """Section 1, and the trainer widget: the recipe's sizes; the embedding's Fourier concentration
    recorded at every evaluation."""

    FULL = MODULAR_FULL

    def build(self):
        return self.modular_task()

    def extra_metrics(self, data, model):
        return EMBEDDING_FOURIER


@dataclass(frozen=True)
class PhaseDiagram(Grid):
    """Section 2: training fraction x weight decay, every fraction one ensemble."""

    POINT = GrokSetup
    POINT_QUICK = dict(weight_decays=(0.0, 0.3, 1.0, 3.0), seeds=(0, 1), steps=600)
    POINT_FULL = dict(weight_decays=(0.0, 0.1, 0.3, 1.0, 3.0), steps=3000)
    FULL = dict(fractions=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7))

    fractions: tuple[float, ...] = (0.3, 0.5, 0.7)

    def setups(self) -> dict[float, GrokSetup]:
        """{training fraction: its GrokSetup}, all weight decays and seeds as its members."""
        return self.vary("train_fraction", self.fractions)


@dataclass(frozen=True)
class SoftmaxCollapseSetup(GrokSetup):
    """Section 3: no weight decay; Adam's epsilon tiny, as in Prieto et al., so it hides no gradient."""

    FULL = MODULAR_FULL | dict(train_fraction=0.4, steps=30000, eval_every=200)
    weight_decays: tuple[float, ...] = (0.0,)
    eps: float = 1e-25
    train_fraction: float = 0.5
    steps: int = 1000

    def variants(self) -> dict[str, SoftmaxCollapseSetup]:
        """Softmax in float32 and float64, StableMax (the paper's lr and beta2) and ⊥Grad."""
        return {
            "softmax, float32": self,
            "softmax, float64": replace(self, dtype="float64"),
            "StableMax": replace(self, loss="stablemax", lr=1e-2, betas=(0.9, 0.999)),
            "⊥Grad": replace(self, perpendicular_grad=True),
        }


@dataclass(frozen=True)
class LazyRichSetup(TrainedExperiment):
    """Kumar et al. 2024: y = (beta . x)^2 / 2 fitted by f = alpha * mean_i phi(w_i . x) with GD.

    The learning rate is ``eta * width / alpha**2``, so the function moves at the same speed for
    every alpha while the weights move as 1/alpha: large alpha is lazy (kernel-like) training.
    """

    FULL = dict(dim=100, n_train=550, width=500, steps=20000, seeds=tuple(range(5)), eval_every=200)
    AXES = {"output_scale": "alphas"}

    dim: int = 30
    n_train: int = 165
    n_test: int = 1000
    width: int = 100
    steps: int = 3000
    eta: float = 1.0
    alphas: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    eval_every: int = 50

    def build(self):
        alphas, seeds = self.member_values("output_scale"), self.member_values("seed")
        data = quadratic_teacher(self.dim, self.n_train, self.n_test, seeds)
        model = MLP(self.dim, (self.width,), 1, seeds, activation="quadratic", bias=False, readout="mean",
                    init_scale=self.dim**0.5, output_scale=alphas, centered=True)
        config = TrainConfig(steps=self.steps, lr=[self.eta * self.width / a**2 for a in alphas], optimizer="sgd",
                             loss="mse", eval_every=self.eval_every)
        return data, model, config

    def extra_metrics(self, data, model):
        initial = [p.detach().clone() for p in model.parameters()]
        return {"weight_change": lambda m: relative_change(m, [w.to(p) for w, p in zip(initial, m.parameters())])}

    def after_training(self, history, run):
        history.meta["target_variance"] = float(run.data.y[:, run.data.test_idx[0]].var())
        return history
