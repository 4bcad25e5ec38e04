"""Robustness off the training distribution (distribution-shift chapter): group accuracies and the
group-robust training objectives, last-layer retraining, probit fits for "accuracy on the line",
and L-infinity attacks (FGSM, PGD) with adversarial training.

Every function works on ensembles: inputs (S, B, D), outputs (S, B, C), one result per member.

- :func:`group_accuracies`, :func:`worst_group_accuracy`: accuracy within each group.
- :class:`GroupObjective`: a :class:`genlib.core.train.Penalty` that turns each member's mean loss
  into a group-weighted one: ERM, group reweighting, or group DRO (Sagawa et al. 2020).
- :func:`refit_readout`: last-layer retraining on given features (Kirichenko et al. 2023).
- :func:`probit`, :func:`probit_fit`: accuracies on a probit scale and a least-squares line
  through them (Miller et al. 2021).
- :func:`fgsm`, :func:`pgd_attack`, :func:`robust_accuracy`, :class:`AdversarialObjective`: the
  L-infinity attacks of Goodfellow et al. 2015 and Madry et al. 2018, and training on them.
- :func:`linear_margin_distance`: the exact L2 and L-infinity distances to a linear boundary.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..core._validate import check_choice, check_float, check_int
from ..core.losses import per_example_loss
from ..core.models import MLP, Ensemble

GROUP_METHODS = ("erm", "reweight", "dro")
Forward = Callable[[torch.Tensor], torch.Tensor]  # (S, B, D) -> (S, B, C)


def check_share(name: str, value: float) -> float:
    """A share (of examples, of groups) must lie in [0, 1]."""
    return check_float(name, value, 0.0, 1.0)


def check_epsilon(epsilon: float) -> float:
    """An attack radius must be a number >= 0."""
    return check_float("epsilon", epsilon, 0.0)


# --- groups ---


def group_accuracies(outputs: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """(S, n_groups) accuracy of each member within each group: outputs (S, B, C), labels and
    group ids (S, B) (or (B,) for all members); NaN for a group with no example."""
    check_int("n_groups", n_groups, low=1)
    if groups.dim() == 1:
        groups = groups.expand(labels.shape)
    if groups.shape != labels.shape:
        raise ValueError(f"groups must have the labels' shape {tuple(labels.shape)}; got {tuple(groups.shape)}")
    if len(groups) and (int(groups.min()) < 0 or int(groups.max()) >= n_groups):
        raise ValueError(f"groups must hold ids in [0, {n_groups - 1}]; got ids from {int(groups.min())} "
                         f"to {int(groups.max())}")
    correct = (outputs.argmax(-1) == labels).double()
    one_hot = F.one_hot(groups, n_groups).double()  # (S, B, G)
    counts = one_hot.sum(1)
    hits = torch.einsum("sb,sbg->sg", correct, one_hot)
    return torch.where(counts > 0, hits / counts.clamp(min=1), torch.nan)


def worst_group_accuracy(outputs: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor,
                         n_groups: int) -> torch.Tensor:
    """(S,) the lowest accuracy over the groups that have examples."""
    acc = group_accuracies(outputs, labels, groups, n_groups)
    return torch.where(torch.isnan(acc), torch.inf, acc).min(-1).values


class GroupObjective:
    """A :class:`~genlib.core.train.Penalty` that replaces each member's mean training loss by a
    weighted sum of its group losses, sum_g q_g L_g (L_g the mean loss over the batch's examples of
    group g), one method per member:

    - ``"erm"``: no change (the penalty is 0): the plain mean loss;
    - ``"reweight"``: q_g = 1 / G over the G groups present in the batch: every group present counts
      the same however few its examples;
    - ``"dro"``: online group DRO (Sagawa et al. 2020, their Algorithm 1 with a batch of each group):
      q is kept across steps and after each batch multiplied by exp(``step_size`` * L_g) for the
      groups present, then normalized, so that weight flows to the group with the highest loss; the
      step then descends the weighted loss with the new q (renormalized over the groups present).

    Sagawa et al. train both on group-balanced batches (each group equally likely): the data should
    be sampled that way (:class:`genlib.experiments.distribution_shift.GroupShiftSetup` resamples the
    training images of these members); on batches drawn from a skewed training set a rare group is
    absent from most batches and the weights act only on the batches that hold it.

    The training loop already adds the mean loss, so the penalty returned is sum_g q_g L_g minus
    that mean: their sum, whose gradient the loop takes, is the weighted objective (this assumes the
    loop's loss is ``loss`` on the same outputs and labels, with no label smoothing). The group of
    example i of member s is ``groups[s, i]`` (indices into the data set, as the loop's ``idx``).
    """

    def __init__(self, groups: torch.Tensor, labels: torch.Tensor, n_groups: int, methods: Sequence[str],
                 step_size: float = 0.01, loss: str = "cross_entropy"):
        check_int("n_groups", n_groups, low=1)
        for m in methods:
            check_choice("methods", m, GROUP_METHODS)
        if len(methods) != len(labels):
            raise ValueError(f"methods must give one method per member ({len(labels)}); got {len(methods)}")
        self.step_size = check_float("step_size", step_size, 0.0)
        self.groups, self.labels, self.n_groups, self.loss = groups, labels, n_groups, loss
        self.method_ids = torch.tensor([GROUP_METHODS.index(m) for m in methods])
        self.q = torch.full((len(methods), n_groups), 1.0 / n_groups)  # group DRO's weights

    def to(self, device, dtype) -> GroupObjective:
        self.groups, self.labels = self.groups.to(device), self.labels.to(device)
        self.method_ids, self.q = self.method_ids.to(device), self.q.to(device, dtype)
        return self

    def __call__(self, outputs: torch.Tensor, idx: torch.Tensor, members: slice) -> torch.Tensor:
        rows = torch.arange(len(idx), device=idx.device)[:, None]
        groups = self.groups[members][rows, idx]  # (S_block, B)
        losses = per_example_loss(outputs, self.labels[members][rows, idx], self.loss)
        one_hot = F.one_hot(groups, self.n_groups).to(losses.dtype)  # (S_block, B, G)
        counts = one_hot.sum(1)
        group_loss = torch.einsum("sb,sbg->sg", losses, one_hot) / counts.clamp(min=1)
        present = (counts > 0).to(losses.dtype)
        method = self.method_ids[members]
        q = self.q[members]
        with torch.no_grad():  # group DRO: exponentiated-gradient step on the weights, then use them
            updated = q * torch.exp(self.step_size * group_loss.detach()) * present + q * (1 - present)
            updated = updated / updated.sum(-1, keepdim=True)
            self.q[members] = torch.where((method == 2)[:, None], updated, q)
            q = self.q[members]
        weights = torch.where((method == 1)[:, None], present / present.sum(-1, keepdim=True), q * present)
        weights = weights / weights.sum(-1, keepdim=True)
        weighted = (weights * group_loss).sum(-1)
        return torch.where(method == 0, torch.zeros_like(weighted), weighted - losses.mean(-1))


# --- last-layer retraining ---


def readout_features(model: Ensemble, x: torch.Tensor) -> torch.Tensor:
    """(S, B, width) the penultimate features of an MLP with a trained linear readout; a model
    with no readout to refit raises a ValueError that says so."""
    if not isinstance(model, MLP) or model.readout != "linear" or len(model.weights) < 2 or model.centered:
        kind = type(model).__name__ if not isinstance(model, MLP) else (
            f"MLP with readout={model.readout!r}, {len(model.weights) - (model.readout == 'linear')} hidden layers"
            f"{', centered' if model.centered else ''}")
        raise ValueError("model must be an MLP with a trained linear readout after at least one hidden layer "
                         f"(a readout to refit); got {kind}")
    with torch.no_grad():
        return model.features(x.to(next(model.parameters())))


def refit_readout(features: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float = 1e-3,
                  iterations: int = 100, standardize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Last-layer retraining (Kirichenko et al. 2023): per member, the L2-penalized logistic
    regression (softmax, ``l2`` / 2 * ||w||^2, bias free of penalty) of ``labels`` (S, n) on
    ``features`` (S, n, d), solved by L-BFGS in float64. With ``standardize`` the features are
    standardized with the fit set's mean and spread first (the penalty then acts on the standardized
    weights; folded back into the returned ones). Returns (w (S, d, C), b (S, 1, C))
    acting on the raw features, as :meth:`genlib.core.models.MLP.readout_layer` does."""
    check_int("num_classes", num_classes, low=2)
    check_float("l2", l2, 0.0)
    check_int("iterations", iterations, low=1)
    if features.dim() != 3 or labels.shape != features.shape[:2]:
        raise ValueError(f"features must be (S, n, d) and labels (S, n); got {tuple(features.shape)} and "
                         f"{tuple(labels.shape)}")
    f = features.double()
    mean, scale = f.mean(1, keepdim=True), f.std(1, keepdim=True).clamp(min=1e-6)
    if not standardize:
        mean, scale = torch.zeros_like(mean), torch.ones_like(scale)
    z = (f - mean) / scale
    members, _, dim = z.shape
    w = torch.zeros(members, dim, num_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(members, 1, num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], lr=1, max_iter=iterations, tolerance_grad=1e-10,
                                  tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        logits = torch.baddbmm(b, z, w)
        # members are independent: the sum of their objectives has each one's gradient
        total = F.cross_entropy(logits.reshape(-1, num_classes), labels.reshape(-1), reduction="sum") / z.shape[1]
        total = total + 0.5 * l2 * w.pow(2).sum()
        total.backward()
        return total

    optimizer.step(closure)
    w_raw = (w / scale.transpose(1, 2)).detach()
    b_raw = (b - torch.bmm(mean / scale, w)).detach()
    return w_raw.to(features.dtype), b_raw.to(features.dtype)


# --- accuracy on the line ---


def probit(accuracy) -> np.ndarray:
    """Phi^-1(accuracy), accuracies clipped to [1e-4, 1 - 1e-4] (Miller et al. 2021's axes)."""
    from scipy.stats import norm  # imported when used

    a = np.asarray(accuracy, dtype=float)
    if np.any((a < 0) | (a > 1)) or np.any(np.isnan(a)):
        raise ValueError(f"accuracy must lie in [0, 1]; got values from {np.nanmin(a)!r} to {np.nanmax(a)!r}")
    return norm.ppf(np.clip(a, 1e-4, 1 - 1e-4))


def probit_fit(id_accuracy, shifted_accuracy) -> dict[str, float]:
    """Least-squares line shifted = slope * id + intercept on the probit scale, and its R^2
    (the share of the variance of probit(shifted) that the line explains)."""
    x, y = probit(id_accuracy).ravel(), probit(shifted_accuracy).ravel()
    if x.shape != y.shape or len(x) < 3:
        raise ValueError(f"id_accuracy and shifted_accuracy must hold the same number (>= 3) of models; got "
                         f"{len(x)} and {len(y)}")
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1 - (residual**2).sum() / total if total > 0 else float("nan")
    return {"slope": float(slope), "intercept": float(intercept), "r2": float(r2),
            "pearson": float(np.corrcoef(x, y)[0, 1])}


# --- adversarial examples ---


def _input_gradient(forward: Forward, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Gradient of every member's summed cross-entropy with respect to its inputs (S, B, D)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(forward(x).flatten(0, 1), labels.flatten(), reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(forward: Forward, x: torch.Tensor, labels: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Goodfellow et al. 2015's fast gradient sign method: x + epsilon * sign(grad_x loss), inputs
    (S, B, D), labels (S, B): one step to the corner of the L-infinity ball that a linear model of
    the loss ranks worst."""
    epsilon = check_epsilon(epsilon)
    return (x + epsilon * _input_gradient(forward, x, labels).sign()).detach()


def pgd_attack(forward: Forward, x: torch.Tensor, labels: torch.Tensor, epsilon: float, steps: int = 10,
               step_size: float | None = None, random_start: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Madry et al. 2018's projected gradient descent in the L-infinity ball of radius
    ``epsilon``: ``steps`` signed-gradient ascent steps on the cross-entropy, each of
    ``step_size`` (default 2.5 * epsilon / steps), projected back into the ball around x; from x or,
    with ``random_start``, a uniform point of the ball. Every member attacks its own inputs: x (S, B, D),
    labels (S, B). Inputs are not clipped to a pixel range."""
    epsilon = check_epsilon(epsilon)
    check_int("steps", steps, low=1)
    step = 2.5 * epsilon / steps if step_size is None else check_float("step_size", step_size, 0.0)
    x = x.detach()
    adv = x
    if random_start and epsilon > 0:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        adv = x + epsilon * (2 * noise - 1)
    for _ in range(steps):
        adv = adv + step * _input_gradient(forward, adv, labels).sign()
        adv = torch.max(torch.min(adv, x + epsilon), x - epsilon).detach()
    return adv


def robust_accuracy(model: Ensemble, x: torch.Tensor, labels: torch.Tensor, epsilon: float, steps: int = 10,
                    step_size: float | None = None) -> torch.Tensor:
    """(S,) each member's accuracy on its inputs x (S, B, D) attacked by :func:`pgd_attack`
    (epsilon 0: the clean accuracy)."""
    epsilon = check_epsilon(epsilon)
    x = x.to(next(model.parameters()))
    was_training = model.training
    model.eval()
    try:
        adv = pgd_attack(model, x, labels, epsilon, steps, step_size) if epsilon > 0 else x
        with torch.no_grad():
            return (model(adv).argmax(-1) == labels).float().mean(-1)
    finally:
        model.train(was_training)


class AdversarialObjective:
    """A :class:`~genlib.core.train.Penalty` for adversarial training: each member's loss gains its
    mean cross-entropy at :func:`pgd_attack`'s inputs (radius ``epsilon[s]``, per member; 0 adds
    nothing), so the objective is the clean loss plus the attacked loss (Goodfellow et al. 2015's
    mix of clean and adversarial examples, with weight 1/2 each, times 2). ``data`` holds the
    inputs the loop's ``idx`` index; the attack runs on the member's own weights in the block."""

    def __init__(self, model: Ensemble, data, epsilon: Sequence[float], steps: int = 5):
        if len(epsilon) != model.members:
            raise ValueError(f"epsilon must give one radius per member ({model.members}); got {len(epsilon)}")
        for e in epsilon:
            check_epsilon(e)
        check_int("steps", steps, low=1)
        self.model, self.data, self.steps = model, data, steps
        self.epsilon = torch.tensor([float(e) for e in epsilon])

    def to(self, device, dtype) -> AdversarialObjective:
        self.data, self.epsilon = self.data.to(device, dtype), self.epsilon.to(device, dtype)
        return self

    def __call__(self, outputs: torch.Tensor, idx: torch.Tensor, members: slice) -> torch.Tensor:
        x, labels = self.data.batch(idx)
        eps = self.epsilon[members].view(-1, 1, 1)
        state = self.model.member_state(members)

        def forward(inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(self.model, state, (inputs,))

        frozen = {k: v.detach() for k, v in state.items()}

        def attack_forward(inputs: torch.Tensor) -> torch.Tensor:  # the attack does not train the weights
            return functional_call(self.model, frozen, (inputs,))

        adv = x.detach()
        step = 2.5 * eps / self.steps
        for _ in range(self.steps):
            adv = adv + step * _input_gradient(attack_forward, adv, labels).sign()
            adv = torch.max(torch.min(adv, x + eps), x - eps).detach()
        attacked = per_example_loss(forward(adv), labels, "cross_entropy").mean(-1)
        return torch.where(self.epsilon[members] > 0, attacked, torch.zeros_like(attacked))


def linear_margin_distance(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Exact distances of points x (S, B, D) to the boundary w . x + b = 0 of a binary linear model
    (w (S, D), b (S,)): in L2, |w . x + b| / ||w||_2 (the smallest L2 perturbation that flips the
    decision) and in L-infinity, |w . x + b| / ||w||_1 (the radius at which the worst corner
    flips it: the closed form behind FGSM on a linear model). Each (S, B)."""
    value = torch.einsum("sbd,sd->sb", x, w) + b[:, None]
    return {"l2": value.abs() / w.norm(dim=1, keepdim=True), "linf": value.abs() / w.abs().sum(1, keepdim=True)}
