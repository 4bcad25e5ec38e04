"""Ensembles of small networks: S members (seeds, per-member output scale) in one batched module.

Every parameter has a leading member dimension S, so one forward pass runs all members with
batched matrix products (no Python loop over models). Inputs are (S, B, ...) — each member sees
its own batch — and outputs are (S, B, C). Member s is initialised from its own seed alone, so a
member is the same network whichever ensemble it is trained in.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ._validate import check_choice, check_float, check_int, check_seeds, per_member
from .layers import (
    READOUTS,
    BufferList,
    Centered,
    Chain,
    EnsembleBatchNorm,
    HiddenLayer,
    LinearReadout,
    MeanReadout,
    SignedReadout,
    WeightMasks,
    member_unit_masks,
)

ACTIVATIONS = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "gelu": nn.functional.gelu,
    # Linear plus quadratic, as in Kumar et al. 2024; their quadratic part is smaller (0.01), which
    # makes lazy (kernel) fitting take ~1e5 steps. 0.25 shows the same contrast in a few thousand.
    "quadratic": lambda z: z + 0.25 * z * z,
    "sin": torch.sin,
    "gaussian": lambda z: torch.exp(-z * z),
    "snake": lambda z: z + torch.sin(z) ** 2,  # Ziyin et al. 2020, with a = 1
}

PARAMETERIZATIONS = ("sp", "mup")


def mup_scales(fan_in_ratio: float | None, fan_out_ratio: float | None) -> dict[str, float]:
    """Maximal-update parameterization (Yang et al. 2021, Tensor Programs V, Table 3) of one weight
    matrix, relative to standard parameterization (SP) at a base width.

    A ratio is the layer's fan-in (fan-out) over the base width when that dimension is a hidden width,
    and None when it is fixed (the inputs, the classes). The kind of layer follows: input weights
    (fan-in fixed), hidden weights (both hidden), output weights (fan-out fixed). Returns the factor
    on SP's initial standard deviation ("init") and the step-size multipliers under SGD ("sgd") and
    Adam ("adamw"); at the base width every factor is 1, so muP and SP are the same network there.
    Biases are treated as input weights with fan-in 1 (pass ``fan_in_ratio=None``).
    """
    for name, ratio in (("fan_in_ratio", fan_in_ratio), ("fan_out_ratio", fan_out_ratio)):
        if ratio is not None:
            check_float(name, ratio, low=0.0, low_open=True)
    if fan_in_ratio is None:  # input weights and all biases: init 1/fan_in, SGD lr ~ fan_out, Adam lr ~ 1
        return {"init": 1.0, "sgd": 1.0 if fan_out_ratio is None else fan_out_ratio, "adamw": 1.0}
    if fan_out_ratio is None:  # output weights: init variance 1/fan_in^2, both lrs ~ 1/fan_in
        return {"init": 1 / math.sqrt(fan_in_ratio), "sgd": 1 / fan_in_ratio, "adamw": 1 / fan_in_ratio}
    return {"init": 1.0, "sgd": 1.0, "adamw": 1 / fan_in_ratio}  # hidden weights


class Ensemble(nn.Module):
    """Base class: member seeds, a per-member output scale alpha, and seeded parameter creation.

    Subclasses set ``out_dim`` and either ``in_dim`` (feature vectors) or ``vocab`` (token ids),
    which :func:`genlib.core.train.train` checks against the data.
    """

    in_dim: int | None = None
    vocab: int | None = None
    out_dim: int

    def __init__(self, seeds: Sequence[int], output_scale: float | Sequence[float] = 1.0):
        super().__init__()
        self.seeds = check_seeds(seeds)
        scale = per_member("output_scale", output_scale, len(seeds), low=0.0, low_open=True)
        self.output_scales = scale  # exact values, for the History's member records
        self.register_buffer("output_scale", torch.tensor(scale))
        self._salt = 0

    @property
    def members(self) -> int:
        return len(self.seeds)

    def member_state(self, members: slice | torch.Tensor, leaves: bool = False) -> dict[str, torch.Tensor]:
        """The parameters and buffers of members ``members`` (a slice or indices), by name: with
        ``torch.func.functional_call``, the ensemble of those members alone. ``leaves``: each parameter
        detached into a leaf of its own (requiring gradients as the ensemble's does), so that a
        backward pass stops there instead of filling a gradient the size of the whole ensemble."""
        params = {k: v[members].detach().requires_grad_(v.requires_grad) if leaves else v[members]
                  for k, v in self.named_parameters()}
        return params | {k: v[members] for k, v in self.named_buffers()}

    def _param(self, *shape: int, std: float | None = None, bound: float | None = None) -> nn.Parameter:
        """A (S, *shape) parameter: normal(0, std) or uniform(-bound, bound), one generator per member."""
        self._salt += 1
        draws = []
        for seed in self.seeds:
            g = torch.Generator().manual_seed(seed * 1_000_003 + self._salt)
            if std is not None:
                draws.append(torch.randn(shape, generator=g) * std)
            else:
                draws.append((torch.rand(shape, generator=g) * 2 - 1) * bound)
        return nn.Parameter(torch.stack(draws))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs (S, B, C) = alpha_s * f_s(x_s)."""
        out = self.raw_output(x)
        if all(a == 1.0 for a in self.output_scales):  # alpha = 1 everywhere: spare two passes over the outputs
            return out
        return self.output_scale.to(out.dtype).view(-1, 1, 1) * out

    def raw_output(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def token_embedding(self) -> torch.Tensor:
        """(S, p, d) embedding of the first operand, for the Fourier progress measure."""
        raise NotImplementedError(f"{type(self).__name__} has no token embedding")


def _member_gather(table: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """table (S, V, d), tokens (S, ...) -> (S, ..., d): each member looks up its own table."""
    members, vocab, dim = table.shape
    offset = (torch.arange(members, device=tokens.device) * vocab).view(-1, *([1] * (tokens.dim() - 1)))
    # F.embedding on the flattened tables: its backward is much faster than advanced indexing's.
    return nn.functional.embedding(tokens + offset, table.reshape(members * vocab, dim))


def _relu_pair_sum(table_a: torch.Tensor, table_b: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """relu(table_a[s, a] + table_b[s, b]) for every member s: (S, p, H) tables -> (S, B, H).

    One summing ``embedding_bag`` over the members' stacked tables writes the large (S, B, H)
    result once and the ReLU runs in place on it; separate lookups, an addition and a ReLU would
    each pass over that tensor, and at S = 8 the step is bound by memory traffic, not arithmetic.
    Its backward pass is :class:`_ReluPairSum`'s, except under torch.func's transforms (kernels,
    per-example gradients), which differentiate the lookup itself.
    """
    if _functorch_transforms_active():
        bags, tables = _stacked_pair_rows(table_a, table_b, a, b)
        return torch.relu_(nn.functional.embedding_bag(bags, tables, mode="sum")).view(*a.shape, -1)
    return _ReluPairSum.apply(table_a, table_b, a, b)


# torch's own test, in autograd.Function.apply; were it ever gone, the plain path always.
_functorch_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", lambda: True)


def _stacked_pair_rows(table_a, table_b, a, b) -> tuple[torch.Tensor, torch.Tensor]:
    """(bags (S*B, 2), tables (S*2p, H)): rows a and b of every member's stacked [table_a; table_b]."""
    members, vocab, width = table_a.shape
    offset = (torch.arange(members, device=a.device) * 2 * vocab).view(-1, 1)
    bags = torch.stack([a + offset, b + vocab + offset], dim=-1).reshape(-1, 2)
    return bags, torch.cat([table_a, table_b], dim=1).reshape(members * 2 * vocab, width)


class _ReluPairSum(torch.autograd.Function):
    """:func:`_relu_pair_sum` with a backward pass of its own: the ReLU's mask, then two
    ``index_add_`` of the masked gradient into the stacked tables' gradient. ``embedding_bag``'s
    own backward sorts the indices at every step and took this CPU about three times as long
    (grokking workload). Not twice differentiable."""

    @staticmethod
    def forward(ctx, table_a, table_b, a, b):
        bags, tables = _stacked_pair_rows(table_a, table_b, a, b)
        out = torch.relu_(nn.functional.embedding_bag(bags, tables, mode="sum"))
        ctx.save_for_backward(out, bags)
        ctx.table_shape = table_a.shape
        return out.view(*a.shape, -1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        out, bags = ctx.saved_tensors
        members, vocab, width = ctx.table_shape
        masked = torch.ops.aten.threshold_backward(grad.reshape(out.shape), out, 0)  # 0 where the ReLU was off
        tables = masked.new_zeros(members * 2 * vocab, width).index_add_(0, bags[:, 0], masked)
        tables = tables.index_add_(0, bags[:, 1], masked).view(members, 2, vocab, width)
        return tables[:, 0], tables[:, 1], None, None


class EmbeddingMLP(Ensemble):
    """Tokens a, b -> embeddings -> ReLU MLP -> p logits (grokking chapter).

    ``combine='concat'``: one embedding table shared by a and b, the two vectors concatenated
    (the usual grokking MLP). ``combine='sum'``: separate tables summed, which is exactly a
    bias-free linear layer on one-hot(a) || one-hot(b) (Prieto et al. 2025's MLP).
    """

    def __init__(
        self,
        p: int,
        seeds: Sequence[int],
        embed_dim: int = 64,
        hidden: Sequence[int] = (256,),
        combine: str = "concat",
        bias: bool = True,
        embed_std: float | None = None,
        output_scale: float | Sequence[float] = 1.0,
    ):
        super().__init__(seeds, output_scale)
        check_int("p", p, low=2)
        check_int("embed_dim", embed_dim, low=1)
        check_choice("combine", combine, ("concat", "sum"))
        self.p, self.combine, self.bias = p, combine, bias
        self.vocab = self.out_dim = p
        if combine == "concat":
            self.embed = self._param(p, embed_dim, std=1.0 if embed_std is None else embed_std)
            width = 2 * embed_dim
        else:  # as nn.Linear(2p, embed_dim, bias=False) on the one-hot pair
            bound = 1 / math.sqrt(2 * p)
            self.embed_a = self._param(p, embed_dim, bound=bound)
            self.embed_b = self._param(p, embed_dim, bound=bound)
            width = embed_dim
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for out in [*hidden, p]:
            check_int("hidden", out, low=1)
            bound = 1 / math.sqrt(width)  # nn.Linear's default initialisation
            self.weights.append(self._param(width, out, bound=bound))
            if bias:
                self.biases.append(self._param(1, out, bound=bound))
            width = out

    def raw_output(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x[..., 0], x[..., 1]  # (S, B) token ids
        if self.combine == "sum":
            h = _relu_pair_sum(self.embed_a, self.embed_b, a, b)
            layers = list(enumerate(self.weights))
        else:
            # The first layer is linear in the concatenated embeddings, so fold it into two
            # (S, p, H) tables and look rows up: the same function, p/B of the multiply cost.
            d = self.embed.shape[-1]
            w = self.weights[0]
            table_a = torch.bmm(self.embed, w[:, :d])
            if self.bias:
                table_a = table_a + self.biases[0]
            h = _relu_pair_sum(table_a, torch.bmm(self.embed, w[:, d:]), a, b)
            layers = list(enumerate(self.weights))[1:]
        for i, w in layers:  # h: (S, B, width)
            h = torch.baddbmm(self.biases[i], h, w) if self.bias else torch.bmm(h, w)
            if i < len(self.weights) - 1:
                h = torch.relu_(h)  # in place: the product's backward pass needs its inputs, not its output
        return h

    def token_embedding(self) -> torch.Tensor:
        return self.embed if self.combine == "concat" else self.embed_a


def prieto_mlp(p: int, seeds: Sequence[int], width: int = 200, **kw) -> EmbeddingMLP:
    """Prieto et al. 2025's model: one-hot(a) || one-hot(b) -> [width, width] ReLU MLP, no biases."""
    return EmbeddingMLP(p, seeds, embed_dim=width, hidden=(width,), combine="sum", bias=False, **kw)


class Transformer(Ensemble):
    """One-layer, attention + ReLU MLP transformer on "a b =" without LayerNorm (Nanda et al. 2023).

    Only the logits at the "=" position are used, so attention is computed for that query alone.
    ``qk_norm=True`` applies LayerNorm (a learned gain per head and feature, no bias) to the queries
    and keys before their product (qk-layernorm, Dehghani et al. 2023; Wortsman et al. 2024).
    """

    def __init__(
        self,
        p: int,
        seeds: Sequence[int],
        d_model: int = 128,
        heads: int = 4,
        d_mlp: int = 512,
        output_scale: float | Sequence[float] = 1.0,
        qk_norm: bool = False,
    ):
        super().__init__(seeds, output_scale)
        check_int("p", p, low=2)
        check_int("d_model", d_model, low=1)
        check_int("heads", heads, low=1)
        check_int("d_mlp", d_mlp, low=1)
        if d_model % heads:
            raise ValueError(f"d_model must be divisible by heads={heads}; got {d_model!r}")
        self.p, self.heads = p, heads
        self.vocab = self.out_dim = p
        d_head = d_model // heads
        std = 1 / math.sqrt(d_model)
        self.embed = self._param(p + 1, d_model, std=std)  # token p is "="
        self.pos = self._param(3, d_model, std=std)
        self.w_q = self._param(d_model, heads, d_head, std=std)
        self.w_k = self._param(d_model, heads, d_head, std=std)
        self.w_v = self._param(d_model, heads, d_head, std=std)
        self.w_o = self._param(heads, d_head, d_model, std=1 / math.sqrt(d_model))
        self.w_in = self._param(d_model, d_mlp, std=std)
        self.b_in = self._param(1, d_mlp, std=0.0)
        self.w_out = self._param(d_mlp, d_model, std=1 / math.sqrt(d_mlp))
        self.b_out = self._param(1, d_model, std=0.0)
        self.unembed = self._param(d_model, p, std=std)
        self.qk_norm = qk_norm
        if qk_norm:  # LayerNorm gains of queries and keys, per head (Dehghani et al. 2023)
            self.q_gain = nn.Parameter(torch.ones(self.members, heads, d_head))
            self.k_gain = nn.Parameter(torch.ones(self.members, heads, d_head))

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        equals = torch.full_like(x[..., :1], self.p)
        tokens = torch.cat([x, equals], dim=-1)  # (S, B, 3)
        return _member_gather(self.embed, tokens) + self.pos[:, None]  # (S, B, 3, d)

    def _queries_keys(self, resid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = torch.einsum("sbd,sdhe->sbhe", resid[:, :, -1], self.w_q)  # query at "=" only
        k = torch.einsum("sbtd,sdhe->sbhte", resid, self.w_k)
        if self.qk_norm:  # LayerNorm over each head's features, no bias
            q = nn.functional.layer_norm(q, q.shape[-1:]) * self.q_gain[:, None]
            k = nn.functional.layer_norm(k, k.shape[-1:]) * self.k_gain[:, None, :, None]
        return q, k

    @staticmethod
    def _scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.einsum("sbhe,sbhte->sbht", q, k) / math.sqrt(q.shape[-1])

    def attention_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(S, B, heads, 3) the attention logits (before the softmax) of the query at "=" over the
        three positions, for token pairs x (S, B, 2)."""
        return self._scores(*self._queries_keys(self._residual(x)))

    def raw_output(self, x: torch.Tensor) -> torch.Tensor:
        resid = self._residual(x)
        q, k = self._queries_keys(resid)
        v = torch.einsum("sbtd,sdhe->sbhte", resid, self.w_v)
        scores = self._scores(q, k)
        z = torch.einsum("sbht,sbhte->sbhe", scores.softmax(-1), v)
        h = resid[:, :, -1] + torch.einsum("sbhe,shed->sbd", z, self.w_o)  # (S, B, d)
        h = h + torch.baddbmm(self.b_out, torch.relu(torch.baddbmm(self.b_in, h, self.w_in)), self.w_out)
        return torch.bmm(h, self.unembed)  # (S, B, p)

    def token_embedding(self) -> torch.Tensor:
        return self.embed[:, : self.p]


class MLP(Ensemble):
    """A fully connected network on feature vectors: (S, B, in_dim) -> (S, B, out_dim).

    ``readout='mean'`` replaces the last layer by the fixed average of the hidden units
    (f = alpha * mean_i phi(w_i . x), Kumar et al. 2024's lazy-vs-rich model; out_dim must be 1).
    ``centered=True`` subtracts the network at initialisation, f = alpha * (g(w) - g(w0)), so that
    every member starts from the zero function whatever alpha (Chizat et al. 2019's lazy setting).
    ``readout='signed'`` fixes the last layer to +-1/sqrt(m) on alternating units (f = sum_j a_j
    phi(w_j . x), the two-layer model of Frei et al. and Xu et al.) and returns the two logits
    (0, f): softmax cross-entropy on them is the logistic loss of f, and argmax is the sign of f.
    ``member_widths`` gives members different widths in one ensemble (a width sweep as one batched
    run): member s uses the first ``member_widths[s]`` units of every hidden layer, the others are
    masked to zero, and the layers after the first are initialised for that fan-in.
    ``bias_init`` is the standard deviation of the initial biases (0: biases start at zero).
    ``parameterization='mup'`` (linear readout, no member widths) is the maximal-update
    parameterization relative to SP at ``base_width`` (:func:`mup_scales`): the output layer's
    initial weights are scaled by sqrt(base_width / fan_in) and every parameter carries its per-layer
    step-size multipliers for SGD and Adam (see :meth:`lr_multipliers`); 'sp' (the default) is the
    standard parameterization, with every multiplier 1.
    ``dropout`` (one rate or one per member) zeroes each hidden unit with that probability while
    training (inverted dropout: the kept units are scaled by 1 / (1 - rate)); evaluation uses all.
    ``batch_norm=True`` normalizes every hidden layer's pre-activations over the batch
    (:class:`EnsembleBatchNorm`); not with ``centered`` or a fixed readout.
    :meth:`set_weight_masks` prunes weights (end-of-training chapter): each weight matrix is
    multiplied by a fixed per-member 0/1 mask in the forward pass, so pruned weights get no gradient.

    The network is composed of the parts in :mod:`genlib.core.layers`, built from this module's
    tensors on every forward pass: a :class:`~genlib.core.layers.HiddenLayer` per hidden layer, a
    readout head (:data:`~genlib.core.layers.READOUTS`), the :class:`~genlib.core.layers.WeightMasks`,
    and :class:`~genlib.core.layers.Centered` for ``centered=True``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        seeds: Sequence[int],
        activation: str = "relu",
        bias: bool = True,
        readout: str = "linear",
        init_scale: float = 1.0,
        output_scale: float | Sequence[float] = 1.0,
        centered: bool = False,
        member_widths: Sequence[int] | None = None,
        dropout: float | Sequence[float] = 0.0,
        bias_init: float = 0.0,
        batch_norm: bool = False,
        parameterization: str = "sp",
        base_width: int = 32,
    ):
        super().__init__(seeds, output_scale)
        check_int("in_dim", in_dim, low=1)
        check_choice("parameterization", parameterization, PARAMETERIZATIONS)
        check_int("base_width", base_width, low=1)
        if parameterization != "sp" and (member_widths is not None or readout != "linear"):
            raise ValueError(f"parameterization must be 'sp' with member_widths or readout={readout!r}; "
                             f"got {parameterization!r}")
        check_int("out_dim", out_dim, low=1)
        check_choice("activation", activation, ACTIVATIONS)
        check_choice("readout", readout, READOUTS)
        check_float("bias_init", bias_init, low=0.0)
        fixed_out_dim = READOUTS[readout].out_dim
        if fixed_out_dim is not None and out_dim != fixed_out_dim:
            raise ValueError(f"out_dim must be {fixed_out_dim} with readout={readout!r}; got {out_dim!r}")
        if fixed_out_dim is not None and not hidden:
            raise ValueError(f"hidden must hold at least one width with readout={readout!r}; got ()")
        if batch_norm and (centered or readout != "linear"):
            raise ValueError(f"batch_norm must be False with centered=True or readout={readout!r}; got True")
        self.activation, self.readout, self.bias = ACTIVATIONS[activation], readout, bias
        self.in_dim, self.out_dim = in_dim, out_dim
        # The tensors live here, under these names and in this order (state dicts, functional_call
        # and member blocks rely on both); the parts are built from them on every forward pass.
        rates = per_member("dropout", dropout, self.members, low=0.0, high=1.0, high_open=True)
        self.register_buffer("dropout_rate", torch.tensor(rates).view(-1, 1, 1))
        self.use_dropout = any(r > 0 for r in rates)
        if readout == "signed":
            self.register_buffer("readout_signs", SignedReadout.alternating(self.members, hidden[-1]))
        widths = [in_dim, *hidden] + ([out_dim] if readout == "linear" else [])
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, out in zip(widths[:-1], widths[1:]):  # _param's order fixes every member's draws
            check_int("hidden", out, low=1)
            self.weights.append(self._param(fan_in, out, std=init_scale / math.sqrt(fan_in)))
            if bias:
                self.biases.append(self._param(1, out, std=bias_init))
        self.parameterization, self.base_width = parameterization, base_width
        if parameterization == "mup":
            self._apply_mup(widths)
        self.masked = member_widths is not None
        if self.masked:
            unit_mask, fan_in_scale = member_unit_masks(member_widths, hidden, self.members)
            self.register_buffer("unit_mask", unit_mask)
            with torch.no_grad():  # fan-in of the later layers is the member's own width
                for w in list(self.weights)[1:]:
                    w.mul_(fan_in_scale)
        self.weight_masks = WeightMasks([])  # none: every weight is used (see set_weight_masks)
        self.norms = nn.ModuleList(EnsembleBatchNorm(self.members, width) for width in hidden) if batch_norm else None
        self.centered = centered
        if centered:  # frozen copies of the initial network
            self.initial_weights = BufferList(w.detach().clone() for w in self.weights)
            self.initial_biases = BufferList(b.detach().clone() for b in self.biases)

    def _apply_mup(self, widths: list[int]) -> None:
        """Rescale the SP draws to muP's initialisation and tag every parameter with its step-size
        multipliers (``lr_multipliers``, read by :class:`~genlib.core.optim.EnsembleOptimizer`)."""
        last = len(widths) - 2
        with torch.no_grad():
            for i, w in enumerate(self.weights):
                fan_in = None if i == 0 else widths[i] / self.base_width
                fan_out = None if i == last else widths[i + 1] / self.base_width
                scales = mup_scales(fan_in, fan_out)
                w.mul_(scales["init"])
                w.lr_multipliers = {"sgd": scales["sgd"], "adamw": scales["adamw"]}
                if self.bias:
                    bias_scales = mup_scales(None, fan_out)
                    self.biases[i].lr_multipliers = {"sgd": bias_scales["sgd"], "adamw": bias_scales["adamw"]}

    def lr_multipliers(self, kind: str) -> list[float]:
        """Each parameter's step-size multiplier under optimizer ``kind`` ("sgd" or "adamw"), in
        ``parameters()`` order: all 1 in SP, muP's per-layer multipliers otherwise."""
        check_choice("kind", kind, ("sgd", "adamw"))
        return [getattr(p, "lr_multipliers", {}).get(kind, 1.0) for p in self.parameters()]

    def set_weight_masks(self, masks: Sequence[torch.Tensor] | None) -> None:
        """Prune: keep weight matrix i only where ``masks[i]`` (S, fan_in, out) is 1; None removes the masks.

        Masks cover every weight matrix (not the biases), are kept as buffers (they follow ``.to()``
        and :func:`genlib.core.train.ensemble_backward`'s member blocks) and multiply the weights in the
        forward pass, so a pruned weight gets zero gradient; the pruned weights are also set to 0
        here, so that they stay 0 through training (any optimizer, weight decay included). With
        ``centered=True`` the frozen initial network is masked too. End-of-training chapter.
        """
        self.weight_masks = WeightMasks([]) if masks is None else WeightMasks.for_weights(masks, self.weights)
        self.weight_masks.prune(self.weights)

    def features(self, x: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """(S, B, width) the units of hidden layer ``layer`` (by default the last: the penultimate
        features), after the activation and any unit masks (and dropout, in training mode), for inputs
        x (S, B, in_dim); linear readout only.

        ``features(x) @ w + b`` with the last layer's (masked) weights is the raw output, except with
        ``centered=True``, whose raw output also subtracts the initial network. End-of-training chapter.
        """
        if self.readout != "linear":
            raise ValueError(f"readout must be 'linear' for penultimate features; got {self.readout!r}")
        hidden = len(self.weights) - 1
        if hidden < 1:
            raise ValueError("hidden must hold at least one width for penultimate features; got ()")
        check_int("layer", layer, low=-hidden, high=hidden - 1)
        layers, _ = self._parts(self.weights, self.biases)
        return Chain(*layers[: layer % hidden + 1])(x)

    def readout_layer(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(w (S, width, C) with its mask applied, b (S, 1, C) or None): the last layer, as it acts on
        :meth:`features`. End-of-training chapter (self-duality of the classifier and class means)."""
        if self.readout != "linear":
            raise ValueError(f"readout must be 'linear' for a readout layer; got {self.readout!r}")
        _, head = self._parts(self.weights, self.biases)
        return head.weight, head.bias

    def _parts(self, weights, biases) -> tuple[list[HiddenLayer], LinearReadout | MeanReadout | SignedReadout]:
        """The hidden layers and the readout head of the network with these weights and biases (the
        trained ones or the frozen initial ones), with the weight masks, unit masks, batch norms and
        (in training mode) dropout as they are now."""
        weights = self.weight_masks.apply(weights)
        biases = list(biases) if self.bias else [None] * len(weights)
        hidden = len(weights) - (self.readout == "linear")
        norms = list(self.norms) if self.norms is not None else [None] * hidden
        unit_mask = self.unit_mask if self.masked else None
        rate = self.dropout_rate if self.use_dropout and self.training else None
        layers = [HiddenLayer(weights[i], biases[i], self.activation, norms[i], unit_mask, rate) for i in range(hidden)]
        if self.readout == "linear":
            return layers, LinearReadout(weights[-1], biases[-1])
        return layers, MeanReadout() if self.readout == "mean" else SignedReadout(self.readout_signs)

    def raw_output(self, x: torch.Tensor) -> torch.Tensor:
        layers, head = self._parts(self.weights, self.biases)
        network = Chain(*layers, head)
        if self.centered:
            initial_layers, initial_head = self._parts(self.initial_weights, self.initial_biases)
            network = Centered(network, Chain(*initial_layers, initial_head))
        return network(x)
