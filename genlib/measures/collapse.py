"""Neural collapse (Papyan, Han and Donoho 2020), one value per ensemble member (end-of-training chapter).

From penultimate features h (S, N, d) with class ids (S, N) in 0..K-1: the class means mu_c, the
global mean mu_G (over all examples) and the centred class means M = (mu_c - mu_G)_c, (S, K, d).
Late in training (i) features collapse onto their class means (NC1 -> 0), (ii) the centred means
form a simplex equiangular tight frame: equal norms, pairwise cosines -1/(K-1) (NC2), (iii) the
classifier's rows align with them (NC3) and (iv) the network classifies like the nearest class
mean (NC4). Everything is computed in float64 and returned as (S,) float64 tensors (on the CPU for
MPS inputs, which have no float64).
"""
from __future__ import annotations

import torch

from ..core._validate import check_choice, check_int
from ..core.data import TaskData
from ..core.models import MLP
from ..core.train import check_sizes, evaluation_mode

PINV_RTOL = 1e-10  # eigenvalues of Sigma_B below this share of its largest count as zero


def within_class_variation(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(S,) NC1 = Tr(Sigma_W Sigma_B^+) / K: the within-class covariance, measured against the spread
    of the class means.

    Sigma_W = mean over examples of (h - mu_c)(h - mu_c)^T, Sigma_B = mean over classes of
    (mu_c - mu_G)(mu_c - mu_G)^T. Sigma_B has rank at most K - 1 and its null directions come out
    ~1e-16 of its largest eigenvalue in float64: eigenvalues below ``PINV_RTOL`` of the largest are
    treated as zero (torch.linalg.pinv's rtol). Variation outside the span of the means counts 0.
    A member whose features are not all finite (a diverged run) gets NaN; the others are unaffected.
    """
    h, means, centred = _class_means(features, labels, num_classes)
    within = h - means.gather(1, labels.to(h.device)[..., None].expand_as(h))  # (S, N, d)
    sigma_w = within.transpose(1, 2) @ within / h.shape[1]  # (S, d, d)
    sigma_b = centred.transpose(1, 2) @ centred / num_classes  # (S, d, d)
    finite = torch.isfinite(sigma_w).all(-1).all(-1) & torch.isfinite(sigma_b).all(-1).all(-1)  # (S,)
    # LAPACK's eigensolver fails on a NaN anywhere in the batch: solve on zeros there, report NaN
    inverse = _pseudo_inverse(torch.where(finite[:, None, None], sigma_b, 0.0))
    nc1 = (torch.where(finite[:, None, None], sigma_w, 0.0) * inverse.transpose(1, 2)).sum((1, 2)) / num_classes
    return torch.where(finite, nc1, torch.nan)


def _pseudo_inverse(sigma: torch.Tensor) -> torch.Tensor:
    """(S, d, d) pseudo-inverses of symmetric matrices, by eigendecomposition. One member on which
    the eigensolver fails to converge (features of a run blowing up) would fail the whole batch:
    then each member is solved alone, by SVD where its eigendecomposition fails, NaN where both do."""
    try:
        return torch.linalg.pinv(sigma, rtol=PINV_RTOL, hermitian=True)
    except torch.linalg.LinAlgError:
        out = torch.full_like(sigma, torch.nan)
        for s, matrix in enumerate(sigma):
            for hermitian in (True, False):
                try:
                    out[s] = torch.linalg.pinv(matrix, rtol=PINV_RTOL, hermitian=hermitian)
                    break
                except torch.linalg.LinAlgError:
                    continue
        return out


def equinorm(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(S,) NC2, norms: std / mean over classes of ||mu_c - mu_G|| (sample std, K - 1 in the denominator)."""
    norms = _class_means(features, labels, num_classes)[2].norm(dim=-1)  # (S, K)
    return norms.std(-1) / norms.mean(-1)


def equiangularity(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(S,) NC2, angles: mean over pairs c != c' of |cos(mu_c - mu_G, mu_c' - mu_G) + 1/(K-1)|."""
    centred = _class_means(features, labels, num_classes)[2]
    unit = centred / centred.norm(dim=-1, keepdim=True)
    cos = unit @ unit.transpose(1, 2)  # (S, K, K)
    off = ~torch.eye(num_classes, dtype=torch.bool, device=cos.device)
    return (cos + 1 / (num_classes - 1)).abs()[:, off].mean(-1)


def self_duality(features: torch.Tensor, labels: torch.Tensor, num_classes: int, weight: torch.Tensor) -> torch.Tensor:
    """(S,) NC3 = ||W^T / ||W||_F - M / ||M||_F||_F^2: the classifier rows W^T (K, d) against the
    centred class means M (K, d); ``weight`` (S, d, K) as genlib's MLP stores its last layer."""
    centred = _class_means(features, labels, num_classes)[2]
    _check_weight(weight, features, num_classes)
    rows = weight.detach().to(centred).transpose(1, 2)  # (S, K, d)
    return (_unit(rows) - _unit(centred)).pow(2).sum((1, 2))


def ncc_mismatch(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, weight: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """(S,) NC4: share of examples whose prediction argmax(h W + b) differs from the nearest class
    mean's argmin_c ||h - mu_c|| (class means from the same features). ``bias`` (S, 1, K) or None."""
    h, means, _ = _class_means(features, labels, num_classes)
    _check_weight(weight, features, num_classes)
    logits = h @ weight.detach().to(h)  # (S, N, K)
    if bias is not None:
        _check_bias(bias, features, num_classes)
        logits = logits + bias.detach().to(h)
    nearest = torch.cdist(h, means).argmin(-1)  # (S, N)
    return (logits.argmax(-1) != nearest).to(h.dtype).mean(-1)


def neural_collapse(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """All the measures that apply, each (S,): "nc1", "equinorm", "equiangularity" and, given the
    last layer's ``weight`` (S, d, K) (and ``bias`` (S, 1, K)), "self_duality" and "ncc_mismatch"."""
    if bias is not None and weight is None:
        raise ValueError("bias must come with weight (the last layer's weights); got a bias and weight=None")
    out = {
        "nc1": within_class_variation(features, labels, num_classes),
        "equinorm": equinorm(features, labels, num_classes),
        "equiangularity": equiangularity(features, labels, num_classes),
    }
    if weight is not None:
        out["self_duality"] = self_duality(features, labels, num_classes, weight)
        out["ncc_mismatch"] = ncc_mismatch(features, labels, num_classes, weight, bias)
    return out


def model_collapse(model: MLP, data: TaskData, split: str = "train") -> dict[str, torch.Tensor]:
    """:func:`neural_collapse` of an MLP's penultimate features on one of ``data``'s evaluation sets
    (its training examples by default), in evaluation mode, with its last layer as the classifier."""
    x, labels = _evaluation_set(model, data, split)
    with evaluation_mode(model):
        h = model.features(x)
        weight, bias = model.readout_layer()
    return neural_collapse(h, labels, data.num_classes, weight, bias)


def nc1_by_layer(model: MLP, data: TaskData, split: str = "train") -> dict[str, torch.Tensor]:
    """{"layer1": (S,), ...}: NC1 of every hidden layer's units on one evaluation set, in evaluation
    mode. Collapse builds up through depth: features closer to the input, which cannot move as far
    from the data, collapse less (He and Su 2023; Tirer et al. 2023)."""
    x, labels = _evaluation_set(model, data, split)
    with evaluation_mode(model):
        return {f"layer{i + 1}": within_class_variation(model.features(x, layer=i), labels, data.num_classes)
                for i in range(len(model.weights) - 1)}


def _evaluation_set(model: MLP, data: TaskData, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked arguments; the inputs (on the model's device and dtype) and labels of one evaluation set."""
    if not isinstance(model, MLP):
        raise ValueError(f"model must be a genlib.core.models.MLP; got {type(model).__name__}")
    check_sizes(model, data)
    if data.num_classes is None:
        raise ValueError("data must be a classification task (num_classes set); got num_classes=None")
    sets = data.eval_sets()
    check_choice("split", split, sets)
    x, labels = data.batch(sets[split].to(data.y.device))
    return x.to(next(model.parameters())), labels


def _class_means(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Checked arguments -> features (S, N, d), class means (S, K, d) and centred class means
    (S, K, d), all float64."""
    check_int("num_classes", num_classes, low=2)
    if not isinstance(features, torch.Tensor) or features.dim() != 3 or not features.is_floating_point():
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"features must be a floating-point tensor (S, N, d); got {shape}")
    if (not isinstance(labels, torch.Tensor) or labels.shape != features.shape[:2] or labels.is_floating_point()
            or labels.dtype == torch.bool):
        shape = (labels.dtype, tuple(labels.shape)) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be integer class ids shaped like features' (S, N) = "
                         f"{tuple(features.shape[:2])}; got {shape}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be class ids in [0, {num_classes - 1}]; got ids from {int(labels.min())} "
                         f"to {int(labels.max())}")
    h = features.detach().to("cpu" if features.device.type == "mps" else features.device, torch.float64)  # MPS: no fp64
    one_hot = torch.nn.functional.one_hot(labels.to(h.device), num_classes).double()  # (S, N, K)
    counts = one_hot.sum(1)  # (S, K)
    if (counts == 0).any():
        s, c = (int(v) for v in (counts == 0).nonzero()[0])
        raise ValueError(f"labels must give every class at least one example in every member; member {s} "
                         f"has none of class {c}")
    means = one_hot.transpose(1, 2) @ h / counts[..., None]  # (S, K, d)
    return h, means, means - h.mean(1, keepdim=True)


def _unit(a: torch.Tensor) -> torch.Tensor:
    """(S, K, d) matrices, each divided by its Frobenius norm."""
    return a / a.flatten(1).norm(dim=1)[:, None, None]


def _check_weight(weight: torch.Tensor, features: torch.Tensor, num_classes: int) -> None:
    expected = (features.shape[0], features.shape[-1], num_classes)
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != expected:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must be the last layer's weights (S, d, K) = {expected}; got {shape}")


def _check_bias(bias: torch.Tensor, features: torch.Tensor, num_classes: int) -> None:
    expected = (features.shape[0], 1, num_classes)
    if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != expected:
        shape = tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__
        raise ValueError(f"bias must be the last layer's biases (S, 1, K) = {expected}; got {shape}")
