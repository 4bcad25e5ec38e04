"""Experiments of the grokking chapter (book/grokking.ipynb), each with its quick and full size.

One :class:`GrokSetup` describes a run; its members are every (weight decay, seed) pair, trained
as one ensemble. :func:`setup`, :func:`phase_setups`, :func:`collapse_variants` and
:func:`lazy_rich_setup` give the chapter's runs at the current scale (``GENLIB_SCALE``).
"""
from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import asdict, dataclass, replace

from ..data import modular_arithmetic, quadratic_teacher
from ..history import History
from ..metrics import fourier_concentration, relative_change
from ..models import MLP, EmbeddingMLP, Transformer
from ..scale import by_scale
from ..sweep import sweep
from ..train import TrainConfig, train


@dataclass(frozen=True)
class GrokSetup:
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
    adam_beta2: float = 0.98
    adam_eps: float = 1e-8
    eval_every: int = 20


QUICK = GrokSetup()
FULL = GrokSetup(p=97, embed_dim=128, hidden=512, steps=4000, lr=1e-2, seeds=tuple(range(5)), eval_every=50)


def setup(**overrides) -> GrokSetup:
    """The setup for the current scale (``GENLIB_SCALE``), with fields overridden."""
    return replace(by_scale(QUICK, FULL), **overrides)


@dataclass(frozen=True)
class PhaseGrid:
    """Section 2: training fraction x weight decay, each fraction one ensemble."""

    fractions: tuple[float, ...]
    weight_decays: tuple[float, ...]
    seeds: tuple[int, ...]
    steps: int


PHASE_QUICK = PhaseGrid((0.3, 0.5, 0.7), (0.0, 0.3, 1.0, 3.0), seeds=(0, 1), steps=600)
PHASE_FULL = PhaseGrid((0.2, 0.3, 0.4, 0.5, 0.6, 0.7), (0.0, 0.1, 0.3, 1.0, 3.0), tuple(range(5)), 3000)


def phase_grid() -> PhaseGrid:
    """The phase-diagram grid for the current scale."""
    return by_scale(PHASE_QUICK, PHASE_FULL)


def phase_setups(grid: PhaseGrid, **overrides) -> list[GrokSetup]:
    """One setup per training fraction of the grid (all its weight decays and seeds as members)."""
    common = dict(weight_decays=grid.weight_decays, seeds=grid.seeds, steps=grid.steps) | overrides
    return [setup(train_fraction=f, **common) for f in grid.fractions]


# Section 3: no weight decay; Adam's epsilon tiny, as in Prieto et al., so it hides no gradient.
COLLAPSE_QUICK = dict(train_fraction=0.5, steps=1000)
COLLAPSE_FULL = dict(train_fraction=0.4, steps=30000, eval_every=200)


def collapse_variants() -> dict[str, GrokSetup]:
    """Softmax in float32 and float64, StableMax (the paper's lr and beta2) and ⊥Grad."""
    base = setup(weight_decays=(0.0,), adam_eps=1e-25, **by_scale(COLLAPSE_QUICK, COLLAPSE_FULL))
    return {
        "softmax, float32": base,
        "softmax, float64": replace(base, dtype="float64"),
        "StableMax": replace(base, loss="stablemax", lr=1e-2, adam_beta2=0.999),
        "⊥Grad": replace(base, perpendicular_grad=True),
    }


def build(s: GrokSetup):
    """The (data, model, config) triple of a setup; members ordered weight decay-major."""
    wds = [wd for wd in s.weight_decays for _ in s.seeds]
    seeds = [seed for _ in s.weight_decays for seed in s.seeds]
    data = modular_arithmetic(s.p, s.op, s.train_fraction, seeds, s.corrupt_fraction)
    if s.model == "transformer":
        model = Transformer(s.p, seeds, d_model=s.embed_dim, d_mlp=s.hidden)
    else:
        model = EmbeddingMLP(s.p, seeds, embed_dim=s.embed_dim, hidden=(s.hidden,))
    config = TrainConfig(
        steps=s.steps,
        lr=s.lr,
        weight_decay=wds,
        loss=s.loss,
        dtype=s.dtype,
        perpendicular_grad=s.perpendicular_grad,
        betas=(0.9, s.adam_beta2),
        eps=s.adam_eps,
        eval_every=s.eval_every,
    )
    return data, model, config


def _train_grok(config: dict) -> History:
    data, model, train_config = build(GrokSetup(**config))
    fourier = {"fourier": lambda m: fourier_concentration(m.token_embedding())}
    return train(model, data, train_config, extra_metrics=fourier)


def run_many(setups: list[GrokSetup], executor: Executor | None = None) -> list[History]:
    """Train (or read from the cache) several setups; an executor runs them in parallel."""
    return sweep(_train_grok, [asdict(s) for s in setups], name="grokking", executor=executor)


def run(s: GrokSetup) -> History:
    """Train (or read from the cache) every member of one setup."""
    return run_many([s])[0]


@dataclass(frozen=True)
class LazyRichSetup:
    """Kumar et al. 2024: y = (beta . x)^2 / 2 fitted by f = alpha * mean_i phi(w_i . x) with GD.

    The learning rate is ``eta * width / alpha**2``, so the function moves at the same speed for
    every alpha while the weights move as 1/alpha: large alpha is lazy (kernel-like) training.
    """

    dim: int = 30
    n_train: int = 165
    n_test: int = 1000
    width: int = 100
    steps: int = 3000
    eta: float = 1.0
    alphas: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    eval_every: int = 50


LAZY_QUICK = LazyRichSetup()
LAZY_FULL = LazyRichSetup(dim=100, n_train=550, width=500, steps=20000, seeds=tuple(range(5)), eval_every=200)


def lazy_rich_setup(**overrides) -> LazyRichSetup:
    """The lazy-vs-rich setup for the current scale, with fields overridden."""
    return replace(by_scale(LAZY_QUICK, LAZY_FULL), **overrides)


def _train_lazy_rich(config: dict) -> History:
    s = LazyRichSetup(**config)
    alphas = [a for a in s.alphas for _ in s.seeds]
    seeds = [seed for _ in s.alphas for seed in s.seeds]
    data = quadratic_teacher(s.dim, s.n_train, s.n_test, seeds)
    model = MLP(s.dim, (s.width,), 1, seeds, activation="quadratic", bias=False, readout="mean",
                init_scale=s.dim**0.5, output_scale=alphas, centered=True)
    config = TrainConfig(steps=s.steps, lr=[s.eta * s.width / a**2 for a in alphas], optimizer="sgd",
                         loss="mse", eval_every=s.eval_every)
    initial = [p.detach().clone() for p in model.parameters()]
    moved = {"weight_change": lambda m: relative_change(m, [w.to(p) for w, p in zip(initial, m.parameters())])}
    history = train(model, data, config, extra_metrics=moved)
    history.meta["target_variance"] = float(data.y[:, data.test_idx[0]].var())
    return history


def run_lazy_rich(s: LazyRichSetup) -> History:
    """Train (or read from the cache) one member per (alpha, seed); members alpha-major."""
    return sweep(_train_lazy_rich, [asdict(s)], name="lazy_rich")[0]
