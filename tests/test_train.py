import numpy as np
import pytest
import torch

from genlib.core.data import digits, modular_arithmetic, quadratic_teacher
from genlib.core.models import MLP, EmbeddingMLP
from genlib.core.train import TrainConfig, denormals_flushed, eval_schedule, evaluation_mode, outputs_in_blocks, train


def small(seeds=(0, 1)):
    return modular_arithmetic(11, "+", 0.5, list(seeds)), EmbeddingMLP(11, list(seeds), embed_dim=8, hidden=(32,))


def test_same_seed_gives_identical_history():
    runs = []
    for _ in range(2):
        data, model = small()
        runs.append(train(model, data, TrainConfig(steps=30, lr=1e-2, weight_decay=0.5, eval_every=10, device="cpu")))
    a, b = runs
    assert np.array_equal(a.steps, b.steps)
    for name in a.names:
        assert np.array_equal(a[name], b[name]), f"{name} differs between two runs with the same seed"


def test_history_is_tidy_over_steps_and_members():
    data, model = small(seeds=(0, 1, 2))
    h = train(model, data, TrainConfig(steps=20, eval_every=5, eval_log_points=0))
    assert list(h.steps) == [0, 5, 10, 15, 20]
    assert h["train_acc"].shape == (5, 3)
    assert h.as_array().shape == (5, 3, len(h.names))
    assert {"train_acc", "test_acc", "train_loss", "test_loss", "collapse", "weight_norm"} <= set(h.names)
    assert [m["seed"] for m in h.members] == [0, 1, 2]


def test_full_batch_training_fits_the_training_set():
    data, model = small()
    h = train(model, data, TrainConfig(steps=150, lr=1e-2))
    assert (h.final("train_acc") == 1.0).all(), f"train accuracy {h.final('train_acc')}"


def test_minibatch_sgd_reduces_regression_loss():
    data = quadratic_teacher(dim=4, n_train=64, n_test=32, seeds=[0, 1])
    model = MLP(4, (32,), 1, [0, 1], activation="tanh", init_scale=2.0)
    h = train(model, data, TrainConfig(steps=200, lr=0.05, optimizer="sgd", momentum=0.9, loss="mse", batch_size=16))
    assert "train_acc" not in h.metrics, "regression records no accuracy"
    assert (h.final("train_loss") < 0.5 * h["train_loss"][0]).all()


def test_a_member_trains_the_same_alone_or_in_an_ensemble():
    data, model = small(seeds=(0, 1, 2))
    together = train(model, data, TrainConfig(steps=40, lr=1e-2, weight_decay=[0.0, 1.0, 2.0]))
    data1, model1 = small(seeds=(1,))
    alone = train(model1, data1, TrainConfig(steps=40, lr=1e-2, weight_decay=1.0))
    np.testing.assert_allclose(together["train_loss"][:, 1], alone["train_loss"][:, 0], rtol=1e-3, atol=1e-5)
    assert together.members[1]["weight_decay"] == 1.0


def test_float64_training():
    data, model = small()
    h = train(model, data, TrainConfig(steps=5, dtype="float64"))
    assert h.meta["config"]["dtype"] == "float64" and np.isfinite(h["train_loss"]).all()


def test_eval_schedule_has_ends_and_early_points():
    s = eval_schedule(1000, 100, 10)
    assert s[0] == 0 and s[-1] == 1000 and 1 in s and 300 in s and len(set(s)) == len(s)


@pytest.mark.parametrize("settings, name", [
    (dict(steps=0), "steps"),
    (dict(weight_decay=-0.1), "weight_decay"),
    (dict(lr=0.0), "lr"),
    (dict(lr=[1e-3, -1.0]), "lr"),
    (dict(optimizer="adam8bit"), "optimizer"),
    (dict(loss="hinge"), "loss"),
    (dict(dtype="float16"), "dtype"),
    (dict(batch_size=0), "batch_size"),
    (dict(device="tpu"), "device"),
])
def test_bad_training_config_is_refused_when_built(settings, name):
    with pytest.raises(ValueError, match=name) as err:
        TrainConfig(**settings)
    assert "got" in str(err.value)


def test_one_value_per_member_is_counted_in_train():
    data, model = small()
    with pytest.raises(ValueError, match="lr"):
        train(model, data, TrainConfig(lr=[1e-3] * (model.members + 1)))


def test_members_must_match_data():
    data, _ = small(seeds=(0, 1))
    with pytest.raises(ValueError, match="member"):
        train(EmbeddingMLP(11, [0, 1, 2]), data)


def test_model_sizes_must_match_the_data():
    mod7 = modular_arithmetic(p=7, seeds=[0])
    with pytest.raises(ValueError, match=r"outputs \(11\) must equal data.num_classes; got 7"):
        train(EmbeddingMLP(11, [0], embed_dim=4, hidden=(8,)), mod7)
    with pytest.raises(ValueError, match="vocabulary"):
        train(EmbeddingMLP(5, [0], embed_dim=4, hidden=(8,)), mod7)
    digits_data = digits(50, [0])
    with pytest.raises(ValueError, match=r"in_dim \(63\)"):
        train(MLP(63, (8,), 10, [0]), digits_data)
    with pytest.raises(ValueError, match=r"outputs \(3\)"):
        train(MLP(64, (8,), 3, [0]), digits_data)


def test_member_labels_are_recorded_for_selection():
    data, model = small(seeds=(0, 1))
    labels = [{"noise": 0.1, "seed": 0}, {"noise": 0.2, "seed": 1}]
    h = train(model, data, TrainConfig(steps=2), members=labels)
    assert h.select(noise=0.2).members[0]["seed"] == 1 and h.labels("noise") == [0.1, 0.2]
    with pytest.raises(ValueError, match="members"):
        train(model, data, TrainConfig(steps=2), members=labels[:1])


@pytest.mark.parametrize("make", [
    lambda s: EmbeddingMLP(11, s, embed_dim=8, hidden=(16,), output_scale=[1.0, 2.0, 0.5]),
    lambda s: MLP(3, (8,), 2, s, centered=True, output_scale=[1.0, 2.0, 0.5]),
])
def test_member_blocks_give_the_same_gradients_as_one_pass(make):
    from genlib.core.train import ensemble_backward

    seeds = [0, 1, 2]
    x = torch.randint(0, 11, (3, 5, 2)) if isinstance(make(seeds), EmbeddingMLP) else torch.randn(3, 5, 3)
    y = torch.randint(0, 2, (3, 5))
    grads = []
    for block in (3, 1, 2):
        model = make(seeds)
        ensemble_backward(model, x, y, "cross_entropy", block)
        grads.append([p.grad.clone() for p in model.parameters()])
    for other in grads[1:]:
        for g_one_pass, g_blocked in zip(grads[0], other):
            torch.testing.assert_close(g_blocked, g_one_pass)


def test_lr_milestones_divide_the_step_size():
    data = quadratic_teacher(dim=4, n_train=20, n_test=5, seeds=[0])
    steps = []
    for milestones in ((), (2,)):
        model = MLP(4, (8,), 1, [0])
        start = [p.detach().clone() for p in model.parameters()]
        config = TrainConfig(steps=3, lr=0.1, optimizer="sgd", loss="mse", lr_milestones=milestones, lr_gamma=0.1,
                             eval_every=1, eval_log_points=0, device="cpu")
        train(model, data, config)
        steps.append(sum(float((p - p0).norm()) for p, p0 in zip(model.parameters(), start)))
    assert steps[1] < steps[0], f"moved {steps[1]:.4f} with the schedule, {steps[0]:.4f} without"
    with pytest.raises(ValueError, match="lr_milestones"):
        TrainConfig(steps=10, lr_milestones=(0,))


def test_a_metric_may_return_several_measures_at_once():
    data, model = small()
    h = train(model, data, TrainConfig(steps=4, eval_every=2, eval_log_points=0),
              extra_metrics={"pair": lambda m: {"one": torch.ones(2), "two": 2 * torch.ones(2)}})
    assert np.all(h["pair/one"] == 1) and np.all(h["pair/two"] == 2)


def test_denormals_are_flushed_inside_training_only():
    tiny = torch.tensor([1e-39])  # a float32 denormal
    flushed = lambda: (tiny * 1.0).item() == 0.0
    with denormals_flushed():
        assert flushed()
    assert not flushed()  # off again after: torch's default
    history = train(MLP(4, (8,), 1, [0]), quadratic_teacher(4, 16, 8, [0]),
                    TrainConfig(steps=2, loss="mse", progress=False),
                    extra_metrics={"flushed": lambda m: torch.tensor([float(flushed())])})
    assert np.all(history["flushed"] == 1.0) and not flushed()


@pytest.mark.parametrize("block", [1, 2, 3, 5])
def test_outputs_in_member_blocks_are_the_ensembles_outputs(block):
    mlp = MLP(4, (8,), 3, list(range(5)), batch_norm=True, output_scale=[1.0, 2.0, 1.0, 0.5, 1.0])
    tokens = EmbeddingMLP(7, list(range(5)), embed_dim=4, hidden=(8,))
    for model, x in ((mlp, torch.randn(5, 6, 4)), (tokens, torch.randint(0, 7, (5, 6, 2)))):
        with evaluation_mode(model):
            torch.testing.assert_close(outputs_in_blocks(model, x, block), model(x), rtol=0, atol=0)


def test_outputs_in_blocks_refuses_a_block_below_one():
    with pytest.raises(ValueError, match="block"):
        outputs_in_blocks(MLP(4, (8,), 3, [0, 1]), torch.randn(2, 5, 4), 0)
