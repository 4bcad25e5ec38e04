"""Curvature of the training loss, one value per ensemble member (edge-of-stability chapter).

Members share no parameters and the training loss is the sum of the members' mean losses, so its
Hessian is block-diagonal across members: one Hessian-vector product over all parameters (S, ...)
gives every member's own H_s v_s at once. The sharpness (top eigenvalue), the trace and Adam's
preconditioned sharpness are all built on that product, written out for plain MLPs
(:mod:`genlib.measures.mlp_hvp`) and by autograd for other models; :func:`dense_hessian`
gives the exact matrix of one member of a tiny model, for tests and exercises.

Everything is evaluated in evaluation mode (no dropout) on the training examples of ``data``, or
on the first ``subset`` of each member's training examples. The model must be twice
differentiable: MLP and Transformer are; EmbeddingMLP is not (torch has no second derivative of
the ``embedding_bag`` lookup it uses).
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch.func import functional_call

from ..core._validate import check_choice, check_float, check_int
from ..core.data import TaskData
from ..core.losses import LOSSES, per_example_loss
from ..core.models import Ensemble
from ..core.optim import EnsembleOptimizer, broadcast_per_member
from ..core.train import check_sizes, evaluation_mode
from . import mlp_hvp

Vectors = list[torch.Tensor]  # one tensor per parameter, each (S, ...) like the parameter


def hessian_vector_product(
    model: Ensemble, data: TaskData, vectors: Vectors, loss: str, subset: int | None = None
) -> Vectors:
    """H_s v_s for every member s: the Hessian of each member's mean training loss times its slice
    of ``vectors`` (shaped like ``model.parameters()``)."""
    _check_vectors("vectors", vectors, list(model.parameters()))
    return _hessian_operator(model, data, loss, subset)(vectors)


def top_eigenvalue(
    model: Ensemble, data: TaskData, loss: str, iterations: int = 20, seed: int = 0, subset: int | None = None
) -> torch.Tensor:
    """(S,) sharpness: each member's largest Hessian eigenvalue, by power iteration.

    Power iteration finds the eigenvalue of largest magnitude. Near a minimum of the losses here
    (MSE, cross-entropy) the Hessian is close to the positive semi-definite Gauss-Newton matrix and
    the top eigenvalue dominates. Where a negative one dominates instead, a second pass on the
    shifted H - lambda I (whose spectrum then lies in [0, lambda_max - lambda]) recovers the top
    one. The error shrinks like (lambda_2 / lambda_1)^(2 iterations) in magnitudes; with
    lambda_min close to -lambda_max the vector mixes both for long and the estimate falls between
    them (a tiny MLP with lambda_min = -0.97 lambda_max needs ~300): raise ``iterations``.
    """
    check_int("iterations", iterations, low=1)
    start = next(_random_vectors(model, "normal", seed))
    return _top_of(_hessian_operator(model, data, loss, subset), start, iterations)


@dataclass(frozen=True)
class Eigenpair:
    """What :func:`top_eigenpair` returns: per member, the top eigenvalue (S,), its eigenvector (unit
    norm, shaped like the parameters) and the Hessian-vector products it took (S,) integers."""

    values: torch.Tensor
    vectors: Vectors
    iterations: torch.Tensor


def top_eigenpair(
    model: Ensemble,
    data: TaskData,
    loss: str,
    tolerance: float = 1e-3,
    max_iterations: int = 100,
    seed: int = 0,
    subset: int | None = None,
    rule: str = "change",
) -> Eigenpair:
    """Each member's largest Hessian eigenvalue and its eigenvector, by the Lanczos method (with
    full reorthogonalization), stopping per member once the top Ritz value changes by at most
    ``tolerance`` times its size between two Hessian-vector products (or after
    ``max_iterations``; a member whose estimate is not finite stops at once), from the random
    vector :func:`top_eigenvalue` uses (``seed``).

    ``rule="residual"`` stops instead once the top Ritz pair's residual ||H y - theta y|| (read off
    the tridiagonal matrix at no extra cost) is at most ``tolerance`` times |theta|: a change rule
    can stop on a plateau, a residual rule only near an eigenpair. Neither tells the top eigenpair
    from another one when the start has (almost) no component along the top eigenvector, which is
    why there is no warm start from a previous reading's eigenvector: after the top eigenvector
    has moved on, such a start can settle on the former one and read low.

    The top Ritz value never decreases from one product to the next and never exceeds
    lambda_max: it approaches the top eigenvalue from below, the algebraically largest one even
    where a negative eigenvalue has the largest magnitude. Where lambda_1 and lambda_2 are close
    it converges much faster than power iteration (whose error falls like (lambda_2 /
    lambda_1)^(2k)).
    """
    check_float("tolerance", tolerance, low=0.0, low_open=True, high=1.0)
    check_int("max_iterations", max_iterations, low=2)
    check_choice("rule", rule, ("change", "residual"))
    first = next(_random_vectors(model, "normal", seed))
    return _lanczos_until(_hessian_operator(model, data, loss, subset), first, max_iterations, tolerance,
                          rule == "residual", lambda members: _hessian_operator(model, data, loss, subset, members))


def hessian_trace(
    model: Ensemble, data: TaskData, loss: str, samples: int = 100, seed: int = 0, subset: int | None = None
) -> torch.Tensor:
    """(S,) Hutchinson estimate of each member's Hessian trace: the mean of z^T H z over
    ``samples`` Rademacher vectors z. Unbiased; exact for a diagonal Hessian."""
    check_int("samples", samples, low=1)
    probes = _random_vectors(model, "rademacher", seed)
    hvp = _hessian_operator(model, data, loss, subset)
    total = 0.0
    for z in itertools.islice(probes, samples):
        total = total + _dot(z, hvp(z))
    return total / samples


def preconditioned_top_eigenvalue(
    model: Ensemble,
    data: TaskData,
    loss: str,
    preconditioner: Vectors,
    iterations: int = 20,
    seed: int = 0,
    subset: int | None = None,
) -> torch.Tensor:
    """(S,) preconditioned sharpness: each member's top eigenvalue of P^-1 H, computed as that of
    the symmetric P^-1/2 H P^-1/2 (same spectrum) for a diagonal preconditioner P > 0 given
    shaped like the parameters, e.g. :func:`adam_preconditioner`.

    Cohen et al. 2022 find that full-batch Adam trains where this equals 2 (1 + beta1) / ((1 -
    beta1) lr), 38 / lr for beta1 = 0.9: the adaptive edge of stability.
    """
    check_int("iterations", iterations, low=1)
    params = list(model.parameters())
    _check_vectors("preconditioner", preconditioner, params)
    low, high = min(float(p.min()) for p in preconditioner), max(float(p.max()) for p in preconditioner)
    if not 0 < low <= high < float("inf"):  # NaN fails too
        raise ValueError(f"preconditioner must hold finite entries > 0; got entries in [{low}, {high}]")
    start = next(_random_vectors(model, "normal", seed))
    hvp = _hessian_operator(model, data, loss, subset)
    scale = [p.to(q).rsqrt() for p, q in zip(preconditioner, params)]
    return _top_of(lambda v: _scale(scale, hvp(_scale(scale, v))), start, iterations)


def adam_preconditioner(optimizer: EnsembleOptimizer) -> Vectors:
    """Adam's diagonal preconditioner after its last step, as Cohen et al. 2022 define it:
    P = (1 - beta1^t) (sqrt(v / (1 - beta2^t)) + eps), so that the step is -lr P^-1 m (before
    AdamW's decoupled weight decay)."""
    if optimizer.kind != "adamw":
        raise ValueError(f"optimizer must be an 'adamw' EnsembleOptimizer; got kind {optimizer.kind!r}")
    t = check_int("optimizer.step_count", optimizer.step_count, low=1)
    b1, b2 = optimizer.betas
    return [(1 - b1**t) * ((s["v"] / (1 - b2**t)).sqrt() + optimizer.eps) for s in optimizer.state]


def dense_hessian(
    model: Ensemble, data: TaskData, loss: str, member: int, subset: int | None = None
) -> torch.Tensor:
    """The (P, P) Hessian of member ``member``'s mean training loss in its P parameters, flattened
    in ``model.parameters()`` order (``torch.cat([p[member].reshape(-1) for p in params])``).
    For tiny models: it takes P backward passes."""
    member_loss, flat = member_loss_function(model, data, loss, member, subset)
    with evaluation_mode(model), torch.enable_grad():
        return torch.autograd.functional.hessian(member_loss, flat)


def member_loss_function(
    model: Ensemble, data: TaskData, loss: str, member: int, subset: int | None = None
) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """(loss_of, w): member ``member``'s mean training loss as a function of its P parameters
    flattened into one vector (in ``model.parameters()`` order), and their current values (P,).
    Call it with the model in evaluation mode (no dropout)."""
    check_int("member", member, low=0, high=model.members - 1)
    x, y = _training_batch(model, data, loss, subset)
    names, params = zip(*model.named_parameters())
    shapes = [p.shape[1:] for p in params]
    part = slice(member, member + 1)
    buffers = {k: v[part] for k, v in model.named_buffers()}

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        pieces = flat.split([s.numel() for s in shapes])
        state = {n: piece.view(1, *s) for n, piece, s in zip(names, pieces, shapes)} | buffers
        return per_example_loss(functional_call(model, state, (x[part],)), y[part], loss).mean()

    return loss_of, torch.cat([p[member].detach().reshape(-1) for p in params])


def _training_batch(model: Ensemble, data: TaskData, loss: str, subset: int | None):
    """Checked arguments; the training inputs and targets (S, n, ...) on the model's device and dtype."""
    check_choice("loss", loss, LOSSES)
    check_sizes(model, data)
    idx = data.train_idx
    if subset is not None:
        idx = idx[:, : check_int("subset", subset, low=1, high=idx.shape[1])]
    like = next(model.parameters())
    x, y = data.batch(idx)
    move = lambda t: t.to(like) if t.is_floating_point() else t.to(like.device)  # token ids stay integers
    return move(x), move(y)


def _hessian_operator(
    model: Ensemble, data: TaskData, loss: str, subset: int | None, members: torch.Tensor | None = None
) -> Callable[[Vectors], Vectors]:
    """v -> H v for all members: written out for a plain MLP (:mod:`.mlp_hvp`), else by autograd
    reusing one graph of the gradient (one backward pass per product). ``members`` (indices): the
    products of these members only, for vectors holding only theirs."""
    x, y = _training_batch(model, data, loss, subset)
    if mlp_hvp.supports(model, loss):
        return mlp_hvp.hessian_operator(model, x, y, loss, members)
    return _autograd_hessian_operator(model, x, y, loss, members)


def _autograd_hessian_operator(
    model: Ensemble, x: torch.Tensor, y: torch.Tensor, loss: str, members: torch.Tensor | None = None
) -> Callable[[Vectors], Vectors]:
    """:func:`_hessian_operator` by autograd, for any twice-differentiable model."""
    params = list(model.parameters())
    with evaluation_mode(model), torch.enable_grad():
        if members is None:
            outputs = model(x)
        else:  # a graph of these members alone: each of them a leaf of its own
            state = model.member_state(members, leaves=True)
            outputs = functional_call(model, state, (x[members],))
            params, y = [state[name] for name, _ in model.named_parameters()], y[members]
        total = per_example_loss(outputs, y, loss).mean(-1).sum()
        grads = torch.autograd.grad(total, params, create_graph=True)

    def hvp(vectors: Vectors) -> Vectors:
        # The vector-Jacobian product of the gradient is H^T v = H v.
        return list(torch.autograd.grad(grads, params, grad_outputs=vectors, retain_graph=True))

    return hvp


def _check_vectors(name: str, vectors: Vectors, params: list[torch.Tensor]) -> None:
    expected = [tuple(p.shape) for p in params]
    given = [tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__ for v in vectors]
    if given != expected:
        raise ValueError(f"{name} must be tensors shaped like the model's parameters {expected}; got {given}")


def _random_vectors(model: Ensemble, kind: str, seed: int) -> Iterator[Vectors]:
    """Endless random vectors shaped like the parameters ("normal" or "rademacher" entries).
    Member s draws from its own generator, seeded by ``seed`` and its model seed, so that its
    estimates do not depend on the other members."""
    check_int("seed", seed, low=0)
    shapes = [p.shape[1:] for p in model.parameters()]
    like = next(model.parameters())
    generators = [torch.Generator().manual_seed(seed * 1_000_003 + s) for s in model.seeds]

    def draw(shape: torch.Size, g: torch.Generator) -> torch.Tensor:
        if kind == "normal":
            return torch.randn(shape, generator=g)
        return torch.randint(0, 2, shape, generator=g) * 2.0 - 1

    def vectors() -> Iterator[Vectors]:
        while True:
            yield [torch.stack([draw(shape, g) for g in generators]).to(like) for shape in shapes]

    return vectors()


def _dot(u: Vectors, v: Vectors) -> torch.Tensor:
    """(S,) per-member inner products."""
    return sum((a * b).flatten(1).sum(1) for a, b in zip(u, v))


def _scale(factors: list[torch.Tensor] | torch.Tensor, vectors: Vectors) -> Vectors:
    """Elementwise (a list shaped like the vectors) or per-member ((S,) tensor) scaling."""
    if isinstance(factors, torch.Tensor):
        return [broadcast_per_member(factors, v) * v for v in vectors]
    return [f * v for f, v in zip(factors, vectors)]


def _power_iteration(operator: Callable[[Vectors], Vectors], v: Vectors, iterations: int) -> torch.Tensor:
    """(S,) Rayleigh quotients after ``iterations`` products, each member normalised on its own."""
    for _ in range(iterations):
        norm = _dot(v, v).sqrt()
        v = _scale(torch.where(norm > 0, norm.reciprocal(), torch.zeros_like(norm)), v)  # 0 stays 0
        w = operator(v)
        value = _dot(v, w)
        v = w
    return value


def _lanczos_until(
    operator: Callable[[Vectors], Vectors], v: Vectors, max_iterations: int, tolerance: float,
    residual: bool = False, restrict: Callable[[torch.Tensor], Callable[[Vectors], Vectors]] | None = None,
) -> Eigenpair:
    """Lanczos per member (the members' Krylov bases are built side by side, one product for all):
    each member's top Ritz value, its Ritz vector (unit norm) and the products it took, frozen at
    the product where the Ritz value first moved by <= ``tolerance`` x its size (``residual``: where
    the Ritz pair's residual beta_k |s_k| first fell to <= ``tolerance`` x its size).

    ``restrict(members)``: the operator of those members alone (indices). Given it, once a quarter
    of the members still iterated have stopped, the rest go on without them: a reading's cost is
    then close to the members' mean number of products rather than their maximum.

    The basis is kept flat, (S, k, P), so that reorthogonalizing against it is two batched matrix
    products per pass rather than a Python loop over basis vectors and parameter tensors."""
    members = v[0].shape[0]
    like = v[0]
    shapes = [t.shape[1:] for t in v]
    sizes = [t[0].numel() for t in v]
    flat = lambda vectors: torch.cat([t.flatten(1) for t in vectors], 1)  # (S, P)
    unflat = lambda f: [piece.reshape(-1, *shape) for piece, shape in zip(f.split(sizes, 1), shapes)]
    unit = lambda f: f * torch.where((f * f).sum(1) > 0, (f * f).sum(1).rsqrt(), torch.zeros(len(f)).to(like))[:, None]
    value = torch.full((members,), float("nan"), dtype=like.dtype, device=like.device)
    used = torch.zeros(members, dtype=torch.long, device=like.device)
    done = torch.zeros(members, dtype=torch.bool, device=like.device)
    live = torch.arange(members, device=like.device)  # the members iterated: rows of q, basis, alphas, betas
    q = unit(flat(v))
    vectors = q.clone()
    basis = torch.empty(members, min(max_iterations, 16), q.shape[1], dtype=like.dtype, device=like.device)
    basis[:, 0] = q
    alphas: list[torch.Tensor] = []
    betas: list[torch.Tensor] = []
    for k in range(1, max_iterations + 1):
        w = flat(operator(unflat(q)))
        alphas.append((q * w).sum(1))
        spanned = basis[:, :k]  # (L, k, P)
        for _ in range(2):  # full reorthogonalization, twice (float32)
            w = w - torch.bmm(torch.bmm(spanned, w[:, :, None]).transpose(1, 2), spanned)[:, 0]
        beta = (w * w).sum(1).sqrt()
        tri = torch.diag_embed(torch.stack(alphas, 1))  # (L, k, k) the tridiagonal T_k
        if k > 1:
            off = torch.stack(betas, 1)
            tri = tri + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
        finite = torch.isfinite(tri).flatten(1).all(1)  # a diverged member's products are not
        ritz, coefficients = torch.linalg.eigh(torch.where(finite[:, None, None], tri, 0.0).double())  # ascending
        top = torch.where(finite, ritz[:, -1].to(like.dtype), float("nan"))
        if residual:  # ||H y - theta y|| = beta_k |last entry of the Ritz vector's coefficients|
            moved = beta * coefficients[:, -1, -1].abs().to(like.dtype)
        else:
            moved = (top - value[live]).abs()
        settled = (moved <= tolerance * top.abs()) | ~torch.isfinite(top) | (beta <= 1e-12 * top.abs())
        active = ~done[live]
        newly = active & (settled | (k == max_iterations))
        value[live] = torch.where(active, top, value[live])
        used[live] = torch.where(active, torch.full_like(active, k, dtype=used.dtype), used[live])
        if newly.any():
            s_top = coefficients[:, :, -1].to(like.dtype)  # (L, k) the top Ritz vector in the basis
            ritz_vector = torch.bmm(s_top[:, None, :], spanned)[:, 0]
            vectors[live] = torch.where(newly[:, None], ritz_vector, vectors[live])
        done[live] = done[live] | newly
        if bool(done.all()):
            break
        betas.append(beta)
        q = w * torch.where(beta > 0, beta.reciprocal(), torch.zeros_like(beta))[:, None]
        if k == basis.shape[1]:  # full: double its room
            basis = torch.cat([basis, torch.empty_like(basis)[:, : min(k, max_iterations - k)]], 1)
        basis[:, k] = q
        going = ~done[live]
        if restrict is not None and 4 * int((~going).sum()) >= len(live):  # drop the stopped members
            live, q, basis = live[going], q[going], basis[going, : k + 1]  # only the columns in use
            alphas, betas = [a[going] for a in alphas], [b[going] for b in betas]
            operator = restrict(live)
    return Eigenpair(value, unflat(unit(vectors)), used)


def _top_of(operator: Callable[[Vectors], Vectors], start: Vectors, iterations: int) -> torch.Tensor:
    """Top eigenvalue per member; a shifted second pass for members whose dominant one is negative."""
    value = _power_iteration(operator, start, iterations)
    negative = value < 0
    if not negative.any():
        return value
    shift = torch.where(negative, value, torch.zeros_like(value))
    shifted = lambda v: [hv - s for hv, s in zip(operator(v), _scale(shift, v))]
    return torch.where(negative, _power_iteration(shifted, start, iterations) + shift, value)
