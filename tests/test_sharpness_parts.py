"""The sharpness chapter's setups (genlib/experiments/sharpness.py) and its exercise checker."""
import inspect
from dataclasses import fields

import numpy as np
import pytest
import torch

from genlib.core.models import MLP
from genlib.experiments.sharpness import (
    CatapultSetup,
    DigitsRecipe,
    EscapeSetup,
    HessianSpectrumSetup,
    LargeBatchSetup,
    PerceptronSetup,
    SharpnessRecipe,
    StabilityGrid,
    StabilitySetup,
    batch_label,
    flat_parameters,
    load_flat_parameters,
    normalized_margin,
    steps_to_separate,
    two_digit_classes,
)
from genlib.measures.curvature import dense_hessian, top_eigenpair, top_eigenvalue
from genlib.running.experiment import Experiment
from genlib.running.grid import Grid

TINY = dict(n_train=60, hidden=(8,), steps=30, eval_every=10, eval_log_points=0, lanczos_iterations=5, trace_samples=2,
            seeds=(0,))


def test_grid_names_one_setup_per_batch_size_and_sam_at_the_compared_step():
    grid = StabilityGrid(StabilitySetup(), batch_sizes=(None, 16), sam_radii=(0.05, 0.1), compared_lr=0.8,
                         minibatch_sharpness_every=100, sam_sharpness_every=50)
    assert isinstance(grid, Grid) and not isinstance(grid, Experiment)  # a grid is not itself a run
    setups = grid.setups()
    assert list(setups) == ["full batch", "batch 16"] and setups["batch 16"].batch_size == 16
    assert type(setups["full batch"]) is StabilitySetup  # cached independently of the grid
    assert setups["full batch"] == grid.base and setups["batch 16"].eval_every == 100
    sams = grid.sam_setups()
    assert list(sams) == ["SAM rho=0.05", "SAM rho=0.1"]
    assert all(s.lrs == (0.8,) and s.batch_size is None and s.eval_every == 50 for s in sams.values())
    assert batch_label(None) == "full batch" and batch_label(4) == "batch 4"


def test_grid_at_scale_sets_its_own_fields_and_its_base_s():
    grid = StabilityGrid.at_scale("quick", lrs=(1.2,), batch_sizes=(None,))
    assert grid.base == StabilitySetup(lrs=(1.2,)) and grid.batch_sizes == (None,)
    full = StabilityGrid.at_scale("full")
    assert full.base == StabilitySetup.at_scale("full") and full.batch_sizes == (None, 256, 64, 16, 4)


def test_recipes_are_abstract_and_each_setup_declares_only_its_own_axis():
    assert inspect.isabstract(DigitsRecipe) and inspect.isabstract(SharpnessRecipe)
    names = {cls: {f.name for f in fields(cls)} for cls in (StabilitySetup, CatapultSetup, HessianSpectrumSetup)}
    assert "lrs" in names[StabilitySetup] and "multiples" not in names[StabilitySetup]
    assert "multiples" in names[CatapultSetup] and not {"lrs", "batch_size", "sam_radius"} & names[CatapultSetup]
    assert not {"eval_every", "lanczos_iterations", "trace_samples"} & names[HessianSpectrumSetup]


@pytest.mark.parametrize("cls, settings, named", [
    (StabilitySetup, dict(lrs=()), "lrs"),
    (StabilitySetup, dict(lrs=(0.0,)), "lrs"),
    (StabilitySetup, dict(activation="swish"), "activation"),
    (StabilitySetup, dict(batch_size=0), "batch_size"),
    (StabilitySetup, dict(sam_radius=-0.1), "sam_radius"),
    (StabilitySetup, dict(eval_every=0), "eval_every"),
    (StabilitySetup, dict(n_train=1797), "n_train"),
    (CatapultSetup, dict(multiples=()), "multiples"),
    (CatapultSetup, dict(lanczos_iterations=1), "lanczos_iterations"),
    (StabilitySetup, dict(lanczos_tolerance=0.0), "lanczos_tolerance"),
    (EscapeSetup, dict(lr=0.3), "lr"),
    (EscapeSetup, dict(n_train=500), "start"),
    (EscapeSetup, dict(batch_size=0), "batch_size"),
    (HessianSpectrumSetup, dict(hidden=(0,)), "hidden"),
    (PerceptronSetup, dict(lrs=()), "lrs"),
    (LargeBatchSetup, dict(momentum=1.0), "momentum"),
])
def test_bad_settings_are_refused_when_the_setup_is_made(cls, settings, named):
    with pytest.raises(ValueError, match=named):
        cls(**settings)


def test_stability_run_records_sharpness_its_iterations_trace_and_final_parameters_per_member():
    setup = StabilitySetup(lrs=(0.2, 0.4), **TINY)
    history = setup.compute()
    assert history["sharpness"].shape == history["sharpness_iterations"].shape == (len(history.steps), 2)
    assert np.all(history["sharpness"] > 0) and history.arrays["trace"].shape == (2,)
    assert np.all((history["sharpness_iterations"] >= 2) & (history["sharpness_iterations"] <= 5 * 2))
    assert [m["lr"] for m in history.members] == [0.2, 0.4]
    data, model, _ = setup.build()
    assert history.arrays["final_params"].shape == flat_parameters(model).shape  # (members, parameters)
    assert not np.array_equal(history.arrays["final_params"], flat_parameters(model))  # trained


def test_flat_parameters_round_trip_and_refuse_a_wrong_shape():
    model = MLP(5, (3,), 2, [0, 1])
    flat = flat_parameters(model)
    assert flat.shape == (2, 5 * 3 + 3 + 3 * 2 + 2)
    other = load_flat_parameters(MLP(5, (3,), 2, [7, 8]), flat)
    np.testing.assert_array_equal(flat_parameters(other), flat)
    with pytest.raises(ValueError, match="flat must be shaped .*got \\(2, 25\\)"):
        load_flat_parameters(model, flat[:, 1:])


def test_escape_test_starts_sgd_at_the_end_point_of_its_requirement():
    start = StabilitySetup(lrs=(0.4, 0.8), **TINY)
    setup = EscapeSetup.of(start, lr=0.8, batch_size=8, steps=10, eval_every=5, lanczos_iterations=5, trace_samples=1)
    assert setup.requires() == {"start": start} and setup.seeds == start.seeds
    gd = start.compute()
    data, model, config = setup.build(start=gd)
    np.testing.assert_array_equal(flat_parameters(model), gd.select(lr=0.8).arrays["final_params"])
    assert config.batch_size == 8 and config.lr == [0.8] and config.steps == 10
    history = setup.compute(start=gd)
    assert list(history.steps) == [0, 5, 10]
    np.testing.assert_allclose(history["train_loss"][0], gd.select(lr=0.8).final("train_loss"), rtol=1e-5)


def test_escape_control_continues_gradient_descent_at_full_batch():
    start = StabilitySetup(lrs=(0.8,), **TINY)
    control = EscapeSetup.of(start, lr=0.8, batch_size=None, steps=10, eval_every=5, lanczos_iterations=5,
                             trace_samples=1)
    gd = start.compute()
    _, model, config = control.build(start=gd)
    assert config.batch_size is None
    np.testing.assert_array_equal(flat_parameters(model), gd.arrays["final_params"])


def test_sharpness_readings_use_the_residual_rule_from_a_new_random_start_each():
    setup = StabilitySetup(lrs=(0.8,), **(TINY | dict(lanczos_iterations=60)))
    data, model, _ = setup.build()
    reader = setup.extra_metrics(data, model)["sharpness"]
    first, again = reader(model), reader(model)  # two random starts (seeds 0 and 1)
    assert reader.calls == 2
    expected = top_eigenpair(model, data, "mse", tolerance=1e-9, max_iterations=200, rule="residual").values
    np.testing.assert_allclose(first.numpy(), expected.numpy(), rtol=1e-4)
    np.testing.assert_allclose(again.numpy(), expected.numpy(), rtol=1e-4)


def test_escape_test_at_full_scale_continues_the_full_scale_gradient_descent_run():
    full = EscapeSetup.at_scale("full")
    assert full.start == StabilityGrid.at_scale("full").setups()["full batch"] and full.seeds == full.start.seeds


def test_normalized_margin_of_a_linear_two_class_model():
    model = MLP(2, (), 2, [0], init_scale=0.0)
    with torch.no_grad():  # logit 1 - logit 0 = 3 x_0 + 4 x_1 - 1, ||(w, b)|| = sqrt(26)
        weight, bias = list(model.parameters())
        weight[0, :, 1] = torch.tensor([3.0, 4.0])  # (members, inputs, outputs)
        bias[..., 1] = -1.0
    x = torch.tensor([[[1.0, 1.0], [0.0, 0.0], [1.0, 0.0]]])
    y = torch.tensor([[1, 0, 1]])
    np.testing.assert_allclose(normalized_margin(model, x, y).numpy(), [1 / np.sqrt(26)], rtol=1e-6)
    assert float(normalized_margin(MLP(2, (), 2, [0], init_scale=0.0), x, y)[0]) == 0.0


def test_edge_of_stability_at_small_scale():
    # a small network at a step size whose 2/eta is just above its initial sharpness: the
    # sharpness rises to 2/eta and stays within 25% of it (section 1's claim, small)
    setup = StabilitySetup(n_train=200, hidden=(32, 32), lrs=(3.2,), steps=300, eval_every=25, seeds=(0, 1),
                           trace_samples=1)
    history = setup.compute()
    ratio = history["sharpness"] * 3.2 / 2
    assert np.all(ratio[0] < 1)
    assert np.all(np.abs(ratio[-4:] - 1) < 0.25), ratio[-4:]


def test_catapult_step_sizes_are_multiples_of_each_members_own_two_over_lambda0():
    setup = CatapultSetup(n_train=50, hidden=(32,), multiples=(0.5, 2.0), seeds=(0, 1), steps=5)
    data, model, config = setup.build()
    lambda0 = top_eigenvalue(model, data, CatapultSetup.LOSS, iterations=500)  # power iteration, run long
    expected = [m * 2 / float(s) for m, s in zip(setup.member_values("multiple"), lambda0)]
    assert np.allclose(config.lr, expected, rtol=1e-4)


def test_two_digit_classes_relabels_and_keeps_train_and_test_apart():
    data = two_digit_classes((1, 8), seeds=[0, 1], n_train=50, n_test=40)
    assert data.train_idx.shape == (2, 50) and data.test_idx.shape == (2, 40)
    _, y = data.batch(data.train_idx)
    assert set(y.unique().tolist()) == {0, 1}
    x_train, _ = data.batch(data.train_idx)
    x_test, _ = data.batch(data.test_idx)
    for s in range(2):  # no training image among the test images
        assert torch.cdist(x_train[s], x_test[s]).min() > 0
    with pytest.raises(ValueError, match="n_train \\+ n_test"):
        two_digit_classes((1, 8), seeds=[0], n_train=300, n_test=300)


def test_perceptron_setup_starts_at_zero_and_counts_steps_to_separate():
    setup = PerceptronSetup(lrs=(0.01, 1e4), steps=40, seeds=(0,))
    data, model, _ = setup.build()
    assert all(float(p.detach().abs().max()) == 0 for p in model.parameters())
    history = setup.compute()
    steps = {lr: steps_to_separate(history.select(lr=lr)) for lr in setup.lrs}
    assert np.isnan(steps[0.01][0]) and np.isfinite(steps[1e4][0])  # tiny steps: not separated in 40
    margin = history.select(lr=1e4)["margin"]
    assert margin[0, 0] == 0 and margin[-1, 0] > 0  # from w = 0 to a separating direction


def test_hessian_spectrum_gives_every_eigenvalue_sorted():
    assert HessianSpectrumSetup.of(StabilitySetup(), lr=0.8, seeds=(0, 1, 2)).seeds == (0, 1, 2)
    setup = HessianSpectrumSetup.of(StabilitySetup(steps=20), lr=0.8, n_train=30, hidden=(4,))
    assert (setup.lrs, setup.seeds, setup.steps, setup.activation) == ((0.8,), (0,), 20, "tanh")
    history = setup.compute()
    before, after = history.arrays["before"], history.arrays["after"]
    params = 64 * 4 + 4 + 4 * 10 + 10
    assert before.shape == after.shape == (1, params)
    assert np.all(np.diff(before) <= 1e-12) and np.all(np.diff(after) <= 1e-12)
    assert list(history.steps) == [0, 20]  # no readings in between: only the spectra are wanted
    data, model, _ = setup.build()  # "before" is the untrained network's
    expected = torch.linalg.eigvalsh(dense_hessian(model, data, setup.LOSS, 0).double()).flip(0).numpy()
    np.testing.assert_array_equal(before[0], expected)
    assert not np.array_equal(after, before)


def test_hessian_spectrum_reads_every_member():
    setup = HessianSpectrumSetup(n_train=30, hidden=(3,), lrs=(0.4, 0.8), seeds=(0, 1), steps=5)
    history = setup.compute()
    assert history.arrays["before"].shape == (4, 64 * 3 + 3 + 3 * 10 + 10)
    assert [(m["lr"], m["seed"]) for m in history.members] == [(0.4, 0), (0.4, 1), (0.8, 0), (0.8, 1)]
    np.testing.assert_array_equal(history.arrays["before"][0], history.arrays["before"][2])  # same seed, same start


def test_sharpness_exercise_check_accepts_power_iteration_and_rejects_too_few_steps(capsys):
    from genlib.pages.exercises import check_sharpness

    def power_iteration(loss_of, w, iterations=200):
        w = w.detach().requires_grad_(True)
        grad = torch.autograd.grad(loss_of(w), w, create_graph=True)[0]
        v = torch.randn_like(w)
        v = v / v.norm()
        for _ in range(iterations):
            hv = torch.autograd.grad(grad, w, grad_outputs=v, retain_graph=True)[0]
            top = v @ hv
            v = hv / hv.norm()
        return top

    assert check_sharpness(power_iteration) and "✓" in capsys.readouterr().out
    assert not check_sharpness(lambda f, w: power_iteration(f, w, 2)) and "expected" in capsys.readouterr().out
    assert not check_sharpness(lambda f, w: w[:2]) and "one number" in capsys.readouterr().out
