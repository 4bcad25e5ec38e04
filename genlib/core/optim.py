"""Optimizers for ensembles: AdamW and SGD with per-member learning rate and weight decay,
and the perpendicular-gradient transform ⊥Grad (Prieto et al. 2025). A parameter tagged with
``lr_multipliers`` ({"sgd": m, "adamw": m'}, e.g. by muP) steps at its kind's multiple of the lr.

Each parameter has a leading member dimension S; ``lr`` and ``weight_decay`` are (S,) tensors.
"""
from __future__ import annotations

import torch

from ._validate import check_choice

OPTIMIZERS = ("adamw", "sgd")


def broadcast_per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(S,) -> (S, 1, ..., 1) to broadcast against a parameter of shape (S, ...)."""
    return values.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def perpendicular_gradient(param: torch.Tensor, grad: torch.Tensor, eps: float = 1e-30) -> torch.Tensor:
    """⊥Grad: drop the gradient's component along the weights, keep its norm (per member)."""
    dims = tuple(range(1, param.dim()))
    along = (param * grad).sum(dims, keepdim=True) / ((param * param).sum(dims, keepdim=True) + eps)
    perp = grad - along * param
    norm_ratio = grad.norm(dim=dims, keepdim=True) / (perp.norm(dim=dims, keepdim=True) + eps)
    return perp * norm_ratio


class EnsembleOptimizer:
    """AdamW (decoupled weight decay) or SGD (with momentum, coupled weight decay) over members."""

    def __init__(
        self,
        params: list[torch.Tensor],
        kind: str,
        lr: torch.Tensor,
        weight_decay: torch.Tensor,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-8,
        momentum: float = 0.0,
        perpendicular: bool = False,
    ):
        self.params, self.kind = params, check_choice("optimizer", kind, OPTIMIZERS)
        self.lr, self.weight_decay = lr, weight_decay
        self.betas, self.eps, self.momentum = betas, eps, momentum
        self.perpendicular = perpendicular
        self.step_count = 0
        self.state = [
            {"m": torch.zeros_like(p), "v": torch.zeros_like(p)} for p in params
        ]
        # AdamW's step quotient m_hat * lr, written in place each step: a temporary the size of every
        # parameter per step costs a CPU as much as the arithmetic (fresh pages to touch)
        self.scratch = [torch.empty_like(p) for p in params] if kind == "adamw" else []
        # per-layer step-size multipliers a parameterization tags its tensors with (muP); None: 1
        self.multipliers = [getattr(p, "lr_multipliers", {}).get(self.kind) for p in params]
        # no member decays: skip the decay's two passes over every parameter (multiplying by 1, adding 0)
        self.decays = bool((weight_decay != 0).any())

    @torch.no_grad()
    def step(self) -> None:
        """One step of every member. The gradients are used up: they serve as scratch space, so that
        no step allocates a temporary the size of the parameters (the arithmetic, and so every result,
        is the same as without), and are then dropped (``p.grad`` is None after a step, as after
        :meth:`zero_grad`), so that no later backward pass accumulates into what is left of them."""
        self.step_count += 1
        t = self.step_count
        b1, b2 = self.betas
        for i, (p, state, multiplier) in enumerate(zip(self.params, self.state, self.multipliers)):
            g = p.grad
            if g is None:
                continue
            if self.perpendicular:
                g = perpendicular_gradient(p, g)
            lr = broadcast_per_member(self.lr, p)
            if multiplier is not None:
                lr = lr * multiplier
            wd = broadcast_per_member(self.weight_decay, p) if self.decays else None
            if self.kind == "adamw":
                if wd is not None:
                    p.mul_(1 - lr * wd)
                state["m"].mul_(b1).add_(g, alpha=1 - b1)
                state["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = torch.div(state["v"], 1 - b2**t, out=g).sqrt_().add_(self.eps)  # g is spent
                step = torch.mul(state["m"], lr / (1 - b1**t), out=self.scratch[i])
                p.addcdiv_(step, denom, value=-1)
            else:  # sgd
                if wd is not None:
                    g = g + wd * p
                if self.momentum:
                    p.sub_(lr * state["m"].mul_(self.momentum).add_(g))
                else:
                    p.sub_(g.mul_(lr))  # g is spent: scaled in place
            p.grad = None

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None
