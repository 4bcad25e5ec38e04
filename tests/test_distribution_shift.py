"""The distribution-shift chapter's parts: attacks against closed forms and brute force on linear
models, group accuracies and objectives against direct computation, last-layer retraining, probit
fits, the data and the experiments' declared settings."""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genlib.core.data import TaskData
from genlib.core.models import MLP
from genlib.core.train import TrainConfig, train
from genlib.experiments.distribution_shift import (
    CUE_PIXELS,
    AdversarialSetup,
    GroupShiftSetup,
    LineSetup,
    TiltSetup,
    average_accuracy,
    group_balanced_training,
    shifted_digits,
    spurious_digits,
    worst_group,
)
from genlib.measures.robustness import (
    AdversarialObjective,
    GroupObjective,
    fgsm,
    group_accuracies,
    linear_margin_distance,
    pgd_attack,
    probit,
    probit_fit,
    readout_features,
    refit_readout,
    robust_accuracy,
    worst_group_accuracy,
)


def linear_ensemble(members=3, dim=4, classes=2, seed=0):
    """A bias-carrying linear model per member (an MLP with no hidden layer), in float64."""
    return MLP(dim, (), classes, list(range(seed, seed + members))).double()


# --- attacks ---


def test_fgsm_on_a_linear_binary_model_reaches_the_closed_form_worst_case():
    model = linear_ensemble()
    x = torch.randn(3, 50, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 2, (3, 50), generator=torch.Generator().manual_seed(2))
    eps = 0.3
    w, b = model.weights[0], model.biases[0]  # (S, D, 2), (S, 1, 2)
    w_diff = w[..., 1] - w[..., 0]  # the logit difference f = w_diff . x + b_diff
    b_diff = b[:, 0, 1] - b[:, 0, 0]
    sign = (2 * labels - 1).double()
    margin = sign * (torch.einsum("sbd,sd->sb", x, w_diff) + b_diff[:, None])
    worst = margin - eps * w_diff.abs().sum(1, keepdim=True)  # the closed form: min over the ball
    with torch.no_grad():
        adv = fgsm(model, x, labels, eps)
        attacked = sign * (torch.einsum("sbd,sd->sb", adv, w_diff) + b_diff[:, None])
    assert torch.allclose(attacked, worst.detach(), atol=1e-10)
    assert torch.allclose((adv - x).abs(), torch.full_like(x, eps))


def test_pgd_on_a_linear_model_matches_brute_force_over_the_corners_of_the_ball():
    model = linear_ensemble(members=2, dim=3, classes=3, seed=5)
    x = torch.randn(2, 10, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    labels = torch.randint(0, 3, (2, 10), generator=torch.Generator().manual_seed(4))
    eps = 0.2
    adv = pgd_attack(model, x, labels, eps, steps=20)
    assert ((adv - x).abs() <= eps + 1e-12).all()  # stays in the ball
    with torch.no_grad():
        got = F.cross_entropy(model(adv).flatten(0, 1), labels.flatten(), reduction="none").view(2, 10)
        corners = torch.tensor(list(itertools.product([-eps, eps], repeat=3)), dtype=torch.float64)  # (8, 3)
        best = torch.full((2, 10), -math.inf, dtype=torch.float64)
        for c in corners:  # the loss is convex in x for a linear model: its maximum over the box is at a corner
            loss = F.cross_entropy(model(x + c).flatten(0, 1), labels.flatten(), reduction="none").view(2, 10)
            best = torch.maximum(best, loss)
    assert torch.allclose(got, best, rtol=1e-9, atol=1e-10)


def test_robust_accuracy_of_a_linear_binary_model_is_the_share_beyond_the_linf_margin():
    model = linear_ensemble(members=2, dim=5)
    x = torch.randn(2, 200, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    labels = torch.randint(0, 2, (2, 200), generator=torch.Generator().manual_seed(7))
    w_diff = (model.weights[0][..., 1] - model.weights[0][..., 0]).detach()
    b_diff = (model.biases[0][:, 0, 1] - model.biases[0][:, 0, 0]).detach()
    distance = linear_margin_distance(w_diff, b_diff, x)["linf"]
    right = ((torch.einsum("sbd,sd->sb", x, w_diff) + b_diff[:, None] > 0).long() == labels)
    for eps in (0.0, 0.05, 0.2):
        expected = (right & (distance > eps)).double().mean(-1)
        assert torch.allclose(robust_accuracy(model, x, labels, eps, steps=1, step_size=eps).double(), expected)


def test_linear_margin_distance_is_where_the_decision_flips():
    w, b = torch.tensor([[3.0, -4.0]]), torch.tensor([1.0])
    x = torch.tensor([[[2.0, 0.0]]])  # f = 3 * 2 + 1 = 7
    d = linear_margin_distance(w, b, x)
    assert d["l2"].item() == pytest.approx(7 / 5)
    assert d["linf"].item() == pytest.approx(1.0)
    moved = x - d["linf"].item() * torch.sign(w)[:, None]  # the worst corner at that radius
    assert (moved @ w[0] + b).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("call", [
    lambda m, x, y: fgsm(m, x, y, -0.1),
    lambda m, x, y: pgd_attack(m, x, y, -1.0),
    lambda m, x, y: robust_accuracy(m, x, y, -0.5),
])
def test_a_negative_epsilon_is_refused_with_its_range(call):
    model = linear_ensemble(members=1)
    x, y = torch.zeros(1, 2, 4, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"epsilon must be >= 0.0; got -"):
        call(model, x, y)


# --- groups and their objectives ---


def test_group_accuracies_and_the_worst_group_by_hand():
    outputs = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]])  # predicts 0 1 0 1 1
    labels = torch.tensor([[0, 1, 1, 1, 0]])
    groups = torch.tensor([0, 0, 1, 1, 2])
    acc = group_accuracies(outputs, labels, groups, 4)
    assert acc[0, :3].tolist() == [1.0, 0.5, 0.0] and torch.isnan(acc[0, 3])
    assert worst_group_accuracy(outputs, labels, groups, 4).item() == 0.0
    with pytest.raises(ValueError, match=r"groups must hold ids in \[0, 1\]; got ids from 0 to 2"):
        group_accuracies(outputs, labels, groups, 2)


def _objective_gradient(method, outputs, labels, groups, step=0.0):
    objective = GroupObjective(groups, labels, 3, [method], step_size=step)
    idx = torch.arange(labels.shape[1])[None]
    out = outputs.clone().requires_grad_(True)
    total = F.cross_entropy(out[0], labels[0], reduction="none").mean() + objective(out, idx, slice(None)).sum()
    (grad,) = torch.autograd.grad(total, out)
    return grad, objective


def test_group_objective_gives_erm_reweighting_and_dro_their_gradients():
    g = torch.Generator().manual_seed(0)
    outputs = torch.randn(1, 12, 2, dtype=torch.float64, generator=g)
    labels = torch.randint(0, 2, (1, 12), generator=g)
    groups = torch.tensor([[0] * 8 + [1] * 3 + [2]])
    per_example = lambda o: F.cross_entropy(o[0], labels[0], reduction="none")  # noqa: E731

    def grad_of(fn):
        out = outputs.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(out), out)
        return grad

    erm, _ = _objective_gradient("erm", outputs, labels, groups)
    assert torch.allclose(erm, grad_of(lambda o: per_example(o).mean()))
    balanced, _ = _objective_gradient("reweight", outputs, labels, groups)
    means = lambda o: torch.stack([per_example(o)[groups[0] == k].mean() for k in range(3)])  # noqa: E731
    assert torch.allclose(balanced, grad_of(lambda o: means(o).mean()))
    dro, objective = _objective_gradient("dro", outputs, labels, groups, step=0.5)
    q = torch.softmax(0.5 * means(outputs).double(), 0)  # one exponentiated-gradient step from uniform weights
    assert torch.allclose(objective.q[0].double(), q, atol=1e-6)
    assert torch.allclose(dro, grad_of(lambda o: (q * means(o)).sum()))


def test_group_objective_refuses_an_unknown_method():
    with pytest.raises(ValueError, match=r"methods must be one of 'erm', 'reweight', 'dro'; got 'mixup'"):
        GroupObjective(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long), 2, ["mixup"])


# --- last-layer retraining ---


def test_refit_readout_is_the_penalized_logistic_regression_of_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (2, 80), generator=g)
    features = torch.randn(2, 80, 6, generator=g, dtype=torch.float64) * 3 + 5
    features[..., 0] += 4 * labels
    l2 = 0.05
    w, b = refit_readout(features, labels, 2, l2=l2, iterations=500, standardize=False)
    assert w.shape == (2, 6, 2) and b.shape == (2, 1, 2)
    for s in range(2):
        # softmax over two classes with both columns penalized is the logistic regression of the logit
        # difference v = w1 - w0 with penalty l2 / 4 * ||v||^2, scikit-learn's C = 2 / (l2 n)
        reference = LogisticRegression(C=2 / (l2 * 80), tol=1e-12, max_iter=10_000).fit(features[s], labels[s])
        assert np.allclose((w[s, :, 1] - w[s, :, 0]).numpy(), reference.coef_[0], atol=1e-4)
        assert np.isclose((b[s, 0, 1] - b[s, 0, 0]).item(), reference.intercept_[0], atol=1e-4)


def test_a_model_without_a_readout_to_refit_is_refused():
    x = torch.zeros(1, 3, 4)
    for model, what in [(MLP(4, (), 2, [0]), "MLP with readout='linear', 0 hidden layers"),
                        (MLP(4, (5,), 2, [0], readout="signed"), "readout='signed'")]:
        with pytest.raises(ValueError, match=r"model must be an MLP with a trained linear readout .*" + what):
            readout_features(model, x)


# --- accuracy on the line ---


def test_probit_fit_recovers_a_line_and_refuses_bad_accuracies():
    from scipy.stats import norm

    ind = np.linspace(0.2, 0.95, 10)
    shifted = norm.cdf(0.8 * norm.ppf(ind) - 0.3)
    fit = probit_fit(ind, shifted)
    assert fit["slope"] == pytest.approx(0.8) and fit["intercept"] == pytest.approx(-0.3)
    assert fit["r2"] == pytest.approx(1.0)
    assert probit([0.5])[0] == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"accuracy must lie in \[0, 1\]; got values from"):
        probit([0.5, 1.2])


# --- data ---


def test_spurious_digits_puts_the_cue_where_the_share_says():
    data, groups = spurious_digits([(0.8, 0), (1.0, 1)], n_train=1000, cue_strength=5.0, n_balanced=10)
    x, y = data.batch(data.train_idx)
    cue = (x[..., CUE_PIXELS[1]] > x[..., CUE_PIXELS[0]]).long()  # the brightened corner
    agree = (cue == y).float().mean(1)
    assert abs(agree[0].item() - 0.8) < 0.04 and agree[1].item() == 1.0
    rows = torch.arange(2)[:, None]
    assert torch.equal(groups[rows, data.train_idx], 2 * y + cue)
    counts = torch.bincount(groups[0, data.subsets["balanced"][0]], minlength=4)
    assert counts.tolist() == [10, 10, 10, 10]  # group-balanced
    xt, yt = data.batch(data.subsets["conflict"])
    assert ((xt[..., CUE_PIXELS[1]] > xt[..., CUE_PIXELS[0]]).long() != yt).all()
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=rf"share must be in \[0.0, 1.0\]; got {bad}"):
            spurious_digits([(bad, 0)])


def test_group_balanced_training_resamples_the_same_images_with_equal_groups():
    data, groups = spurious_digits([(0.9, 0), (0.9, 0)], n_train=1000, cue_strength=5.0)
    balanced = group_balanced_training(data, groups, [False, True], [0, 0])
    assert torch.equal(balanced.train_idx[0], data.train_idx[0])  # an ERM member keeps its rows
    assert set(balanced.train_idx[1].tolist()) <= set(data.train_idx[1].tolist())  # the same images
    assert balanced.train_idx.shape == data.train_idx.shape
    counts = torch.bincount(groups[1, balanced.train_idx[1]], minlength=4).double() / 1000
    assert torch.allclose(counts, torch.full((4,), 0.25, dtype=torch.float64), atol=0.05)
    with pytest.raises(ValueError, match=r"balance and seeds must give one value per member \(2\); got 1 and 2"):
        group_balanced_training(data, groups, [True], [0, 0])


def test_shifted_digits_moves_each_image_by_one_pixel():
    pixels = torch.zeros(1, 64)
    pixels[0, 27] = 1.0  # row 3, column 3
    moved = shifted_digits(pixels.repeat(40, 1), 0.0, torch.Generator().manual_seed(0))
    bright = moved.argmax(1)
    assert set(bright.tolist()) <= {19, 35, 26, 28}  # up, down, left, right
    assert len(set(bright.tolist())) == 4


# --- the experiments' settings and hooks ---


def test_settings_out_of_range_are_refused_when_made():
    with pytest.raises(ValueError, match=r"shares must be in \[0.0, 1.0\]; got 1.2"):
        GroupShiftSetup(shares=(0.5, 1.2))
    with pytest.raises(ValueError, match=r"methods must be one of 'erm', 'reweight', 'dro'; got 'jtt'"):
        GroupShiftSetup(methods=("erm", "jtt"))
    with pytest.raises(ValueError, match=r"epsilons must be >= 0.0; got -0.1"):
        AdversarialSetup(epsilons=(0.0, -0.1))
    with pytest.raises(ValueError, match=r"shift must be one of 'natural', 'spurious'; got 'rotation'"):
        LineSetup(shift="rotation")
    with pytest.raises(ValueError, match=r"classes must be two different digits; got \(3, 3\)"):
        TiltSetup(classes=(3, 3))


def test_group_shift_setup_trains_and_records_groups_and_refits():
    setup = GroupShiftSetup(shares=(0.9,), methods=("erm", "dro"), steps=20, seeds=(0, 1), n_train=200)
    data, model, config = setup.build()
    history, run = setup.train_built(data, model, config)
    history = setup.after_training(history, run)
    assert [m["method"] for m in history.members] == ["erm", "erm", "dro", "dro"]
    assert history.arrays["refit"].shape == (4, 4) and history.arrays["refit_init"].shape == (4, 4)
    avg, worst = average_accuracy(history), worst_group(history)
    assert avg.shape == worst.shape == (len(history.steps), 4)
    assert np.all(worst <= avg + 1e-6)


def test_adversarial_objective_adds_the_attacked_loss_only_where_epsilon_is_positive():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 4, generator=g), torch.randint(0, 3, (30,), generator=g)
    rows = torch.arange(30).repeat(2, 1)
    data = TaskData(x=x, y=y.repeat(2, 1), train_idx=rows, test_idx=rows, num_classes=3)
    model = MLP(4, (8,), 3, [0, 1])
    objective = AdversarialObjective(model, data, [0.0, 0.5], steps=3)
    idx = torch.arange(30).repeat(2, 1)
    value = objective(model(data.inputs(idx)), idx, slice(None))
    with torch.no_grad():
        clean = F.cross_entropy(model(data.inputs(idx))[1], y)
    assert value[0].item() == 0.0 and value[1].item() > clean.item()  # the attack raises the loss
    history = train(model, data, TrainConfig(steps=3, eval_every=3, eval_log_points=0, progress=False),
                    penalty=objective)
    assert np.isfinite(history["train_loss"]).all()
    with pytest.raises(ValueError, match=r"epsilon must give one radius per member \(2\); got 1"):
        AdversarialObjective(model, data, [0.1])
