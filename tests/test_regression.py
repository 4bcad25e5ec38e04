import pytest
import torch

from genlib.measures.regression import SpectralSolver, relu_features


def problem(n, width, seed=0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, width, generator=g, dtype=torch.float64) / width**0.5
    targets = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return features, targets


@pytest.mark.parametrize("n, width", [(30, 10), (30, 30), (30, 90)])
def test_min_norm_is_the_pseudo_inverse(n, width):
    features, targets = problem(n, width)
    solver = SpectralSolver(features)
    expected = torch.linalg.pinv(features) @ targets
    assert torch.allclose(solver.weights(targets, solver.min_norm()), expected, atol=1e-8)


@pytest.mark.parametrize("n, width", [(30, 10), (30, 90)])
def test_ridge_solves_the_normal_equations(n, width):
    features, targets = problem(n, width)
    solver = SpectralSolver(features)
    lam = 0.05
    expected = torch.linalg.solve(features.T @ features + n * lam * torch.eye(width, dtype=torch.float64),
                                  features.T @ targets)
    assert torch.allclose(solver.weights(targets, solver.ridge(lam)), expected, atol=1e-10)


def test_gradient_descent_filter_equals_iterated_gradient_descent():
    features, targets = problem(30, 50)
    solver = SpectralSolver(features)
    w, lr = torch.zeros(50, 3, dtype=torch.float64), 0.7
    for _ in range(40):
        w -= lr * features.T @ (features @ w - targets) / 30
    assert torch.allclose(solver.weights(targets, solver.gradient_descent(lr, 40)), w, atol=1e-10)
    assert torch.equal(solver.gradient_descent(lr, 0), torch.zeros_like(solver.s))


def test_predictions_through_projection_match_weights():
    features, targets = problem(30, 50)
    test = torch.randn(7, 50, dtype=torch.float64)
    solver = SpectralSolver(features)
    coefficients = solver.coefficients(targets, solver.ridge(0.01))
    direct = test @ solver.weights(targets, solver.ridge(0.01))
    assert torch.allclose(solver.project(test) @ coefficients, direct, atol=1e-10)
    assert torch.isclose(coefficients.norm(), solver.weights(targets, solver.ridge(0.01)).norm())


def test_relu_features_are_seeded_and_unit_scaled():
    x = torch.randn(500, 64)
    x = x / x.norm(dim=1, keepdim=True) * 8  # |x|^2 = d, as genlib.core.data.digits gives
    a, b, c = relu_features(x, 400, 1), relu_features(x, 400, 1), relu_features(x, 400, 2)
    assert a.shape == (500, 400) and a.dtype == torch.float64
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0.8 < float(a.pow(2).sum(1).mean()) < 1.2


@pytest.mark.parametrize("call, name", [
    (lambda s: s.ridge(-1.0), "ridge"),
    (lambda s: s.gradient_descent(1e3, 10), "lr"),
    (lambda s: s.gradient_descent(0.1, -1), "steps"),
    (lambda s: s.weights(torch.zeros(5, 2), s.min_norm()), "targets"),
])
def test_bad_solver_inputs_name_the_parameter(call, name):
    solver = SpectralSolver(problem(30, 10)[0])
    with pytest.raises(ValueError, match=name):
        call(solver)


def test_bad_feature_inputs():
    with pytest.raises(ValueError, match="features"):
        SpectralSolver(torch.zeros(5))
    with pytest.raises(ValueError, match="n_features"):
        relu_features(torch.zeros(3, 4), 0, 0)


def test_random_features_recipe_is_abstract_and_checks_its_settings():
    import inspect

    from genlib.experiments.double_descent import FeatureSweep, NetworkSweep, RandomFeatures

    assert inspect.isabstract(RandomFeatures) and not inspect.isabstract(FeatureSweep)
    with pytest.raises(TypeError):
        RandomFeatures()
    bad = [(lambda: FeatureSweep(noises=(0.2, 1.5)), "noises"), (lambda: FeatureSweep(ridges=(-1.0,)), "ridges"),
           (lambda: NetworkSweep(optimizer="adam"), "optimizer"), (lambda: NetworkSweep(noise=-0.1), "noise"),
           (lambda: NetworkSweep(gd_lr=0.0), "gd_lr")]
    for make, name in bad:
        with pytest.raises(ValueError, match=name):
            make()


def test_network_sweep_s_schedule_divides_adam_s_step_and_gradient_descent_keeps_its_own():
    from genlib.experiments.double_descent import GD_RATE, NetworkSweep

    small = dict(n_train=20, widths=(1, 2), seeds=(0,), steps=40)
    assert NetworkSweep(**small).build()[2].lr_milestones == ()
    variants = NetworkSweep(**small, schedule=True, gd_lr=0.25).variants()
    assert variants["Adam"].build()[2].lr_milestones == (20, 30)
    assert variants["Adam, clean labels"].build()[2].lr_milestones == (20, 30)
    gd = variants["gradient descent"].build()[2]
    assert (gd.optimizer, gd.lr, gd.lr_milestones) == ("sgd", 0.25, ())
    assert NetworkSweep(**small).variants()["gradient descent"].lr == GD_RATE
    full = NetworkSweep.at_scale("full")
    assert full.schedule and full.gd_lr < GD_RATE
