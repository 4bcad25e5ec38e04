"""The parts :class:`genlib.core.models.MLP` is composed of, each usable and testable on its own.

Every tensor has a leading member dimension S: units are (S, B, width), a weight matrix is
(S, fan_in, out), a bias (S, 1, out). The parts that keep tensors between passes are modules
(:class:`BufferList`, :class:`WeightMasks`, :class:`EnsembleBatchNorm`). The others are plain
callables over the tensors they are given (:class:`HiddenLayer`, the readout heads, :class:`Chain`,
:class:`Centered`), built afresh from the model's tensors on every forward pass, as equinox's
modules are: the model keeps its tensors under its own names (``weights.0``, ``unit_mask``,
``readout_signs``...), which :func:`torch.func.functional_call` and
:func:`genlib.core.train.ensemble_backward`'s member blocks substitute, and the parts see whatever
is there at the time of the call.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from ._validate import check_int

Tensor = torch.Tensor


class BufferList(nn.Module):
    """Tensors kept with a module (they follow ``.to()`` and member blocks) but never trained."""

    def __init__(self, tensors: Iterable[Tensor]):
        super().__init__()
        for i, t in enumerate(tensors):
            self.register_buffer(str(i), t)

    def __iter__(self):
        return iter(self._buffers.values())

    def __len__(self) -> int:
        return len(self._buffers)


class WeightMasks(BufferList):
    """Fixed per-member 0/1 masks, one (S, fan_in, out) mask per weight matrix, or none at all (every
    weight is used). A masked weight acts as 0 in the forward pass and so gets no gradient."""

    @classmethod
    def for_weights(cls, masks: Sequence[Tensor], weights: Sequence[Tensor]) -> WeightMasks:
        """Copies of ``masks`` in the weights' dtype and device, once they are checked: one 0/1
        tensor per weight matrix, shaped like it."""
        masks = list(masks)
        shapes = [tuple(w.shape) for w in weights]
        given = [tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__ for m in masks]
        if given != shapes:
            raise ValueError(f"masks must be one tensor per weight matrix, shaped like the weights {shapes}; "
                             f"got {given}")
        for m in masks:
            if not ((m == 0) | (m == 1)).all():
                raise ValueError(f"masks must hold only 0 and 1; got values {torch.unique(m)[:5].tolist()}...")
        return cls(m.detach().to(w).clone() for m, w in zip(masks, weights))

    def apply(self, weights: Iterable[Tensor]) -> list[Tensor]:
        """The weights as the forward pass uses them: each times its mask (unchanged if no masks)."""
        masks = list(self)
        return [w * m for w, m in zip(weights, masks)] if masks else list(weights)

    @torch.no_grad()
    def prune(self, weights: Iterable[Tensor]) -> None:
        """Set the masked weights themselves to 0, in place."""
        for w, m in zip(weights, self):
            w.mul_(m)


def member_unit_masks(member_widths: Sequence[int], hidden: Sequence[int], members: int) -> tuple[Tensor, Tensor]:
    """Members of different widths in one ensemble: member s keeps the first ``member_widths[s]`` of
    the ``hidden[0]`` units of every hidden layer (all layers one width).

    Returns the (S, 1, width) 0/1 unit mask and the (S, 1, 1) factors sqrt(width / member_widths[s])
    that turn a layer initialised for fan-in ``width`` into one initialised for the member's own.
    """
    member_widths, hidden = list(member_widths), list(hidden)
    if len(member_widths) != members:
        raise ValueError(f"member_widths must give one width per member ({members}); got {member_widths}")
    if not hidden or len(set(hidden)) != 1:
        raise ValueError(f"hidden must list layers of one width with member_widths; got {hidden}")
    for w in member_widths:
        check_int("member_widths", w, low=1, high=hidden[0])
    widths = torch.tensor(member_widths)
    mask = (torch.arange(hidden[0]) < widths[:, None]).float()[:, None, :]
    return mask, math.sqrt(hidden[0]) / widths.float().sqrt()[:, None, None]


class EnsembleBatchNorm(nn.Module):
    """Batch normalization (Ioffe and Szegedy 2015) of (S, B, H) units, per member and unit over the
    member's batch, with a learned scale and shift per member; evaluation mode uses running averages
    of the batch statistics (momentum 0.1, as torch's BatchNorm1d). End-of-training chapter: the
    networks in which Papyan et al. 2020 saw neural collapse all have it."""

    def __init__(self, members: int, width: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.ones(members, 1, width))
        self.bias = nn.Parameter(torch.zeros(members, 1, width))
        self.register_buffer("running_mean", torch.zeros(members, 1, width))
        self.register_buffer("running_var", torch.ones(members, 1, width))

    def forward(self, z: Tensor) -> Tensor:
        if self.training:
            mean, var = z.mean(1, keepdim=True), z.var(1, keepdim=True, unbiased=False)
            with torch.no_grad():  # in place: member blocks pass views of these buffers
                unbiased = var * (z.shape[1] / max(z.shape[1] - 1, 1))
                self.running_mean.lerp_(mean.to(self.running_mean), self.momentum)
                self.running_var.lerp_(unbiased.to(self.running_var), self.momentum)
        else:
            mean, var = self.running_mean.to(z), self.running_var.to(z)
        return (z - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


def affine(h: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """h (S, B, fan_in) @ weight (S, fan_in, out) + bias (S, 1, out), member by member."""
    return torch.bmm(h, weight) if bias is None else torch.baddbmm(bias, h, weight)


def member_dropout(h: Tensor, rate: Tensor) -> Tensor:
    """Inverted dropout of units h (S, B, width) at one rate (S, 1, 1) per member: each unit is
    zeroed with that probability and the kept ones are scaled by 1 / (1 - rate)."""
    keep = 1 - rate.to(h.dtype)
    return h * (torch.rand_like(h) < keep) / keep


class HiddenLayer:
    """One hidden layer: the affine map, a batch norm (if given), the activation, a unit mask (S, 1,
    width) (if given), and dropout at per-member rates (if given: pass them only while training)."""

    __slots__ = ("weight", "bias", "activation", "norm", "unit_mask", "dropout_rate")

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        activation: Callable[[Tensor], Tensor],
        norm: Callable[[Tensor], Tensor] | None = None,
        unit_mask: Tensor | None = None,
        dropout_rate: Tensor | None = None,
    ):
        self.weight, self.bias, self.activation = weight, bias, activation
        self.norm, self.unit_mask, self.dropout_rate = norm, unit_mask, dropout_rate

    def __call__(self, h: Tensor) -> Tensor:
        z = affine(h, self.weight, self.bias)
        h = self.activation(z if self.norm is None else self.norm(z))
        if self.unit_mask is not None:
            h = h * self.unit_mask
        if self.dropout_rate is not None:
            h = member_dropout(h, self.dropout_rate)
        return h


class LinearReadout:
    """A trained last layer: units (S, B, width) -> (S, B, C) = h @ weight + bias."""

    __slots__ = ("weight", "bias")
    out_dim: int | None = None  # any number of outputs

    def __init__(self, weight: Tensor, bias: Tensor | None = None):
        self.weight, self.bias = weight, bias

    def __call__(self, h: Tensor) -> Tensor:
        return affine(h, self.weight, self.bias)


class MeanReadout:
    """The fixed average of the units: (S, B, width) -> (S, B, 1) (Kumar et al. 2024's lazy-vs-rich model)."""

    __slots__ = ()
    out_dim = 1

    def __call__(self, h: Tensor) -> Tensor:
        return h.mean(-1, keepdim=True)


class SignedReadout:
    """Fixed output weights a (S, width): f = sum_j a_j h_j, returned as the two logits (0, f), so that
    softmax cross-entropy on them is the logistic loss of f and argmax is the sign of f (the two-layer
    model of Frei et al. and Xu et al.)."""

    __slots__ = ("signs",)
    out_dim = 2

    def __init__(self, signs: Tensor):
        self.signs = signs

    @staticmethod
    def alternating(members: int, width: int) -> Tensor:
        """(S, width) output weights +1/sqrt(width) on even units and -1/sqrt(width) on odd ones."""
        signs = torch.tensor([1.0 if j % 2 == 0 else -1.0 for j in range(width)])
        return (signs / math.sqrt(width)).expand(members, width).clone()

    def __call__(self, h: Tensor) -> Tensor:
        f = (h * self.signs[:, None, :].to(h.dtype)).sum(-1, keepdim=True)
        return torch.cat([torch.zeros_like(f), f], dim=-1)


READOUTS = {"linear": LinearReadout, "mean": MeanReadout, "signed": SignedReadout}


class Chain:
    """Callables applied in turn: ``Chain(f, g)(x) = g(f(x))``; ``Chain()`` is the identity."""

    __slots__ = ("parts",)

    def __init__(self, *parts: Callable[[Tensor], Tensor]):
        self.parts = parts

    def __call__(self, x: Tensor) -> Tensor:
        for part in self.parts:
            x = part(x)
        return x


class Centered:
    """A network minus a frozen copy of itself, f(x) = g(x) - g0(x) (Chizat et al. 2019's lazy
    setting): no gradient flows through g0, which is evaluated after g (g's random draws, dropout's,
    come first)."""

    __slots__ = ("network", "initial")

    def __init__(self, network: Callable[[Tensor], Tensor], initial: Callable[[Tensor], Tensor]):
        self.network, self.initial = network, initial

    def __call__(self, x: Tensor) -> Tensor:
        out = self.network(x)
        with torch.no_grad():
            start = self.initial(x)
        return out - start
