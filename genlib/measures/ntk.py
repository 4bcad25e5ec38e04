"""The empirical neural tangent kernel of each ensemble member, and kernel regression with it
(lazy-and-rich chapter).

K_s(x, x') = <d f_s(x) / d w_s, d f_s(x') / d w_s> for member s's own parameters w_s (Jacot et al.
2018), of the output as ``model(x)`` returns it: the output scale alpha is included, so the kernel
scales as alpha^2; a centred MLP (``centered=True``) has the kernel of g(w), since its initial copy
is held in buffers. In the lazy limit (large alpha, lr ~ 1/alpha^2) gradient descent on the squared
error from the zero function stays on the kernel of initialization and ends at
:func:`kernel_regression` with it (Chizat et al. 2019).

Members share no parameters, so each member's kernel is computed from its own slice of the
parameters and buffers alone: it does not depend on the other members.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch
from torch.func import functional_call, jacrev, vmap

from ..core._validate import check_float, check_int
from ..core.models import Ensemble

JACOBIAN_BUDGET = 2**27  # bytes of one block of per-example jacobians (two are held at once)


def empirical_ntk(
    model: Ensemble, x1: torch.Tensor, x2: torch.Tensor | None = None, chunk: int | None = None
) -> torch.Tensor:
    """(S, N1, N2) empirical NTK of every member between inputs x1 and x2 (x2 = x1 when None).

    x1, x2: (N, ...) inputs shared by all members or (S, N, ...) one set per member, in the form
    ``model`` takes (feature vectors (N, in_dim), or token pairs (N, 2) for a token model; torch
    has no batched rule for EmbeddingMLP's embedding_bag and loops over examples there, slowly). For
    C > 1 outputs this is the output-averaged ("trace") kernel (1/C) sum_c J_c(x1) J_c(x2)^T, J_c
    the (N, P) jacobian of output c. Jacobians are built ``chunk`` examples at a time (None: as
    many as fit in 128 MB), so memory stays near 2 chunk C P numbers per call whatever N; blocks
    of the kernel are then contracted, members one at a time. Evaluation mode (no dropout), in
    the model's dtype (``model.double()`` for float64); the model is not changed.
    """
    if not isinstance(model, Ensemble):
        raise ValueError(f"model must be a genlib.core.models.Ensemble; got {type(model).__name__}")
    params = dict(model.named_parameters())
    like = next(iter(params.values()))
    x1 = _check_inputs("x1", model, x1).to(like.device)
    x2 = x1 if x2 is None else _check_inputs("x2", model, x2).to(like.device)
    same = x2 is x1
    if x1.is_floating_point():
        x1, x2 = x1.to(like.dtype), x2.to(like.dtype)
    width = model.out_dim * sum(p[0].numel() for p in params.values())  # C P numbers per example
    if chunk is None:
        chunk = max(1, JACOBIAN_BUDGET // (width * like.element_size()))
    check_int("chunk", chunk, low=1)
    n1, n2 = _member_inputs(x1, 0).shape[0], _member_inputs(x2, 0).shape[0]
    kernel = torch.zeros(model.members, n1, n2, dtype=like.dtype, device=like.device)
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            # EmbeddingMLP's embedding_bag has no vmap rule: torch loops over examples there and says so.
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet")
            for s in range(model.members):
                _fill_member(kernel[s], _member_jacobian(model, s), _member_inputs(x1, s), _member_inputs(x2, s),
                             same, chunk, model.out_dim)
    finally:
        model.train(was_training)
    return kernel


def kernel_regression(
    k_train: torch.Tensor, k_cross: torch.Tensor, y_train: torch.Tensor, ridge: float = 0.0
) -> torch.Tensor:
    """(S, N_test[, C]) kernel predictions K(test, train) (K(train, train) + ridge I)^+ y per member.

    k_train (S, n, n), k_cross (S, N_test, n), y_train (S, n) or (S, n, C). Solved in float64
    through the eigendecomposition of K(train, train). With ``ridge = 0`` it is the pseudo-inverse:
    eigenvalues at or below n * eps * lambda_max (eps of k_train's dtype, the precision the kernel
    was computed in) are dropped, so an ill-conditioned kernel gives the minimum-norm least-squares
    fit instead of blowing up. That is exactly where gradient flow on the squared error of the
    linearized network, started from the zero function, converges: it never moves the function
    along the kernel's null space. Returned in k_cross's dtype.
    """
    ridge = check_float("ridge", ridge, low=0.0)
    _check_kernel("k_train", k_train, square=True)
    _check_kernel("k_cross", k_cross)
    members, n = k_train.shape[:2]
    if k_cross.shape[0] != members or k_cross.shape[2] != n:
        raise ValueError(f"k_cross must be (S={members}, N_test, n={n}) like k_train; got {tuple(k_cross.shape)}")
    if not isinstance(y_train, torch.Tensor) or y_train.dim() not in (2, 3) or y_train.shape[:2] != (members, n):
        shape = tuple(y_train.shape) if isinstance(y_train, torch.Tensor) else type(y_train).__name__
        raise ValueError(f"y_train must be (S={members}, n={n}) or (S, n, C) targets; got {shape}")
    y = y_train.to(torch.float64)
    y = y.unsqueeze(-1) if y.dim() == 2 else y
    values, vectors = torch.linalg.eigh(_symmetric(k_train).to(torch.float64))  # (S, n), (S, n, n)
    if ridge > 0:
        inverse = 1 / (values + ridge)
    else:
        cutoff = n * torch.finfo(k_train.dtype).eps * values.abs().amax(-1, keepdim=True)
        inverse = torch.where(values > cutoff, 1 / values.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
    coefficients = vectors @ (inverse.unsqueeze(-1) * (vectors.transpose(1, 2) @ y))  # (S, n, C)
    predictions = k_cross.to(torch.float64) @ coefficients
    return (predictions if y_train.dim() == 3 else predictions.squeeze(-1)).to(k_cross.dtype)


def kernel_alignment(k: torch.Tensor, y: torch.Tensor, centered: bool = False) -> torch.Tensor:
    """(S,) kernel-target alignment <K, y y^T>_F / (||K||_F ||y y^T||_F) (Cristianini et al. 2001).

    k (S, n, n); y (S, n) targets or (S, n, C) (then y y^T is Y Y^T: pass class labels one-hot).
    1 when K is a positive multiple of y y^T. ``centered=True`` centres both matrices first, H K H
    with H = I - 11^T/n (Cortes et al. 2012), so that a constant offset in the kernel or the
    targets does not count as alignment.
    """
    _check_kernel("k", k, square=True)
    members, n = k.shape[:2]
    if not isinstance(y, torch.Tensor) or y.dim() not in (2, 3) or y.shape[:2] != (members, n):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y must be (S={members}, n={n}) or (S, n, C) real targets; got {shape}")
    if not y.is_floating_point():
        raise ValueError(f"y must hold real targets (one-hot vectors for classes); got dtype {y.dtype}")
    y = y.to(torch.float64)
    y = y.unsqueeze(-1) if y.dim() == 2 else y
    kernel, target = k.to(torch.float64), y @ y.transpose(1, 2)
    if centered:
        kernel, target = _center(kernel), _center(target)
    inner = (kernel * target).sum((1, 2))
    norms = torch.linalg.matrix_norm(kernel) * torch.linalg.matrix_norm(target)
    return (inner / norms).to(k.dtype)


def relative_kernel_change(k0: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(S,) ||K - K0||_F / ||K0||_F per member: how far training moved the kernel (small = lazy)."""
    _check_kernel("k0", k0)
    _check_kernel("k", k)
    if k.shape != k0.shape:
        raise ValueError(f"k must have k0's shape {tuple(k0.shape)}; got {tuple(k.shape)}")
    return torch.linalg.matrix_norm(k - k0) / torch.linalg.matrix_norm(k0)


def _fill_member(kernel: torch.Tensor, jacobian, a: torch.Tensor, b: torch.Tensor, same: bool, chunk: int,
                 outputs: int) -> None:
    """kernel (N1, N2) <- one member's J(a) J(b)^T / C, ``chunk`` rows of jacobian at a time; when a is
    b only the blocks on and above the diagonal are computed."""
    for i, rows_i in _blocks(len(a), chunk):
        j_i = jacobian(a[rows_i])
        for j, rows_j in _blocks(len(b), chunk):
            if same and j < i:
                continue  # the lower blocks are the mirror of the upper ones
            j_j = j_i if same and j == i else jacobian(b[rows_j])
            block = sum(u @ v.T for u, v in zip(j_i, j_j)) / outputs
            kernel[rows_i, rows_j] = block
            if same and j > i:
                kernel[rows_j, rows_i] = block.T


def _member_jacobian(model: Ensemble, member: int):
    """x (n, ...) -> the jacobians of member ``member``'s outputs on x, one (n, C * numel) tensor
    per parameter tensor, from that member's slice of the parameters and buffers alone."""
    part = slice(member, member + 1)
    params = {name: p[part].detach() for name, p in model.named_parameters()}
    buffers = {name: b[part] for name, b in model.named_buffers()}

    def output(params: dict[str, torch.Tensor], x_one: torch.Tensor) -> torch.Tensor:
        return functional_call(model, params | buffers, (x_one[None, None],)).reshape(-1)  # (C,)

    per_example = vmap(jacrev(output), in_dims=(None, 0))

    def jacobian(x: torch.Tensor) -> list[torch.Tensor]:
        return [j.reshape(len(x), -1) for j in per_example(params, x).values()]  # each (n, C numel)

    return jacobian


def _check_inputs(name: str, model: Ensemble, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of inputs; got {type(x).__name__}")
    if model.in_dim is not None:
        if not x.is_floating_point() or x.dim() not in (2, 3) or x.shape[-1] != model.in_dim:
            raise ValueError(f"{name} must be real inputs (N, {model.in_dim}) or (S, N, {model.in_dim}); "
                             f"got {x.dtype} {tuple(x.shape)}")
    elif x.is_floating_point() or x.dim() not in (2, 3) or x.shape[-1] != 2:
        raise ValueError(f"{name} must be token pairs (N, 2) or (S, N, 2) of integer ids; "
                         f"got {x.dtype} {tuple(x.shape)}")
    elif model.vocab is not None and (int(x.min()) < 0 or int(x.max()) >= model.vocab):
        raise ValueError(f"{name} must hold token ids in [0, {model.vocab - 1}]; got ids in "
                         f"[{int(x.min())}, {int(x.max())}]")
    if x.dim() == 3 and x.shape[0] != model.members:
        raise ValueError(f"{name} must be shared (N, ...) or one set per member (S={model.members}, N, ...); "
                         f"got {tuple(x.shape)}")
    if x.shape[-2] == 0:
        raise ValueError(f"{name} must hold at least one example; got {tuple(x.shape)}")
    return x


def _member_inputs(x: torch.Tensor, member: int) -> torch.Tensor:
    return x[member] if x.dim() == 3 else x


def _blocks(n: int, chunk: int) -> Iterator[tuple[int, slice]]:
    for i, start in enumerate(range(0, n, chunk)):
        yield i, slice(start, min(start + chunk, n))


def _check_kernel(name: str, k, square: bool = False) -> None:
    ok = isinstance(k, torch.Tensor) and k.is_floating_point() and k.dim() == 3
    if not ok or (square and k.shape[1] != k.shape[2]):
        shape = tuple(k.shape) if isinstance(k, torch.Tensor) else type(k).__name__
        kind = "(S, n, n)" if square else "(S, N1, N2)"
        raise ValueError(f"{name} must be a real {kind} tensor of per-member kernels; got {shape}")


def _symmetric(k: torch.Tensor) -> torch.Tensor:
    return (k + k.transpose(1, 2)) / 2


def _center(k: torch.Tensor) -> torch.Tensor:
    """H K H with H = I - 11^T / n: rows and columns of each (n, n) matrix made to sum to zero."""
    k = k - k.mean(1, keepdim=True)
    return k - k.mean(2, keepdim=True)
