"""How much accelerator memory and arithmetic training an experiment needs, measured rather than guessed.

The parameters, their gradients and the optimizer's state are counted from the built model; the
activations are the tensors autograd keeps for the backward pass of one training step with every
member in a single pass (as genlib trains on a GPU), collected by a saved-tensors hook during one
forward pass on a training batch. The data set counts too: training moves it onto the device.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..core.data import TaskData
from ..core.losses import per_example_loss
from ..core.models import Ensemble
from ..core.train import DTYPES, TrainConfig, eval_schedule, evaluate
from .experiment import TrainedExperiment
from .sweep import sweep

GiB = 2**30


@dataclass(frozen=True)
class Footprint:
    """Bytes needed by one training run, by kind."""

    parameters: int
    gradients: int
    optimizer_state: int
    activations: int
    data: int

    @property
    def total(self) -> int:
        return sum(dataclasses.astuple(self))

    def __str__(self) -> str:
        fields = dataclasses.fields(self)
        parts = ", ".join(f"{f.name.replace('_', ' ')} {_size(getattr(self, f.name))}" for f in fields)
        return f"{_size(self.total)} ({parts})"


def training_footprint(model: Ensemble, data: TaskData, config: TrainConfig) -> Footprint:
    """The memory one run of ``train(model, data, config)`` needs, in ``config.dtype``."""
    dtype = DTYPES[config.dtype]
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    width = torch.empty((), dtype=dtype).element_size()
    states = {"adamw": 2, "sgd": 1 if config.momentum else 0}[config.optimizer]
    states += 1 if config.sam_radius > 0 else 0  # SAM keeps its weight shift
    model = model.to(dtype=dtype)
    batch = config.batch_size or data.train_idx.shape[1]
    x, y = data.to("cpu", dtype).batch(data.train_idx[:, :batch])
    own = {p.untyped_storage().data_ptr() for p in params} | {b.untyped_storage().data_ptr() for b in model.buffers()}
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in own:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    model.train()  # as in a training step (dropout masks are kept too)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.enable_grad():
        per_example_loss(model(x), y, config.loss).mean(-1).sum()
    tensors = [data.x, data.y, data.train_idx, data.test_idx, *data.subsets.values()]
    data_bytes = sum(t.numel() * (width if t.is_floating_point() else t.element_size()) for t in tensors)
    return Footprint(n_params * width, n_params * width, states * n_params * width, sum(kept.values()), data_bytes)


@dataclass(frozen=True)
class Arithmetic:
    """Floating-point operations of one training run, counted by torch's FLOP counter on one step
    and one evaluation (matrix products and convolutions; the elementwise work is not counted, nor
    an experiment's extra measurements, which :mod:`genlib.running.profile` times instead)."""

    per_step: int
    per_evaluation: int
    steps: int
    evaluations: int

    @property
    def total(self) -> int:
        return self.per_step * self.steps + self.per_evaluation * self.evaluations


def training_arithmetic(model: Ensemble, data: TaskData, config: TrainConfig) -> Arithmetic:
    """The FLOPs of ``train(model, data, config)``'s steps and built-in evaluations (every member)."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = config.batch_size or data.train_idx.shape[1]
    x, y = data.batch(data.train_idx[:, :batch])
    with FlopCounterMode(display=False) as step:
        model.zero_grad()
        like = next(model.parameters())
        per_example_loss(model(x.to(like) if x.is_floating_point() else x), y, config.loss).mean(-1).sum().backward()
    model.zero_grad()
    with FlopCounterMode(display=False) as evaluation:
        evaluate(model, data, config.loss)
    evaluations = len(eval_schedule(config.steps, config.eval_every, config.eval_log_points))
    return Arithmetic(step.get_total_flops(), evaluation.get_total_flops(), config.steps, evaluations)


def _size(n: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _shortened(setup, steps: int):
    """``setup`` trained for ``steps`` steps (a step inside the run, such as a lottery ticket's rewind
    point, moved inside too); a setup without steps is returned as it is."""
    if not hasattr(setup, "steps"):
        return setup
    shorter = {"steps": steps}
    if hasattr(setup, "rewind_step"):
        shorter["rewind_step"] = steps - 1
    return dataclasses.replace(setup, **shorter)


def build_at_full_scale(cls: type, directory=None, requirement_steps: int = 2):
    """(setup, data, model, config) of a trained experiment at full scale, without training it."""
    return build_at_scale(cls, "full", directory, requirement_steps)


def build_at_scale(cls: type, scale: str, directory=None, requirement_steps: int = 2):
    """(setup, data, model, config) of a trained experiment at ``scale``, without training it.
    Its requirements (teachers, scores) are run first, each for ``requirement_steps`` steps only
    (cached in ``directory``): enough for ``build`` to read them, not a run at that scale."""
    if not issubclass(cls, TrainedExperiment):
        raise ValueError(f"cls must be a TrainedExperiment (closed-form ones are not trained); got {cls.__name__}")
    return build_setup(cls.at_scale(scale), directory, requirement_steps)


def build_setup(setup, directory=None, requirement_steps: int = 2):
    """(setup, data, model, config) of one trained experiment as declared (a grid's point, say),
    without training it; requirements as in :func:`build_at_scale`."""
    if not isinstance(setup, TrainedExperiment):
        raise ValueError(f"setup must be a TrainedExperiment instance (closed-form ones are not trained); "
                         f"got {type(setup).__name__}")
    inputs = {}
    if setup.requires():
        setup = _shortened(setup, requirement_steps)
        # A requirement held in a field (the escape test's start) is not shortened with the setup: shorten it too.
        required = {name: _shortened(r, requirement_steps) for name, r in setup.requires().items()}
        inputs = dict(zip(required, sweep(list(required.values()), directory=directory, progress=False)))
    data, model, config = setup.build(**inputs)
    return setup, data, model, config
