"""One training loop for every chapter: ensembles, full batch or minibatch, AdamW or SGD.

    data -> model -> train(model, data, TrainConfig(...)) -> History

Each member averages the loss over its own examples; the members' losses are summed, so their
gradients stay independent. Evaluation runs on a schedule (every ``eval_every`` steps plus
log-spaced early steps, for log-scaled plots) over the train, test and any extra subsets.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from typing import Protocol

import numpy as np
import torch
from torch.func import functional_call
from tqdm.auto import tqdm

from ._validate import check_choice, check_float, check_int
from .data import TaskData
from .environment import show_progress
from .history import History
from .losses import LOSSES, per_example_loss, smoothed_cross_entropy, soft_cross_entropy
from .memory import keep_freed_memory
from .metrics import accuracy, parameter_norm, softmax_collapse
from .models import Ensemble
from .optim import OPTIMIZERS, EnsembleOptimizer, broadcast_per_member

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class TrainConfig:
    """How to train. ``lr``, ``weight_decay`` and ``label_smoothing`` take one value or one per
    member. Checked when built: a bad value raises a ValueError that names it.

    ``label_smoothing`` eps (cross-entropy only, in [0, 1)) smooths the training objective to
    (1 - eps) CE(y) + eps * mean over classes of -log p_c (Szegedy et al. 2016); the recorded train
    and test losses stay the plain, unsmoothed loss. Soft targets in the data
    (``TaskData.soft_targets``) replace the labels in the training objective the same way.
    """

    steps: int = 1000
    lr: float | Sequence[float] = 1e-3
    weight_decay: float | Sequence[float] = 0.0
    optimizer: str = "adamw"  # "adamw" | "sgd"
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    momentum: float = 0.0
    loss: str = "cross_entropy"  # "cross_entropy" | "stablemax" | "mse"
    label_smoothing: float | Sequence[float] = 0.0  # training objective only; cross_entropy only
    perpendicular_grad: bool = False  # ⊥Grad (Prieto et al. 2025)
    sam_radius: float = 0.0  # > 0: sharpness-aware minimization (Foret et al. 2021) with this rho
    lr_milestones: tuple[int, ...] = ()  # steps after which every lr is multiplied by lr_gamma
    lr_gamma: float = 0.1
    dtype: str = "float32"  # "float32" | "float64"
    batch_size: int | None = None  # None: full batch
    eval_every: int = 10
    eval_log_points: int = 30  # extra log-spaced evaluations in the early steps
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "mps"
    progress: bool | None = None  # None: on unless $GENLIB_PROGRESS=0
    seed: int = 0  # minibatch order
    member_block: int | None = None  # members per forward/backward pass; None: see member_block()

    def __post_init__(self) -> None:
        check_int("steps", self.steps, low=1)
        for name in ("lr", "weight_decay"):  # one number, or one per member (counted in train)
            values = getattr(self, name)
            for v in values if isinstance(values, (list, tuple)) else [values]:
                check_float(name, v, low=0.0, low_open=name == "lr")
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("loss", self.loss, LOSSES)
        smoothing = self.label_smoothing
        for v in smoothing if isinstance(smoothing, (list, tuple)) else [smoothing]:
            check_float("label_smoothing", v, 0.0, 1.0, high_open=True)
            if v > 0 and self.loss != "cross_entropy":
                raise ValueError(f"label_smoothing must be 0 with loss={self.loss!r} (it smooths cross_entropy "
                                 f"only); got {smoothing!r}")
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("device", self.device, ("auto", "cpu", "cuda", "mps"))
        check_float("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_float("sam_radius", self.sam_radius, low=0.0)
        for milestone in self.lr_milestones:
            check_int("lr_milestones", milestone, low=1)  # one past the last step never fires
        check_float("lr_gamma", self.lr_gamma, 0.0, low_open=True)
        check_int("eval_every", self.eval_every, low=1)
        check_int("eval_log_points", self.eval_log_points, low=0)
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, low=1)
        if self.member_block is not None:
            check_int("member_block", self.member_block, low=1)

    def per_member(self, members: int) -> tuple[list[float], list[float]]:
        """(learning rates, weight decays), one per member (their values were checked when built)."""
        return _broadcast("lr", self.lr, members), _broadcast("weight_decay", self.weight_decay, members)

    def smoothing_per_member(self, members: int) -> list[float]:
        """Label smoothing, one value per member."""
        return _broadcast("label_smoothing", self.label_smoothing, members)


def _broadcast(name: str, value: float | Sequence[float], members: int) -> list[float]:
    """One number per member: a number repeated, or a sequence of exactly ``members`` numbers."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * members
    if len(values) != members:
        raise ValueError(f"{name} must be a number or a sequence of {members} numbers (one per member); got {value!r}")
    return [float(v) for v in values]


def pick_device(device: str = "auto") -> torch.device:
    """CUDA, then Apple's MPS, then the CPU, unless a device is named."""
    check_choice("device", device, ("auto", "cpu", "cuda", "mps"))
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def eval_schedule(steps: int, every: int, log_points: int) -> np.ndarray:
    """Steps at which to evaluate: 0, every ``every``-th, log-spaced early points and the last."""
    linear = np.arange(0, steps + 1, every)
    early = np.unique(np.geomspace(1, steps, log_points).round().astype(int)) if log_points else []
    return np.unique(np.concatenate([[0, steps], linear, early])).astype(int)


ACTIVATION_BUDGET = 4 * 2**20  # bytes of one block's widest activation on a CPU (measured best)


def member_block(model: Ensemble, batch: int, device: torch.device, requested: int | None = None) -> int:
    """How many members to push through one forward/backward pass.

    On a GPU, all of them: one batched computation. On a CPU a step over large ensembles is bound
    by memory traffic, so members go in blocks whose widest activation (batch x widest layer)
    stays near the cache (~4 MB); the optimizer step stays batched over all members.
    """
    if requested is not None:
        return min(requested, model.members)
    if device.type != "cpu":
        return model.members
    widest = max(p.shape[-1] for p in model.parameters())
    per_member = batch * widest * 4
    return max(1, min(model.members, ACTIVATION_BUDGET // per_member))


class Penalty(Protocol):
    """A term added to each member's loss, computed from its outputs on the batch (e.g. ELR)."""

    def __call__(self, outputs: torch.Tensor, idx: torch.Tensor, members: slice) -> torch.Tensor:
        """(S_block,) penalties for outputs (S_block, B, C) on examples idx (S_block, B)."""

    def to(self, device: torch.device, dtype: torch.dtype) -> Penalty: ...


def ensemble_backward(
    model: Ensemble,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str,
    block: int,
    penalty: Penalty | None = None,
    idx: torch.Tensor | None = None,
    label_smoothing: torch.Tensor | None = None,
    soft_targets: torch.Tensor | None = None,
) -> None:
    """Accumulate the gradient of every member's mean loss (plus penalty), ``block`` members per pass.

    Members share no parameters, so running them in blocks gives the same gradients as one pass.
    ``label_smoothing`` (S,) smooths the cross-entropy per member; ``soft_targets`` (S, B, C)
    replaces the labels y by target probabilities (cross-entropy only).
    """

    def objective(outputs: torch.Tensor, part: slice) -> torch.Tensor:  # (S_block, B)
        if soft_targets is not None:
            return soft_cross_entropy(outputs, soft_targets[part])
        if label_smoothing is not None:
            return smoothed_cross_entropy(outputs, y[part], label_smoothing[part])
        return per_example_loss(outputs, y[part], loss)

    def backward(outputs: torch.Tensor, part: slice) -> None:
        total = objective(outputs, part).mean(-1)
        if penalty is not None:
            total = total + penalty(outputs, idx[part], part)
        total.sum().backward()

    if block >= model.members:
        backward(model(x), slice(None))
        return
    params = dict(model.named_parameters())
    # Each block's parameters are leaves of their own (views of the ensemble's), and their gradients
    # are written into the ensemble's gradient block by block: differentiating through the views
    # instead would make every block's backward pass fill a gradient the size of all S members.
    # (A parameter that no block gives a gradient keeps none, as after one pass.)
    grads = {k: torch.zeros_like(v) if v.grad is None else v.grad for k, v in params.items() if v.requires_grad}
    reached = set()
    for start in range(0, model.members, block):
        part = slice(start, start + block)
        state = model.member_state(part, leaves=True)
        backward(functional_call(model, state, (x[part],)), part)
        for k in params:
            leaf = state[k]
            if leaf.grad is not None:
                grads[k][part].add_(leaf.grad)
                reached.add(k)
    for k in reached:
        params[k].grad = grads[k]


@contextmanager
def denormals_flushed():
    """Inside, the CPU treats denormal floats (magnitudes below about 1e-38 in float32) as zero:
    x86 CPUs compute on them many times slower (15x for an elementwise product on this project's
    CPU), and a run whose softmax collapses (grokking chapter) makes many. Whatever the setting
    was, it is off (torch's default) after. The grokking chapter's runs came out the same bit for
    bit with and without it, and its collapsing run took 5.3 s instead of 9.2."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


@contextmanager
def evaluation_mode(model: Ensemble):
    """Evaluation mode (e.g. no dropout) and no gradients inside; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def predict(model: Ensemble, x: torch.Tensor) -> torch.Tensor:
    """Outputs (S, B, C) for inputs x (S, B, ...), moved to the model's device and dtype."""
    with evaluation_mode(model):
        return model(x.to(next(model.parameters())))


def outputs_in_blocks(model: Ensemble, x: torch.Tensor, block: int) -> torch.Tensor:
    """model(x), computed ``block`` members at a time: the same numbers (members share nothing), and
    on a CPU faster for large evaluation sets, whose activations for all members at once far
    exceed the cache (Prieto et al.'s MLP, 8 members, 7,662 test pairs: 38 ms instead of 63)."""
    check_int("block", block, low=1)
    if block >= model.members:
        return model(x)
    parts = (slice(start, start + block) for start in range(0, model.members, block))
    return torch.cat([functional_call(model, model.member_state(part), (x[part],)) for part in parts])


def evaluate(model: Ensemble, data: TaskData, loss: str) -> dict[str, torch.Tensor]:
    """Loss (and accuracy for classification) on every evaluation set, one value per member."""
    with evaluation_mode(model):
        return _evaluate(model, data, loss)


def _evaluate(model: Ensemble, data: TaskData, loss: str) -> dict[str, torch.Tensor]:
    out = {}
    classify = data.num_classes is not None
    device = next(model.parameters()).device
    for name, idx in data.eval_sets().items():
        x, labels = data.batch(idx)
        outputs = outputs_in_blocks(model, x, member_block(model, idx.shape[1], device))  # (S, n, C)
        out[f"{name}_loss"] = per_example_loss(outputs, labels, loss).mean(-1)
        if classify:
            out[f"{name}_acc"] = accuracy(outputs, labels)
            if name == "train":
                out["collapse"] = softmax_collapse(outputs, labels, loss)
    out["weight_norm"] = parameter_norm(model)
    return out


def check_sizes(model: Ensemble, data: TaskData) -> None:
    """Raise a ValueError naming what differs if the model does not fit the data's sizes."""
    if model.members != data.members:
        raise ValueError(f"data must have one label row per model member ({model.members}); got {data.members}")
    x = data.x[0] if data.per_member_inputs else data.x
    if model.vocab is not None:
        if x.is_floating_point() or int(x.max()) >= model.vocab:
            raise ValueError(f"data.x must hold token ids below the model's vocabulary ({model.vocab}); "
                             f"got {'floats' if x.is_floating_point() else f'ids up to {int(x.max())}'}")
    elif x.shape[-1] != model.in_dim:
        raise ValueError(f"data.x must have the model's in_dim ({model.in_dim}) features; got {x.shape[-1]}")
    if data.num_classes is not None:
        if model.out_dim != data.num_classes:
            raise ValueError(f"the model's outputs ({model.out_dim}) must equal data.num_classes; "
                             f"got {data.num_classes}")
    else:
        targets = 1 if data.y.dim() == 2 else data.y.shape[-1]
        if model.out_dim != targets:
            raise ValueError(f"the model's outputs ({model.out_dim}) must equal the targets per example; got {targets}")
    soft = data.soft_targets
    if soft is not None:
        expected = (*data.y.shape[:2], model.out_dim)
        if data.num_classes is None or not isinstance(soft, torch.Tensor) or tuple(soft.shape) != expected:
            shape = tuple(soft.shape) if isinstance(soft, torch.Tensor) else type(soft).__name__
            raise ValueError(f"data.soft_targets must be probabilities (S, N, C) = {expected} for a classification "
                             f"task; got {shape}{'' if data.num_classes else ' with num_classes=None'}")
        sums = soft.sum(-1)
        if soft.min() < 0 or (sums - 1).abs().max() > 1e-3:
            raise ValueError(f"data.soft_targets must be probabilities (entries >= 0, each row summing to 1); got "
                             f"entries from {float(soft.min()):.3g}, row sums {float(sums.min()):.4g} to "
                             f"{float(sums.max()):.4g}")


class _Recorder:
    """Evaluates the model on the schedule and keeps every value, one (S,) array per metric."""

    def __init__(self, model: Ensemble, data: TaskData, loss: str, extra_metrics: dict, bar,
                 observe: Callable[[Ensemble], None] | None = None):
        self.model, self.data, self.loss, self.extra, self.bar = model, data, loss, extra_metrics, bar
        self.observe = observe
        self.steps: list[int] = []
        self.records: dict[str, list[np.ndarray]] = {}

    def __call__(self, step: int) -> None:
        values = evaluate(self.model, self.data, self.loss)
        for name, fn in self.extra.items():
            value = fn(self.model)  # (S,), or {key: (S,)} recorded as "name/key" (one pass, several measures)
            measured = {f"{name}/{k}": v for k, v in value.items()} if isinstance(value, dict) else {name: value}
            clash = sorted(set(measured) & set(values))
            if clash:
                raise ValueError(f"extra_metrics must not replace a measure recorded already; got {clash}")
            values.update(measured)
        if self.observe is not None:
            self.observe(self.model)
        for name, v in values.items():
            self.records.setdefault(name, []).append(v.detach().float().cpu().numpy())
        self.steps.append(step)
        self.bar.update(step - self.bar.n)
        if "test_acc" in values:
            self.bar.set_postfix(train=f"{values['train_acc'].median():.2f}", test=f"{values['test_acc'].median():.2f}")

    def metrics(self) -> dict[str, np.ndarray]:
        return {k: np.stack(v) for k, v in self.records.items()}


def train(
    model: Ensemble,
    data: TaskData,
    config: TrainConfig | None = None,
    members: list[dict] | None = None,
    extra_metrics: dict[str, Callable[[Ensemble], torch.Tensor]] | None = None,
    penalty: Penalty | None = None,
    observe: Callable[[Ensemble], None] | None = None,
) -> History:
    """Train every member of ``model`` on its own split of ``data``; return the History.

    ``members`` labels each member (e.g. ``{"weight_decay": 1.0, "seed": 2}``) for
    ``History.select``; ``penalty`` adds a per-member term to the loss (see :class:`Penalty`).
    The model is trained in place, on the chosen device and dtype. The first call in a process asks
    malloc to keep freed memory for the next step (:func:`~genlib.core.memory.keep_freed_memory`).
    """
    config = config or TrainConfig()
    if not isinstance(model, Ensemble):
        raise ValueError(f"model must be a genlib.core.models.Ensemble; got {type(model).__name__}")
    check_sizes(model, data)
    if members is not None and len(members) != model.members:
        raise ValueError(f"members must give one label dict per model member ({model.members}); got {len(members)}")
    lr, wd = config.per_member(model.members)
    smoothing = config.smoothing_per_member(model.members)
    if data.soft_targets is not None and (config.loss != "cross_entropy" or any(smoothing)):
        raise ValueError(f"data.soft_targets must be trained with loss='cross_entropy' and no label_smoothing; "
                         f"got loss={config.loss!r}, label_smoothing={config.label_smoothing!r}")
    device = pick_device(config.device)
    if device.type == "mps" and config.dtype == "float64":
        device = torch.device("cpu")  # MPS has no float64
    dtype = DTYPES[config.dtype]
    model.to(device=device, dtype=dtype)
    data = data.to(device, dtype)
    if penalty is not None:
        penalty = penalty.to(device, dtype)
    optimizer = EnsembleOptimizer(
        list(model.parameters()), config.optimizer, lr=torch.tensor(lr, device=device, dtype=dtype),
        weight_decay=torch.tensor(wd, device=device, dtype=dtype), betas=config.betas, eps=config.eps,
        momentum=config.momentum, perpendicular=config.perpendicular_grad,
    )
    block = member_block(model, config.batch_size or data.train_idx.shape[1], device, config.member_block)
    bar = tqdm(total=config.steps, disable=not show_progress(config.progress), desc="training", unit="step",
               leave=False)
    record = _Recorder(model, data, config.loss, extra_metrics or {}, bar, observe)
    keep_freed_memory()
    started = time.perf_counter()
    smooth = torch.tensor(smoothing, device=device, dtype=dtype) if any(smoothing) else None
    with denormals_flushed():
        _loop(model, data, config, optimizer, block, penalty, record, smooth)
    bar.close()

    labels = [{"seed": s, "lr": lr[i], "weight_decay": wd[i], "output_scale": model.output_scales[i],
               "label_smoothing": smoothing[i]}
              | (members[i] if members is not None else {}) for i, s in enumerate(model.seeds)]
    meta = {
        "config": {k: v for k, v in asdict(config).items() if k != "progress"},
        "device": device.type,
        "member_block": block,
        "seconds": time.perf_counter() - started,
        "data": data.description,
        "model": type(model).__name__,
    }
    return History(np.array(record.steps), record.metrics(), labels, meta)


def _loop(model, data, config: TrainConfig, optimizer, block: int, penalty, record: _Recorder,
          smoothing: torch.Tensor | None = None) -> None:
    """The training steps, with an evaluation at step 0 and at every step of the schedule."""
    schedule = set(eval_schedule(config.steps, config.eval_every, config.eval_log_points).tolist())
    batches = _batches(data, config.batch_size, config.seed)
    record(0)
    torch.manual_seed(config.seed)  # reseeds the global generator: the same dropout masks every run
    model.train()
    milestones = set(config.lr_milestones)
    for step in range(1, config.steps + 1):
        x, y, idx = next(batches)  # (S, B, ...)
        soft = None if data.soft_targets is None else data.soft_batch(idx)  # (S, B, C)
        backward = partial(ensemble_backward, model, x, y, config.loss, block, penalty, idx, smoothing, soft)
        optimizer.zero_grad()
        backward()
        if config.sam_radius > 0:
            _sharpness_aware_gradient(model, optimizer, config.sam_radius, backward)
        optimizer.step()
        if step in milestones:  # a step schedule (Papyan et al. 2020 divide by 10 twice)
            optimizer.lr.mul_(config.lr_gamma)
        if step in schedule:
            record(step)


@torch.no_grad()
def _sharpness_aware_gradient(model: Ensemble, optimizer, radius: float, backward: Callable[[], None]) -> None:
    """Replace each member's gradient by SAM's: the gradient on the same batch at the weights moved
    by ``radius`` along the member's normalized gradient (Foret et al. 2021), then move back."""
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.sqrt(sum(p.grad.pow(2).flatten(1).sum(1) for p in params))  # (S,) per member
    shifts = [p.grad * broadcast_per_member(radius / (norm + 1e-12), p) for p in params]
    for p, shift in zip(params, shifts):
        p.add_(shift)
    optimizer.zero_grad()
    with torch.enable_grad():
        backward()
    for p, shift in zip(params, shifts):
        p.sub_(shift)


def _batches(data: TaskData, batch_size: int | None, seed: int):
    """Endless (x, y, idx) batches of shape (S, B, ...): the whole training set, or shuffled
    minibatches; idx (S, B) are the examples' indices into ``data``."""
    idx = data.train_idx  # (S, n)
    if batch_size is None or batch_size >= idx.shape[1]:
        full = (*data.batch(idx), idx)
        while True:
            yield full
    g = torch.Generator(device="cpu").manual_seed(seed)
    n = idx.shape[1]
    while True:  # one epoch: a fresh permutation per member
        order = torch.argsort(torch.rand(idx.shape, generator=g), dim=1).to(idx.device)
        for start in range(0, n - batch_size + 1, batch_size):
            chosen = idx.gather(1, order[:, start : start + batch_size])
            yield (*data.batch(chosen), chosen)
