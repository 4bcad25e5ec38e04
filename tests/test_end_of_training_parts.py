"""End-of-training chapter's parts: label smoothing and soft targets in training, calibration and
selective classification, data-diet scores and the NC1 exercise checker."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genlib.core.data import TaskData
from genlib.core.losses import per_example_loss
from genlib.core.metrics import area_under_risk_coverage, expected_calibration_error, risk_coverage
from genlib.core.models import MLP
from genlib.core.train import TrainConfig, train
from genlib.measures.scores import el2n, grand

ONE_STEP = dict(steps=1, optimizer="sgd", dtype="float64", device="cpu", eval_log_points=0)


def tiny(members=3, n=20, classes=4, seeds=None, **kw):
    """A float64 tanh MLP 3 -> 6 -> classes and, per member, its own n training examples of a pool of n + 5."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n + 5, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (members, n + 5), generator=g)
    train_idx = torch.stack([torch.randperm(n + 5, generator=g)[:n] for _ in range(members)])
    data = TaskData(x=x, y=y, train_idx=train_idx, test_idx=train_idx[:, :5], num_classes=classes)
    kw = {"activation": "tanh"} | kw
    return MLP(3, (6,), classes, seeds or list(range(members)), **kw).double(), data


def member_gradient(model, data, member, loss_of):
    """Gradients of loss_of(outputs (B, C), labels (B,)) in one member's parameters, by plain autograd."""
    x, y = data.batch(data.train_idx)
    model = copy.deepcopy(model)
    out = model(x)[member]
    params = list(model.parameters())
    return [g[member] for g in torch.autograd.grad(loss_of(out, y[member]), params)]


# --- label smoothing ---------------------------------------------------------------------------


@pytest.mark.parametrize("block", [1, 3])
def test_one_step_with_label_smoothing_is_torchs_smoothed_cross_entropy_per_member(block):
    eps = [0.0, 0.1, 0.3]
    model, data = tiny()
    before = copy.deepcopy(model)
    train(model, data, TrainConfig(lr=0.5, label_smoothing=eps, member_block=block, **ONE_STEP))
    for s in range(3):
        grads = member_gradient(before, data, s, lambda out, y, e=eps[s]: F.cross_entropy(out, y, label_smoothing=e))
        for p, p0, g in zip(model.parameters(), before.parameters(), grads):
            torch.testing.assert_close(p[s].detach(), p0[s].detach() - 0.5 * g, rtol=1e-12, atol=1e-14)


def test_label_smoothing_changes_only_the_smoothed_members():
    model, data = tiny(seeds=[0, 0, 0])  # three copies of one network, trained on their own splits
    data.train_idx[:] = data.train_idx[0]
    smooth = copy.deepcopy(model)
    train(model, data, TrainConfig(steps=5, lr=1e-2, label_smoothing=0.0, device="cpu"))
    h = train(smooth, data, TrainConfig(steps=5, lr=1e-2, label_smoothing=[0.0, 0.2, 0.4], device="cpu"))
    w, w_smooth = model.weights[0].detach(), smooth.weights[0].detach()
    assert torch.equal(w_smooth[0], w[0]), "eps = 0 trains as plain cross-entropy"
    assert not torch.equal(w_smooth[1], w[1]) and not torch.equal(w_smooth[1], w_smooth[2])
    assert [m["label_smoothing"] for m in h.members] == [0.0, 0.2, 0.4]


def test_recorded_losses_stay_the_plain_cross_entropy():
    model, data = tiny()
    h = train(copy.deepcopy(model), data, TrainConfig(steps=2, label_smoothing=0.3, device="cpu", dtype="float64"))
    x, y = data.batch(data.train_idx)
    plain = per_example_loss(model(x), y, "cross_entropy").mean(-1)
    np.testing.assert_allclose(h["train_loss"][0], plain.detach().numpy(), rtol=1e-6)
    smoothed = torch.stack([F.cross_entropy(model(x)[s], y[s], label_smoothing=0.3) for s in range(3)])
    assert (np.abs(h["train_loss"][0] - smoothed.detach().numpy()) > 1e-3).all(), "not the smoothed loss"


def test_label_smoothing_with_sam_is_the_written_out_rule():
    lr, rho, eps = 0.3, 0.05, [0.1, 0.4]
    model, data = tiny(members=2)
    before = copy.deepcopy(model)
    train(model, data, TrainConfig(lr=lr, sam_radius=rho, label_smoothing=eps, member_block=1, **ONE_STEP))
    x, y = data.batch(data.train_idx)
    names = [n for n, _ in before.named_parameters()]
    for s in range(2):
        def loss_at(w, s=s):
            full = [p.detach().clone() for p in before.parameters()]
            for p, q in zip(full, w):
                p[s] = q
            out = torch.func.functional_call(before, dict(zip(names, full)), (x,))
            return F.cross_entropy(out[s], y[s], label_smoothing=eps[s])

        w = [p[s].detach().clone().requires_grad_() for p in before.parameters()]
        g = torch.autograd.grad(loss_at(w), w)
        norm = torch.sqrt(sum((gi**2).sum() for gi in g))
        moved = [(wi + rho * gi / norm).detach().requires_grad_() for wi, gi in zip(w, g)]
        g_sam = torch.autograd.grad(loss_at(moved), moved)
        for p, wi, gi in zip(model.parameters(), w, g_sam):
            torch.testing.assert_close(p[s].detach(), (wi - lr * gi).detach(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("settings", [
    dict(label_smoothing=1.0), dict(label_smoothing=-0.1), dict(label_smoothing=[0.1, 1.5]),
    dict(label_smoothing=0.1, loss="mse"), dict(label_smoothing=[0.0, 0.1], loss="stablemax"),
])
def test_bad_label_smoothing_is_refused_when_built(settings):
    with pytest.raises(ValueError, match="label_smoothing") as err:
        TrainConfig(**settings)
    assert "got" in str(err.value)


def test_label_smoothing_per_member_is_counted_in_train():
    model, data = tiny()
    with pytest.raises(ValueError, match="label_smoothing"):
        train(model, data, TrainConfig(steps=1, label_smoothing=[0.1, 0.2]))


# --- soft targets --------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [None, 7])
def test_one_hot_soft_targets_train_exactly_like_the_labels(batch_size):
    model, data = tiny()
    soft_model = copy.deepcopy(model)
    config = TrainConfig(steps=6, lr=1e-2, batch_size=batch_size, device="cpu", dtype="float64", member_block=1)
    h = train(model, data, config)
    soft = copy.copy(data)
    soft.soft_targets = F.one_hot(data.y, 4).double()
    h_soft = train(soft_model, soft, config)
    for p, q in zip(model.parameters(), soft_model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(h_soft["train_loss"], h["train_loss"])


def test_one_step_on_soft_targets_is_the_cross_entropy_against_them():
    model, data = tiny()
    before = copy.deepcopy(model)
    g = torch.Generator().manual_seed(1)
    data.soft_targets = torch.softmax(2 * torch.randn(3, 25, 4, generator=g, dtype=torch.float64), -1)
    train(model, data, TrainConfig(lr=0.5, **ONE_STEP))
    for s in range(3):
        t = data.soft_targets[s, data.train_idx[s]]  # (n, C)
        grads = member_gradient(before, data, s, lambda out, y, t=t: -(t * F.log_softmax(out, -1)).sum(-1).mean())
        for p, p0, gr in zip(model.parameters(), before.parameters(), grads):
            torch.testing.assert_close(p[s].detach(), p0[s].detach() - 0.5 * gr, rtol=1e-12, atol=1e-14)


def test_evaluation_ignores_soft_targets():
    model, data = tiny()
    soft = copy.copy(data)
    soft.soft_targets = torch.full((3, 25, 4), 0.25, dtype=torch.float64)
    a = train(copy.deepcopy(model), data, TrainConfig(steps=1, lr=1e-9, device="cpu", dtype="float64"))
    b = train(copy.deepcopy(model), soft, TrainConfig(steps=1, lr=1e-9, device="cpu", dtype="float64"))
    for name in ("train_loss", "test_loss", "train_acc", "test_acc"):
        np.testing.assert_array_equal(a[name][0], b[name][0], err_msg=f"{name} at step 0 uses the labels")


def test_soft_targets_move_with_the_data():
    _, data = tiny()
    data.soft_targets = torch.full((3, 25, 4), 0.25)
    moved = data.to("cpu", torch.float64)
    assert moved.soft_targets.dtype == torch.float64 and data.soft_targets.dtype == torch.float32
    assert moved.soft_batch(data.train_idx[:, :2]).shape == (3, 2, 4)


@pytest.mark.parametrize("targets, settings, match", [
    (torch.full((3, 25, 3), 1 / 3), {}, "soft_targets"),  # three classes, the task has four
    (torch.full((3, 25, 4), 0.3), {}, "summing to 1"),
    (torch.full((3, 25, 4), 0.25), dict(label_smoothing=0.1), "label_smoothing"),
    (torch.full((3, 25, 4), 0.25), dict(loss="mse"), "cross_entropy"),
])
def test_bad_soft_targets_are_refused(targets, settings, match):
    model, data = tiny()
    data.soft_targets = targets
    with pytest.raises(ValueError, match=match):
        train(model, data, TrainConfig(steps=1, device="cpu", **settings))


# --- calibration and selective classification ------------------------------------------------------


def two_class_logits(confidence: torch.Tensor) -> torch.Tensor:
    """(S, N, 2) logits whose softmax is (c, 1 - c): class 0 predicted with confidence c >= 0.5."""
    return torch.stack([confidence.log(), (1 - confidence).log()], -1)


def test_calibrated_predictions_have_a_small_ece():
    g = torch.Generator().manual_seed(0)
    confidence = 0.5 + 0.5 * torch.rand(1, 100_000, generator=g, dtype=torch.float64) * 0.999
    labels = (torch.rand(confidence.shape, generator=g, dtype=torch.float64) >= confidence).long()  # 0 w.p. c
    ece = float(expected_calibration_error(two_class_logits(confidence), labels)[0])
    assert ece < 0.01, f"ECE of calibrated predictions {ece}"


def test_ece_of_an_overconfident_classifier_by_hand():
    # Half the examples at confidence 0.95, half at 0.55; in each half, 2 of 4 correct (accuracy 0.5).
    confidence = torch.tensor([[0.95] * 4 + [0.55] * 4], dtype=torch.float64)
    labels = torch.tensor([[0, 0, 1, 1, 0, 1, 0, 1]])
    ece = float(expected_calibration_error(two_class_logits(confidence), labels)[0])
    assert math.isclose(ece, 0.5 * 0.45 + 0.5 * 0.05, rel_tol=1e-12), f"ECE {ece}"
    one_bin = float(expected_calibration_error(two_class_logits(confidence), labels, bins=1)[0])
    assert math.isclose(one_bin, abs(0.5 - 0.75), rel_tol=1e-12), "one bin: |accuracy - mean confidence|"


def test_ece_matches_a_loop_over_bins():
    g = torch.Generator().manual_seed(2)
    outputs = 2 * torch.randn(3, 500, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 5, (3, 500), generator=g)
    got = expected_calibration_error(outputs, labels, bins=10)
    for s in range(3):
        conf, pred = torch.softmax(outputs[s], -1).max(-1)
        correct = (pred == labels[s]).double()
        expected = 0.0
        for b in range(10):
            inside = (conf > b / 10) & (conf <= (b + 1) / 10)
            if inside.any():
                expected += inside.double().mean() * abs(correct[inside].mean() - conf[inside].mean())
        assert math.isclose(float(got[s]), float(expected), rel_tol=1e-10), f"member {s}"


def test_risk_at_full_coverage_is_the_error_rate():
    g = torch.Generator().manual_seed(3)
    outputs = torch.randn(2, 50, 3, generator=g)
    labels = torch.randint(0, 3, (2, 50), generator=g)
    coverage, risk = risk_coverage(outputs, labels)
    assert coverage.shape == (50,) and risk.shape == (2, 50) and coverage[-1] == 1.0
    error = 1 - (outputs.argmax(-1) == labels).double().mean(-1)
    torch.testing.assert_close(risk[:, -1], error)
    torch.testing.assert_close(area_under_risk_coverage(outputs, labels), risk.mean(-1))


def test_errors_on_the_least_confident_examples_give_zero_risk_up_to_the_accuracy():
    confidence = torch.linspace(0.99, 0.51, 10, dtype=torch.float64)[None]  # decreasing
    labels = torch.tensor([[0] * 7 + [1] * 3])  # the 3 least confident are wrong: accuracy 0.7
    coverage, risk = risk_coverage(two_class_logits(confidence), labels)
    assert (risk[0, coverage <= 0.7 + 1e-12] == 0).all() and (risk[0, coverage > 0.7 + 1e-12] > 0).all()
    np.testing.assert_allclose(risk[0, 7:].numpy(), [1 / 8, 2 / 9, 3 / 10])
    shuffled = torch.tensor([[3, 0, 8, 5, 1, 9, 7, 2, 6, 4]])  # example order does not matter
    _, risk_shuffled = risk_coverage(two_class_logits(confidence[:, shuffled[0]]), labels[:, shuffled[0]])
    torch.testing.assert_close(risk_shuffled, risk)
    assert math.isclose(float(area_under_risk_coverage(two_class_logits(confidence), labels)[0]),
                        (1 / 8 + 2 / 9 + 3 / 10) / 10, rel_tol=1e-12)


def test_calibration_arguments_are_checked():
    with pytest.raises(ValueError, match="bins"):
        expected_calibration_error(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long), bins=0)
    with pytest.raises(ValueError, match="outputs"):
        risk_coverage(torch.zeros(2, 3), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        expected_calibration_error(torch.zeros(1, 2, 3), torch.zeros(1, 3, dtype=torch.long))


# --- data-diet scores -----------------------------------------------------------------------------


def test_el2n_is_the_distance_of_the_softmax_from_the_one_hot_label():
    model, data = tiny(output_scale=[1.0, 2.0, 0.5])
    scores = el2n(model, data)
    assert scores.shape == (3, 20) and not scores.requires_grad
    model.requires_grad_(False)
    for s in range(3):
        for j in range(20):
            i = int(data.train_idx[s, j])
            logits = model.output_scales[s] * (torch.tanh(data.x[i] @ model.weights[0][s] + model.biases[0][s, 0])
                                               @ model.weights[1][s] + model.biases[1][s, 0])
            p = torch.softmax(logits, -1)
            expected = torch.sqrt(((p - F.one_hot(data.y[s, i], 4)) ** 2).sum())
            assert math.isclose(float(scores[s, j]), float(expected), rel_tol=1e-12), f"member {s}, example {j}"


def test_grand_is_the_per_example_gradient_norm_from_autograd():
    model, data = tiny(output_scale=[1.0, 3.0, 0.5], dropout=0.5)
    model.train()
    state = copy.deepcopy(model.state_dict())
    scores = grand(model, data, chunk=7)
    assert model.training and all(p.grad is None for p in model.parameters()), "the model is left as it was"
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    reference = copy.deepcopy(model).eval()
    for s in range(3):
        for j in range(20):
            i = data.train_idx[:, j : j + 1]  # (S, 1): one example per member
            x, y = data.batch(i)
            loss = F.cross_entropy(reference(x)[s], y[s])
            grads = torch.autograd.grad(loss, list(reference.parameters()))
            expected = torch.sqrt(sum(g[s].pow(2).sum() for g in grads))
            assert math.isclose(float(scores[s, j]), float(expected), rel_tol=1e-10), f"member {s}, example {j}"
    torch.testing.assert_close(grand(model, data, chunk=None), scores, rtol=1e-12, atol=0)


def test_scores_of_a_member_do_not_depend_on_the_others():
    model, data = tiny()
    alone = MLP(3, (6,), 4, [1], activation="tanh").double()
    one = TaskData(x=data.x, y=data.y[1:2], train_idx=data.train_idx[1:2], test_idx=data.test_idx[1:2], num_classes=4)
    torch.testing.assert_close(grand(alone, one)[0], grand(model, data)[1], rtol=1e-12, atol=0)
    torch.testing.assert_close(el2n(alone, one)[0], el2n(model, data)[1], rtol=1e-12, atol=0)


def test_scores_need_a_classification_task():
    model, data = tiny(classes=2)
    regression = TaskData(x=data.x, y=torch.randn(3, 25, 2, dtype=torch.float64), train_idx=data.train_idx,
                          test_idx=data.test_idx)
    for score in (el2n, grand):
        with pytest.raises(ValueError, match="classification"):
            score(model, regression)
    with pytest.raises(ValueError, match="chunk"):
        grand(model, data, chunk=0)


# --- the NC1 exercise ---------------------------------------------------------------------------------


def reader_nc1(features, labels, num_classes, divide=True, between=True):
    means = torch.stack([features[labels == c].mean(0) for c in range(num_classes)])
    within = features - means[labels]
    sigma_w = within.T @ within / len(features)
    centred = (means - features.mean(0)) if between else (features - features.mean(0))
    sigma_b = centred.T @ centred / len(centred)
    value = torch.trace(sigma_w @ torch.linalg.pinv(sigma_b))
    return float(value / num_classes if divide else value)


def test_nc1_check_passes_a_correct_answer(capsys):
    from genlib.pages.exercises import check_nc1

    assert check_nc1(reader_nc1)
    assert "✓" in capsys.readouterr().out
    assert check_nc1(lambda *a: torch.tensor(reader_nc1(*a))), "a 0-d tensor is a number too"


def test_nc1_check_explains_wrong_answers(capsys):
    from genlib.pages.exercises import check_nc1

    assert not check_nc1(lambda f, y, k: reader_nc1(f, y, k, divide=False))
    out = capsys.readouterr().out
    assert "✗" in out and "forgot to divide by K" in out
    assert not check_nc1(lambda f, y, k: reader_nc1(f, y, k, between=False)), "pinv of the total covariance"
    assert "✗" in capsys.readouterr().out
    assert not check_nc1(lambda f, y, k: [reader_nc1(f, y, k)])
    assert "one number" in capsys.readouterr().out


def test_excess_aurc_is_zero_when_the_errors_are_the_least_confident_and_positive_otherwise():
    from genlib.core.metrics import area_under_risk_coverage, excess_area_under_risk_coverage

    labels = torch.zeros(2, 4, dtype=torch.long)
    right = [3.0, 0.0]
    ranked = torch.tensor([[right, right, [0.5, 0.0], [0.0, 0.5]],    # the error is the least confident
                           [right, right, [0.5, 0.0], [0.0, 3.0]]])  # the error is the most confident
    excess = excess_area_under_risk_coverage(ranked, labels)
    assert abs(float(excess[0])) < 1e-12
    assert float(excess[1]) > 0 and float(area_under_risk_coverage(ranked, labels)[1]) > float(excess[1])
