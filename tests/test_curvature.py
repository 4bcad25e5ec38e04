import numpy as np
import pytest
import torch

from genlib.core.data import TaskData
from genlib.core.models import MLP
from genlib.core.optim import EnsembleOptimizer
from genlib.core.train import ensemble_backward, predict
from genlib.measures.curvature import (
    _hessian_operator,
    _lanczos_until,
    _random_vectors,
    adam_preconditioner,
    dense_hessian,
    hessian_trace,
    hessian_vector_product,
    preconditioned_top_eigenvalue,
    top_eigenpair,
    top_eigenvalue,
)

LOSSES = ["mse", "cross_entropy"]


def tiny(loss="mse", members=3, n=12, target_scale=1.0, **kw):
    """A float64 MLP ensemble 3 -> 4 -> 2 (26 parameters per member) and n training examples."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    if loss == "mse":
        y, classes = target_scale * torch.randn(members, n, 2, generator=g, dtype=torch.float64), None
    else:
        y, classes = torch.randint(0, 2, (members, n), generator=g), 2
    idx = torch.arange(n).expand(members, n).clone()
    data = TaskData(x=x, y=y, train_idx=idx, test_idx=idx[:, :2], num_classes=classes)
    kw = {"activation": "tanh"} | kw
    return MLP(3, (4,), 2, list(range(members)), **kw).double(), data


def flat(vectors, member):
    return torch.cat([v[member].reshape(-1) for v in vectors])


def dense_spectra(model, data, loss, **kw):
    return [np.linalg.eigvalsh(dense_hessian(model, data, loss, s, **kw).numpy()) for s in range(model.members)]


@pytest.mark.parametrize("loss", LOSSES)
def test_hessian_vector_product_is_each_members_dense_hessian_times_its_vector(loss):
    model, data = tiny(loss)
    vectors = [torch.randn_like(p) for p in model.parameters()]
    products = hessian_vector_product(model, data, vectors, loss)
    for s in range(model.members):
        expected = dense_hessian(model, data, loss, s) @ flat(vectors, s)
        torch.testing.assert_close(flat(products, s), expected, rtol=0, atol=1e-8)


@pytest.mark.parametrize("loss", LOSSES)
def test_top_eigenvalue_is_the_largest_dense_eigenvalue(loss):
    model, data = tiny(loss)
    top = top_eigenvalue(model, data, loss, iterations=100)  # error ~ (lambda_2 / lambda_1)^200
    expected = [spectrum[-1] for spectrum in dense_spectra(model, data, loss)]
    np.testing.assert_allclose(top.numpy(), expected, rtol=1e-4)


def test_top_eigenvalue_when_a_negative_eigenvalue_dominates():
    model, data = tiny("mse", target_scale=10.0)  # far from the targets: an indefinite Hessian
    spectra = dense_spectra(model, data, "mse")
    assert -spectra[0][0] > 1.3 * spectra[0][-1], "member 0's most negative eigenvalue dominates"
    top = top_eigenvalue(model, data, "mse", iterations=300)
    np.testing.assert_allclose(top.numpy(), [s[-1] for s in spectra], rtol=1e-4)


@pytest.mark.parametrize("loss", LOSSES)
def test_top_eigenpair_stops_at_its_tolerance(loss):
    model, data = tiny(loss)
    expected = np.array([spectrum[-1] for spectrum in dense_spectra(model, data, loss)])
    cold = top_eigenpair(model, data, loss, tolerance=1e-10, max_iterations=500)
    np.testing.assert_allclose(cold.values.numpy(), expected, rtol=1e-6)
    assert cold.iterations.shape == (3,) and torch.all((cold.iterations >= 2) & (cold.iterations < 500))
    for s in range(3):  # a unit eigenvector: H v = lambda v
        v = flat(cold.vectors, s)
        torch.testing.assert_close(v.norm(), torch.tensor(1.0, dtype=v.dtype))
        torch.testing.assert_close(dense_hessian(model, data, loss, s) @ v, cold.values[s] * v, rtol=0, atol=1e-4)
    loose = top_eigenpair(model, data, loss, tolerance=1e-2)
    assert torch.all(loose.iterations <= cold.iterations) and np.all(loose.values.numpy() <= expected * (1 + 1e-9))
    capped = top_eigenpair(model, data, loss, tolerance=1e-12, max_iterations=3)
    assert torch.all((capped.iterations == 3) | (capped.iterations == 6))  # 6: a shifted pass for a negative estimate


def test_top_eigenpair_residual_rule_stops_near_an_eigenpair():
    model, data = tiny("mse")
    expected = np.array([spectrum[-1] for spectrum in dense_spectra(model, data, "mse")])
    pair = top_eigenpair(model, data, "mse", tolerance=1e-6, max_iterations=500, rule="residual")
    np.testing.assert_allclose(pair.values.numpy(), expected, rtol=1e-8)
    for s in range(3):  # the stopping rule's residual, checked against the dense Hessian
        v = flat(pair.vectors, s)
        residual = (dense_hessian(model, data, "mse", s) @ v - pair.values[s] * v).norm()
        assert residual <= 1e-6 * pair.values[s] * (1 + 1e-6)


def test_a_restricted_operator_gives_its_members_products():
    model, data = tiny("mse", members=5)
    vectors = [torch.randn_like(p) for p in model.parameters()]
    chosen = torch.tensor([1, 4])
    products = _hessian_operator(model, data, "mse", None, chosen)([v[chosen] for v in vectors])
    for mine, theirs in zip(products, hessian_vector_product(model, data, vectors, "mse")):
        torch.testing.assert_close(mine, theirs[chosen], rtol=0, atol=1e-12)


def test_top_eigenpair_drops_stopped_members_without_changing_any_reading():
    model, data = tiny("mse", members=8)
    start = next(_random_vectors(model, "normal", 0))
    everyone = _lanczos_until(_hessian_operator(model, data, "mse", None), start, 500, 1e-7, residual=True)
    pair = top_eigenpair(model, data, "mse", tolerance=1e-7, max_iterations=500, rule="residual")
    assert len(set(pair.iterations.tolist())) > 2, "members must stop at different products for this test"
    torch.testing.assert_close(pair.iterations, everyone.iterations, rtol=0, atol=0)
    torch.testing.assert_close(pair.values, everyone.values, rtol=1e-12, atol=0)
    for mine, theirs in zip(pair.vectors, everyone.vectors):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-10)


def test_top_eigenpair_of_a_diverged_member_is_nan_and_the_others_are_unaffected():
    model, data = tiny("mse")
    reference = top_eigenpair(model, data, "mse", tolerance=1e-8)
    with torch.no_grad():
        next(model.parameters())[1] = float("inf")  # member 1 has diverged
    pair = top_eigenpair(model, data, "mse", tolerance=1e-8)
    assert torch.isnan(pair.values[1]) and pair.iterations[1] == 1
    np.testing.assert_allclose(pair.values[[0, 2]].numpy(), reference.values[[0, 2]].numpy(), rtol=1e-6)


def test_top_eigenpair_when_a_negative_eigenvalue_dominates():
    model, data = tiny("mse", target_scale=10.0)
    spectra = dense_spectra(model, data, "mse")
    pair = top_eigenpair(model, data, "mse", tolerance=1e-10, max_iterations=2000)
    np.testing.assert_allclose(pair.values.numpy(), [s[-1] for s in spectra], rtol=1e-4)


def test_hutchinson_trace_is_close_with_many_samples():
    model, data = tiny("mse")
    noise = torch.randn(data.y.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    data.y = predict(model, data.x.expand(3, -1, -1)) + 0.1 * noise  # near a fit: H close to PSD
    estimate = hessian_trace(model, data, "mse", samples=1000).numpy()
    for s in range(model.members):
        h = dense_hessian(model, data, "mse", s).numpy()
        exact = np.trace(h)
        # A Rademacher sample has variance 2 * (sum of squared off-diagonal entries).
        standard_error = np.sqrt(2 * ((h**2).sum() - (np.diag(h) ** 2).sum()) / 1000)
        assert abs(estimate[s] - exact) < 4 * standard_error
        assert abs(estimate[s] - exact) < 0.05 * abs(exact), f"member {s}: {estimate[s]} vs {exact}"


def test_hutchinson_trace_is_exact_for_a_diagonal_hessian():
    # A linear model on orthonormal inputs: the MSE Hessian is a multiple of the identity, and
    # z^T H z = sum_i H_ii z_i^2 = trace for every Rademacher z.
    x = torch.eye(3, dtype=torch.float64)
    idx = torch.arange(3).expand(2, 3).clone()
    data = TaskData(x=x, y=torch.randn(2, 3, 2, dtype=torch.float64), train_idx=idx, test_idx=idx)
    model = MLP(3, (), 2, [0, 1], bias=False).double()
    exact = [torch.trace(dense_hessian(model, data, "mse", s)).item() for s in range(2)]
    np.testing.assert_allclose(hessian_trace(model, data, "mse", samples=1).numpy(), exact, rtol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
def test_preconditioned_top_eigenvalue_matches_the_dense_preconditioned_hessian(loss):
    model, data = tiny(loss)
    g = torch.Generator().manual_seed(1)
    precond = [torch.exp(torch.randn(p.shape, generator=g, dtype=p.dtype)) for p in model.parameters()]
    got = preconditioned_top_eigenvalue(model, data, loss, precond, iterations=60)
    for s in range(model.members):
        scale = torch.diag(flat(precond, s).rsqrt())
        expected = np.linalg.eigvalsh((scale @ dense_hessian(model, data, loss, s) @ scale).numpy())[-1]
        np.testing.assert_allclose(got[s].item(), expected, rtol=1e-4)


def test_adam_preconditioner_is_the_one_adam_steps_with():
    model, data = tiny("mse")
    params = list(model.parameters())
    lr = torch.tensor([0.01, 0.02, 0.03])
    optimizer = EnsembleOptimizer(params, "adamw", lr=lr, weight_decay=torch.zeros(3))
    x, y = data.batch(data.train_idx)
    for _ in range(3):
        optimizer.zero_grad()
        ensemble_backward(model, x, y, "mse", block=3)
        before = [p.detach().clone() for p in params]
        optimizer.step()
    for p, p0, precond, state in zip(params, before, adam_preconditioner(optimizer), optimizer.state):
        step = -lr.view(-1, *[1] * (p.dim() - 1)) * state["m"] / precond  # -lr P^-1 m
        torch.testing.assert_close(p.detach() - p0, step, rtol=1e-10, atol=1e-14)


def test_members_are_independent():
    model, data = tiny("mse")
    first = top_eigenvalue(model, data, "mse", iterations=50)
    trace = hessian_trace(model, data, "mse", samples=20)
    with torch.no_grad():
        for p in model.parameters():
            p[1] *= 3.0
    second = top_eigenvalue(model, data, "mse", iterations=50)
    assert abs(second[1] - first[1]) > 1e-3, "member 1 changed"
    torch.testing.assert_close(second[[0, 2]], first[[0, 2]], rtol=1e-12, atol=0)
    torch.testing.assert_close(hessian_trace(model, data, "mse", samples=20)[[0, 2]], trace[[0, 2]],
                               rtol=1e-12, atol=0)


def test_a_subset_of_examples_and_evaluation_mode():
    model, data = tiny("mse", dropout=0.5)
    model.train()
    top = top_eigenvalue(model, data, "mse", iterations=300, subset=5)  # member 0: lambda_min ~ -0.97 lambda_max
    assert model.training, "the model's mode is restored"
    np.testing.assert_allclose(top.numpy(), [s[-1] for s in dense_spectra(model, data, "mse", subset=5)],
                               rtol=1e-4)  # deterministic: no dropout while evaluating
    torch.testing.assert_close(top_eigenvalue(model, data, "mse", subset=12), top_eigenvalue(model, data, "mse"))


@pytest.mark.parametrize("call, name", [
    (lambda m, d: top_eigenvalue(m, d, "mse", iterations=0), "iterations"),
    (lambda m, d: top_eigenvalue(m, d, "mse", seed=-1), "seed"),
    (lambda m, d: hessian_trace(m, d, "mse", samples=0), "samples"),
    (lambda m, d: top_eigenvalue(m, d, "mse", subset=0), "subset"),
    (lambda m, d: hessian_trace(m, d, "mse", subset=13), "subset"),
    (lambda m, d: top_eigenvalue(m, d, "hinge"), "loss"),
    (lambda m, d: dense_hessian(m, d, "mse", member=3), "member"),
    (lambda m, d: hessian_vector_product(m, d, [torch.zeros_like(p) for p in m.parameters()][:-1], "mse"), "vectors"),
    (lambda m, d: hessian_vector_product(m, d, [torch.zeros(2, *p.shape[1:]) for p in m.parameters()], "mse"),
     "vectors"),
    (lambda m, d: preconditioned_top_eigenvalue(m, d, "mse", [torch.ones_like(p) for p in m.parameters()][1:]),
     "preconditioner"),
    (lambda m, d: preconditioned_top_eigenvalue(m, d, "mse", [torch.zeros_like(p) for p in m.parameters()]),
     "preconditioner"),
    (lambda m, d: top_eigenpair(m, d, "mse", tolerance=0.0), "tolerance"),
    (lambda m, d: top_eigenpair(m, d, "mse", tolerance=1.5), "tolerance"),
    (lambda m, d: top_eigenpair(m, d, "mse", max_iterations=1), "max_iterations"),
    (lambda m, d: top_eigenpair(m, d, "mse", rule="plateau"), "rule"),
    (lambda m, d: adam_preconditioner(EnsembleOptimizer(list(m.parameters()), "adamw", torch.ones(3),
                                                        torch.zeros(3))), "step_count"),
])
def test_bad_arguments_are_refused(call, name):
    model, data = tiny("mse")
    with pytest.raises(ValueError, match=name) as err:
        call(model, data)
    assert "got" in str(err.value)
