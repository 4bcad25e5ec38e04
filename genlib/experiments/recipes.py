"""Recipes that more than one chapter trains: abstract experiments holding shared fields and the
parts of a build. Concrete setups live in the chapters' files, which import from here, never from
each other.

- :class:`ModularRecipe`: modular arithmetic learned by an embedding MLP or a one-layer
  transformer under AdamW (the grokking chapter, and the circuits of the lazy-rich chapter).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core.data import OPERATIONS, TaskData, modular_arithmetic
from ..core.losses import LOSSES
from ..core.metrics import fourier_concentration
from ..core.models import EmbeddingMLP, Ensemble, Transformer
from ..core.train import DTYPES, TrainConfig
from ..running.experiment import TrainedExperiment

MODULAR_FULL = dict(p=97, embed_dim=128, hidden=512, steps=4000, lr=1e-2, seeds=tuple(range(5)), eval_every=50)
MODELS = ("mlp", "transformer")
# the embedding's Fourier concentration, recorded at every evaluation (extra_metrics)
EMBEDDING_FOURIER = {"fourier": lambda m: fourier_concentration(m.token_embedding())}


@dataclass(frozen=True)
class ModularRecipe(TrainedExperiment):
    """a op b mod p from a share of the table; members are (weight decay, seed) pairs. The sizes
    are those of the grokking chapter's first section."""

    AXES = {"weight_decay": "weight_decays"}
    CHOICES = {"model": MODELS, "op": OPERATIONS, "loss": LOSSES, "dtype": tuple(DTYPES)}

    p: int = 59
    op: str = "+"
    train_fraction: float = 0.4
    corrupt_fraction: float = 0.0
    model: str = "mlp"  # "mlp" (embedding MLP) or "transformer"
    embed_dim: int = 64
    hidden: int = 128
    steps: int = 800
    lr: float = 2e-2
    weight_decays: tuple[float, ...] = (1.0,)
    seeds: tuple[int, ...] = (0, 1, 2)
    loss: str = "cross_entropy"
    dtype: str = "float32"
    perpendicular_grad: bool = False
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    eval_every: int = 20
    eval_log_points: int = 30

    def modular_task(self) -> tuple[TaskData, Ensemble, TrainConfig]:
        """The data, the network and AdamW's settings of this recipe."""
        seeds = self.member_values("seed")
        data = modular_arithmetic(self.p, self.op, self.train_fraction, seeds, self.corrupt_fraction)
        if self.model == "transformer":
            model = Transformer(self.p, seeds, d_model=self.embed_dim, d_mlp=self.hidden)
        else:
            model = EmbeddingMLP(self.p, seeds, embed_dim=self.embed_dim, hidden=(self.hidden,))
        config = TrainConfig(steps=self.steps, lr=self.lr, weight_decay=self.member_values("weight_decay"),
                             loss=self.loss, dtype=self.dtype, perpendicular_grad=self.perpendicular_grad,
                             betas=self.betas, eps=self.eps, eval_every=self.eval_every,
                             eval_log_points=self.eval_log_points)
        return data, model, config
