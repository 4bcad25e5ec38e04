"""Measures that are meant to predict generalization, one value per ensemble member, and the
bounds they come from (what-predicts-generalization chapter).

- Norms of a ReLU MLP (:class:`genlib.core.models.MLP`), read off the weights as the network uses
  them (unit and weight masks applied): :func:`layer_weights`, :func:`frobenius_norms`,
  :func:`spectral_norms`, :func:`parameter_norm_squared`, :func:`path_norm_squared`.
- Of the function: :func:`output_margin` (a low quantile of the training margins),
  :func:`perturbed_error` and :func:`flatness_sigma` (the largest weight noise that keeps the
  training error within a bound: Jiang et al. 2020's PAC-Bayes flatness).
- Rank agreement with the generalization gap: :func:`kendall_tau` (scipy's) and
  :func:`granulated_tau` (Jiang et al. 2020: one hyperparameter varied at a time).
- Per-example gradients by ``torch.func`` (:func:`per_example_gradients`) and their coherence
  (:func:`gradient_coherence`; Chatterjee and Zielinski 2022).
- Bounds: :func:`kl_inverse`, :func:`gaussian_kl`, :func:`pac_bayes_bound` (Langford and Seeger's
  kl form, with a Monte-Carlo estimate of the posterior's training error bounded as Dziugaite and
  Roy 2017 do) and :func:`norm_margin_bound` (a Rademacher bound through Frobenius norms).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import stats
from torch.func import functional_call, grad, vmap

from ..core._validate import check_float, check_int
from ..core.losses import per_example_loss
from ..core.models import MLP
from ..core.train import evaluation_mode


def _check_mlp(model) -> None:
    if not isinstance(model, MLP) or model.readout != "linear" or model.centered or model.norms is not None:
        raise ValueError(f"model must be a genlib MLP with a linear readout, not centered, without batch norm; "
                         f"got {type(model).__name__}")


def layer_weights(model: MLP) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """(weights, biases): each layer's (S, fan_in, out) weights and (S, 1, out) biases (None without
    biases) as the network uses them: pruned weights and the units a member does not have
    (``member_widths``) set to zero, so that a norm counts only what acts on the output."""
    _check_mlp(model)
    with torch.no_grad():
        weights = [w.detach().clone() for w in model.weight_masks.apply(list(model.weights))]
        biases = [b.detach().clone() for b in model.biases] if model.bias else [None] * len(weights)
        if model.masked:
            mask = model.unit_mask.to(weights[0])  # (S, 1, width)
            for i in range(len(weights)):
                if i < len(weights) - 1:  # the units this layer feeds
                    weights[i] = weights[i] * mask
                    if biases[i] is not None:
                        biases[i] = biases[i] * mask
                if i > 0:  # the units it reads
                    weights[i] = weights[i] * mask.transpose(1, 2)
    return weights, biases


def frobenius_norms(model: MLP) -> torch.Tensor:
    """(S, L) each layer's Frobenius norm ||W_l||_F (biases left out)."""
    return torch.stack([w.flatten(1).norm(dim=1) for w in layer_weights(model)[0]], dim=1)


def spectral_norms(model: MLP) -> torch.Tensor:
    """(S, L) each layer's spectral norm ||W_l||_2 (largest singular value; biases left out)."""
    return torch.stack([torch.linalg.matrix_norm(w, ord=2) for w in layer_weights(model)[0]], dim=1)


def parameter_norm_squared(model: MLP) -> torch.Tensor:
    """(S,) sum of the squares of every weight and bias the network uses."""
    weights, biases = layer_weights(model)
    return sum(t.pow(2).flatten(1).sum(1) for t in weights + [b for b in biases if b is not None])


def path_norm_squared(model: MLP) -> torch.Tensor:
    """(S,) the squared path norm (Neyshabur et al. 2015; as Jiang et al. 2020 compute it): every
    parameter squared, the network applied to the all-ones input, outputs summed. For a ReLU
    network every unit is then non-negative, so this is the sum over input-output paths of the
    product of their squared weights, plus the paths that start at a bias."""
    weights, biases = layer_weights(model)
    h = torch.ones(weights[0].shape[0], 1, weights[0].shape[1], dtype=weights[0].dtype)
    for w, b in zip(weights, biases):
        h = h @ w.pow(2) + (0 if b is None else b.pow(2))
    return h.sum(dim=(1, 2))


def output_margin(model, x: torch.Tensor, labels: torch.Tensor, quantile: float = 0.1) -> torch.Tensor:
    """(S,) the ``quantile`` of the margins f_y(x) - max_{j != y} f_j(x) over the examples x (S, n, d)
    with labels (S, n) (Jiang et al. 2020 take the 10th percentile rather than the minimum)."""
    check_float("quantile", quantile, 0.0, 1.0)
    with evaluation_mode(model):
        out = model(x.to(next(model.parameters())))
    true = out.gather(-1, labels[..., None].to(out.device))[..., 0]
    others = out.scatter(-1, labels[..., None].to(out.device), -torch.inf).amax(-1)
    return torch.quantile(true - others, quantile, dim=1)


def _as_member_vector(name: str, value, members: int, dtype) -> torch.Tensor:
    v = torch.as_tensor(value, dtype=dtype).reshape(-1)
    if v.numel() == 1:
        v = v.expand(members)
    if v.numel() != members or (v < 0).any():
        raise ValueError(f"{name} must be one number >= 0 or one per member ({members}); got {value!r}")
    return v


@torch.no_grad()
def perturbed_error(model, x: torch.Tensor, labels: torch.Tensor, sigma, draws: int = 8,
                    seed: int = 0) -> torch.Tensor:
    """(S,) each member's classification error on (x, labels), averaged over ``draws`` copies of its
    weights with Gaussian noise N(0, sigma_s^2) added to every parameter (``sigma`` one number or
    one per member). The draws are seeded, so the same sigma gives the same answer."""
    check_int("draws", draws, low=1)
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    first = next(iter(params.values()))
    sigma = _as_member_vector("sigma", sigma, model.members, first.dtype).to(first.device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    x, labels = x.to(first), labels.to(first.device)
    errors = torch.zeros(model.members, dtype=first.dtype, device=first.device)
    with evaluation_mode(model):
        for _ in range(draws):
            noisy = {k: p + sigma.view(-1, *[1] * (p.dim() - 1)) * torch.randn(p.shape, generator=g).to(p)
                     for k, p in params.items()}
            out = functional_call(model, noisy | buffers, (x,))
            errors += (out.argmax(-1) != labels).to(first.dtype).mean(-1)
    return errors / draws


def flatness_sigma(model, x: torch.Tensor, labels: torch.Tensor, tolerance: float = 0.1, draws: int = 8,
                   low: float = 1e-4, high: float = 1.0, iterations: int = 12, seed: int = 0) -> torch.Tensor:
    """(S,) the largest noise sigma (found by bisection on log sigma within [low, high], to a factor
    (high / low)^(2^-iterations)) at which the mean error of :func:`perturbed_error` stays within
    ``tolerance`` of the member's own error on (x, labels): Jiang et al. 2020's PAC-Bayes flatness
    search (their measure is 1 / sigma^2). A member still within the tolerance at ``high`` gets ``high``."""
    check_float("tolerance", tolerance, 0.0, 1.0, low_open=True)
    check_float("low", low, 0.0, low_open=True)
    check_float("high", high, low, low_open=True)
    check_int("iterations", iterations, low=1)
    base = perturbed_error(model, x, labels, 0.0, draws=1)
    lo = torch.full_like(base, math.log(low))
    hi = torch.full_like(base, math.log(high))
    top_ok = perturbed_error(model, x, labels, hi.exp(), draws, seed) <= base + tolerance
    for _ in range(iterations):
        mid = (lo + hi) / 2
        ok = perturbed_error(model, x, labels, mid.exp(), draws, seed) <= base + tolerance
        lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
    return torch.where(top_ok, torch.full_like(base, high), lo.exp())


def kendall_tau(measure, gap) -> float:
    """Kendall's tau-b (scipy.stats.kendalltau) between a measure and the generalization gap over
    networks: +1 when the measure orders every pair of networks as their gaps, -1 when reversed."""
    measure, gap = np.asarray(measure, dtype=float), np.asarray(gap, dtype=float)
    if measure.shape != gap.shape or measure.ndim != 1 or len(measure) < 2:
        raise ValueError(f"measure and gap must be two 1-d arrays of one length >= 2; got shapes "
                         f"{measure.shape} and {gap.shape}")
    return float(stats.kendalltau(measure, gap).statistic)


def granulated_tau(measure, gap, hyperparameters: dict[str, Sequence]) -> dict[str, float]:
    """Jiang et al. 2020's granulated Kendall coefficient: for each hyperparameter, Kendall's tau over
    the networks that differ in it alone (all other hyperparameters fixed), averaged over the
    settings of the others; ``{name: psi_name}`` plus ``"mean"``, their average (their Psi).
    ``hyperparameters`` maps each name to its value for every network; a group whose gaps or
    measures are all tied gives no tau and is left out."""
    measure, gap = np.asarray(measure, dtype=float), np.asarray(gap, dtype=float)
    n = len(measure)
    if not hyperparameters:
        raise ValueError("hyperparameters must name at least one hyperparameter; got {}")
    for name, values in hyperparameters.items():
        if len(values) != n:
            raise ValueError(f"hyperparameters[{name!r}] must give one value per network ({n}); got {len(values)}")
    names = list(hyperparameters)
    out = {}
    for name in names:
        groups: dict[tuple, list[int]] = {}
        for i in range(n):
            groups.setdefault(tuple(hyperparameters[o][i] for o in names if o != name), []).append(i)
        taus = []
        for members in groups.values():
            m, g = measure[members], gap[members]
            if len(members) >= 2 and np.ptp(m) > 0 and np.ptp(g) > 0:
                taus.append(kendall_tau(m, g))
        out[name] = float(np.mean(taus)) if taus else float("nan")
    out["mean"] = float(np.nanmean([out[k] for k in names]))
    return out


def per_example_gradients(model, x: torch.Tensor, labels: torch.Tensor, member: int,
                          loss: str = "cross_entropy") -> torch.Tensor:
    """(m, P) the gradient of member ``member``'s loss on each of its m examples x (S, m, d) with
    labels (S, m), parameters flattened in ``model.parameters()`` order; by ``torch.func``
    (vmap of grad over the examples)."""
    check_int("member", member, low=0, high=model.members - 1)
    names, params = zip(*model.named_parameters())
    part = slice(member, member + 1)
    own = {k: p[part].detach() for k, p in zip(names, params)}
    buffers = {k: v[part] for k, v in model.named_buffers()}
    xs, ys = x[member].to(params[0]), labels[member].to(params[0].device)

    def example_loss(state, xi, yi):
        out = functional_call(model, state | buffers, (xi[None, None],))
        return per_example_loss(out, yi[None, None], loss)[0, 0]

    with evaluation_mode(model), torch.enable_grad():
        grads = vmap(grad(example_loss), in_dims=(None, 0, 0))(own, xs, ys)
    return torch.cat([grads[k].reshape(len(xs), -1) for k in names], dim=1)


def gradient_coherence(gradients: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha, alpha / alpha_perp) of per-example gradients (m, P), as Chatterjee and Zielinski 2022
    define them: alpha = E_{z, z'}[g_z . g_z'] / E_z[g_z . g_z] for z, z' drawn independently from
    the m examples, i.e. ||mean g||^2 / mean ||g||^2, in [0, 1]; alpha_perp = 1 / m is its value
    for m pairwise orthogonal gradients, so alpha / alpha_perp = m alpha (their m-coherence) runs
    from 0 through 1 (orthogonal) to m (all equal)."""
    if gradients.dim() != 2 or len(gradients) < 2:
        raise ValueError(f"gradients must be (m, P) with m >= 2 examples; got shape {tuple(gradients.shape)}")
    alpha = gradients.mean(0).pow(2).sum() / gradients.pow(2).sum(1).mean()
    return alpha, alpha * len(gradients)


def binary_kl(q, p):
    """kl(q || p) between Bernoulli(q) and Bernoulli(p), elementwise (numpy arrays or floats)."""
    q, p = np.asarray(q, dtype=float), np.asarray(p, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(q > 0, q * np.log(q / p), 0.0)
        b = np.where(q < 1, (1 - q) * np.log((1 - q) / (1 - p)), 0.0)
    return a + b


def kl_inverse(q: float, c: float, iterations: int = 100) -> float:
    """The largest p in [q, 1] with kl(q || p) <= c (by bisection; the returned p is on the safe side,
    kl(q || p) >= c up to 2^-iterations in p, so it is an upper bound)."""
    check_float("q", q, 0.0, 1.0)
    check_float("c", c, low=0.0)
    lo, hi = float(q), 1.0
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if binary_kl(q, mid) <= c:
            lo = mid
        else:
            hi = mid
    return hi


def gaussian_kl(posterior_mean: torch.Tensor, prior_mean: torch.Tensor, sigma: float) -> float:
    """KL(N(w, sigma^2 I) || N(w0, sigma^2 I)) = ||w - w0||^2 / (2 sigma^2): posterior and prior
    of one isotropic sigma, centred on the trained weights w and on the initial ones w0."""
    check_float("sigma", sigma, 0.0, low_open=True)
    if posterior_mean.shape != prior_mean.shape:
        raise ValueError(f"prior_mean must have the posterior_mean's shape {tuple(posterior_mean.shape)}; "
                         f"got {tuple(prior_mean.shape)}")
    return float((posterior_mean - prior_mean).double().pow(2).sum() / (2 * sigma**2))


def pac_bayes_bound(sampled_error: float, draws: int, kl: float, n: int, delta: float = 0.05,
                    candidates: int = 1) -> float:
    """An upper bound, with probability >= 1 - delta over the n training examples and the ``draws``
    networks sampled from the posterior Q, on Q's expected test error:

    - the posterior's training error from its Monte-Carlo estimate ``sampled_error`` over ``draws``
      samples: e_hat(Q) <= kl^-1(sampled_error, ln(2 / delta') / draws) (Langford and Caruana's
      sample-convergence bound, as in Dziugaite and Roy 2017), delta' = delta / (2 K);
    - then Langford and Seeger's PAC-Bayes-kl bound (with Maurer's ln(2 sqrt(n) / delta)):
      e(Q) <= kl^-1(e_hat(Q), (KL(Q || P) + ln(2 sqrt(n) / delta'')) / n), delta'' = delta / (2 K),

    where K = ``candidates`` is the number of posteriors tried (a union bound, e.g. over a grid of
    sigmas: the bound holds for every one of them at once)."""
    check_float("sampled_error", sampled_error, 0.0, 1.0)
    check_int("draws", draws, low=1)
    check_float("kl", kl, low=0.0)
    check_int("n", n, low=1)
    check_float("delta", delta, 0.0, 1.0, low_open=True, high_open=True)
    check_int("candidates", candidates, low=1)
    train_error = kl_inverse(sampled_error, math.log(4 * candidates / delta) / draws)
    return kl_inverse(train_error, (kl + math.log(2 * math.sqrt(n) * 2 * candidates / delta)) / n)


def norm_margin_bound(margin_error: float, frobenius: Sequence[float], input_norm: float, n: int, margin: float,
                      classes: int, delta: float = 0.05) -> float:
    """A classical norm-based margin bound on the test error of a bias-free ReLU network
    x -> W_L^T relu(... relu(W_1^T x)) with k = ``classes`` outputs, inputs of norm <= ``input_norm``:

        error <= margin_error + (4 k / margin) R_n + sqrt(ln(1 / delta) / (2 n)),

    the multi-class margin bound (Mohri et al. 2018, Theorem 9.2) with R_n the Rademacher complexity
    of one output, R_n <= input_norm (sqrt(2 L ln 2) + 1) prod_l ||W_l||_F / sqrt(n) (Golowich et al.
    2018, Theorem 1; a row of W_L has norm <= ||W_L||_F). ``margin_error`` is the share of training
    examples with margin below ``margin``. It holds for the class of networks with these norms
    fixed in advance; choosing them after training costs a further union bound, left out (the
    bound is, if anything, optimistic)."""
    check_float("margin_error", margin_error, 0.0, 1.0)
    check_float("input_norm", input_norm, 0.0, low_open=True)
    check_int("n", n, low=1)
    check_float("margin", margin, 0.0, low_open=True)
    check_int("classes", classes, low=2)
    check_float("delta", delta, 0.0, 1.0, low_open=True, high_open=True)
    layers = len(frobenius)
    if layers < 1:
        raise ValueError("frobenius must give one norm per layer (at least one); got []")
    rademacher = input_norm * (math.sqrt(2 * layers * math.log(2)) + 1) * float(np.prod(frobenius)) / math.sqrt(n)
    return margin_error + 4 * classes / margin * rademacher + math.sqrt(math.log(1 / delta) / (2 * n))
