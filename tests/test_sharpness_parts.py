"""The sharpness chapter's setups (genlib/experiments/sharpness.py) and its exercise checker."""
import numpy as np
import pytest
import torch

from genlib.curvature import top_eigenvalue
from genlib.experiments.sharpness import (
    CatapultSetup,
    PerceptronSetup,
    StabilityGrid,
    StabilitySetup,
    batch_label,
    hessian_spectrum,
    steps_to_separate,
    two_digit_classes,
)

TINY = dict(n_train=60, hidden=(8,), steps=30, sharpness_every=10, power_iterations=5, trace_samples=2, seeds=(0,))


def test_grid_names_one_setup_per_batch_size_and_sam_at_the_compared_step():
    grid = StabilityGrid(batch_sizes=(None, 16), sam_radii=(0.05, 0.1), compared_lr=0.8)
    setups = grid.setups()
    assert list(setups) == ["full batch", "batch 16"] and setups["batch 16"].batch_size == 16
    assert type(setups["full batch"]) is StabilitySetup  # cached independently of the grid
    sams = grid.sam_setups()
    assert list(sams) == ["SAM rho=0.05", "SAM rho=0.1"]
    assert all(s.lrs == (0.8,) and s.batch_size is None for s in sams.values())
    assert batch_label(None) == "full batch" and batch_label(4) == "batch 4"


def test_stability_run_records_sharpness_and_trace_per_member():
    setup = StabilitySetup(lrs=(0.2, 0.4), **TINY)
    history = setup.compute()
    assert history["sharpness"].shape == (len(history.steps), 2)
    assert np.all(history["sharpness"] > 0) and history.arrays["trace"].shape == (2,)
    assert [m["lr"] for m in history.members] == [0.2, 0.4]


def test_edge_of_stability_at_small_scale():
    # a small network at a step size whose 2/eta is just above its initial sharpness: the
    # sharpness rises to 2/eta and stays within 25% of it (section 1's claim, small)
    setup = StabilitySetup(n_train=200, hidden=(32, 32), lrs=(3.2,), steps=300, sharpness_every=25, seeds=(0, 1),
                           trace_samples=1)
    history = setup.compute()
    ratio = history["sharpness"] * 3.2 / 2
    assert np.all(ratio[0] < 1)
    assert np.all(np.abs(ratio[-4:] - 1) < 0.25), ratio[-4:]


def test_catapult_step_sizes_are_multiples_of_each_members_own_two_over_lambda0():
    setup = CatapultSetup(n_train=50, hidden=(32,), multiples=(0.5, 2.0), seeds=(0, 1), steps=5)
    data, model, config = setup.build()
    lambda0 = top_eigenvalue(model, data, "mse", iterations=50)
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


def test_hessian_spectrum_gives_every_eigenvalue_sorted():
    before, after = hessian_spectrum(StabilitySetup(steps=20), lr=0.8, n_train=30, hidden=(4,))
    params = 64 * 4 + 4 + 4 * 10 + 10
    assert before.shape == after.shape == (params,)
    assert np.all(np.diff(before) <= 1e-12) and np.all(np.diff(after) <= 1e-12)


def test_sharpness_exercise_check_accepts_power_iteration_and_rejects_too_few_steps(capsys):
    from genlib.exercises import check_sharpness

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
