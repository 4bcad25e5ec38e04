import pytest
import torch

from genlib.core.data import TaskData
from genlib.core.models import MLP, EmbeddingMLP, Transformer
from genlib.core.train import TrainConfig, predict, train
from genlib.measures.ntk import empirical_ntk, kernel_alignment, kernel_regression, relative_kernel_change

F64 = torch.float64


def tiny(members=3, **kw):
    """A float64 MLP ensemble 3 -> 4 -> 2 (26 parameters per member)."""
    kw = {"activation": "tanh"} | kw
    return MLP(3, (4,), 2, list(range(members)), **kw).double()


def inputs(n, dim=3, seed=0):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=F64)


def finite_difference_jacobian(model, x, member, h=1e-6):
    """(N, C, P): central differences of member ``member``'s outputs along each of its parameters."""
    columns = []
    with torch.no_grad():
        for p in model.parameters():
            flat = p[member].view(-1)
            for j in range(flat.numel()):
                old = flat[j].item()
                flat[j] = old + h
                up = model(x)[member]
                flat[j] = old - h
                down = model(x)[member]
                flat[j] = old
                columns.append((up - down) / (2 * h))
    return torch.stack(columns, -1)


def reference_kernel(model, x1, x2, member):
    j1 = finite_difference_jacobian(model, x1.expand(model.members, -1, -1), member)
    j2 = finite_difference_jacobian(model, x2.expand(model.members, -1, -1), member)
    return torch.einsum("ncp,mcp->nm", j1, j2) / j1.shape[1]  # the output-averaged kernel


@pytest.mark.parametrize("kw", [{}, {"output_scale": [0.5, 2.0, 3.0], "centered": True}, {"activation": "relu"}],
                         ids=["plain", "scaled-and-centred", "relu"])
def test_each_members_kernel_is_the_product_of_its_finite_difference_jacobians(kw):
    model = tiny(**kw)
    if kw.get("centered"):
        with torch.no_grad():  # move away from the initialization, where g(w) - g(w0) is zero
            for p in model.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1), dtype=F64))
    x1, x2 = inputs(5), inputs(4, seed=1)
    kernel = empirical_ntk(model, x1, x2)
    assert kernel.shape == (3, 5, 4)
    for s in range(model.members):
        expected = reference_kernel(model, x1, x2, s)
        error = (kernel[s] - expected).abs().max() / expected.abs().max()
        assert error < 1e-7, f"member {s}: relative difference {error:.2e} from finite differences"


@pytest.mark.parametrize("model", [
    EmbeddingMLP(5, [0, 1], embed_dim=3, hidden=(4,)),
    EmbeddingMLP(5, [0, 1], embed_dim=3, hidden=(4,), combine="sum"),
    Transformer(5, [0, 1], d_model=4, heads=1, d_mlp=4),
], ids=["embedding-mlp", "sum-mlp", "transformer"])
def test_token_models_kernels_match_finite_differences(model):
    model = model.double()
    tokens = torch.randint(0, 5, (6, 2), generator=torch.Generator().manual_seed(0))
    kernel = empirical_ntk(model, tokens)
    for s in range(model.members):
        expected = reference_kernel(model, tokens, tokens, s)
        error = (kernel[s] - expected).abs().max() / expected.abs().max()
        assert error < 1e-6, f"member {s}: relative difference {error:.2e} from finite differences"


def test_the_kernel_scales_as_the_output_scale_squared():
    small = empirical_ntk(tiny(output_scale=1.0, centered=True), inputs(6))
    large = empirical_ntk(tiny(output_scale=3.0, centered=True), inputs(6))
    torch.testing.assert_close(large, 9 * small, rtol=1e-12, atol=0)


def test_the_kernel_is_symmetric_positive_semidefinite():
    kernel = empirical_ntk(tiny(), inputs(12))  # 12 examples, 2 outputs, 26 parameters: full rank
    torch.testing.assert_close(kernel, kernel.transpose(1, 2), rtol=0, atol=0)
    smallest = torch.linalg.eigvalsh(kernel)[:, 0]
    assert (smallest > -1e-12 * kernel.abs().amax((1, 2))).all(), f"smallest eigenvalues {smallest.tolist()}"


def test_a_members_kernel_does_not_depend_on_the_other_members():
    model, x = tiny(), inputs(7)
    before = empirical_ntk(model, x)
    with torch.no_grad():
        for p in model.parameters():
            p[1] *= 2.0
    after = empirical_ntk(model, x)
    assert (after[1] - before[1]).abs().max() > 1e-3, "member 1's kernel changed"
    torch.testing.assert_close(after[[0, 2]], before[[0, 2]], rtol=0, atol=0)
    alone = empirical_ntk(tiny(members=1), x)  # member 0 trained on its own is the same network
    torch.testing.assert_close(alone[0], before[0], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("chunk", [1, 2, 3, 100])
def test_chunked_and_unchunked_kernels_agree(chunk):
    model = tiny()
    x1, x2 = inputs(7), torch.randn(3, 5, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    for a, b in [(x1, None), (x1, x2), (x2, x1), (x2, None)]:
        whole = empirical_ntk(model, a, b, chunk=10**6)
        torch.testing.assert_close(empirical_ntk(model, a, b, chunk=chunk), whole, rtol=1e-12, atol=1e-12)


def test_per_member_inputs_give_each_member_its_own_kernel():
    model = tiny()
    x = torch.randn(3, 5, 3, generator=torch.Generator().manual_seed(3), dtype=F64)
    kernel = empirical_ntk(model, x)
    for s in range(3):
        torch.testing.assert_close(kernel[s], empirical_ntk(model, x[s])[s], rtol=0, atol=0)


def test_evaluation_mode_and_the_model_is_unchanged():
    model = tiny(dropout=0.5)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    first = empirical_ntk(model, inputs(6))
    torch.testing.assert_close(empirical_ntk(model, inputs(6)), first, rtol=0, atol=0)  # no dropout masks
    assert model.training, "the model's mode is restored"
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    torch.testing.assert_close(empirical_ntk(model, inputs(6)), first, rtol=0, atol=0)


def random_psd(members, n, rank, seed=0):
    a = torch.randn(members, n, rank, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return a @ a.transpose(1, 2)


@pytest.mark.parametrize("ridge", [0.0, 0.1, 10.0])
def test_kernel_regression_is_the_closed_form(ridge):
    g = torch.Generator().manual_seed(4)
    k_train, k_cross = random_psd(2, 6, 8), torch.randn(2, 4, 6, generator=g, dtype=F64)
    y = torch.randn(2, 6, 3, generator=g, dtype=F64)
    expected = k_cross @ torch.linalg.solve(k_train + ridge * torch.eye(6, dtype=F64), y)
    torch.testing.assert_close(kernel_regression(k_train, k_cross, y, ridge), expected, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(kernel_regression(k_train, k_cross, y[..., 0], ridge), expected[..., 0],
                               rtol=1e-9, atol=1e-10)  # (S, n) targets give (S, N_test) predictions


def test_ridgeless_kernel_regression_interpolates_the_training_targets():
    k_train = random_psd(3, 10, 12)
    y = torch.randn(3, 10, generator=torch.Generator().manual_seed(5), dtype=F64)
    fitted = kernel_regression(k_train, k_train, y)
    assert (fitted - y).abs().max() < 1e-8, f"largest training residual {(fitted - y).abs().max():.2e}"


def test_ridgeless_kernel_regression_on_a_singular_kernel_is_the_minimum_norm_fit():
    g = torch.Generator().manual_seed(6)
    train_features, test_features = torch.randn(2, 10, 4, generator=g, dtype=F64), torch.randn(2, 5, 4, generator=g,
                                                                                             dtype=F64)
    k_train = train_features @ train_features.transpose(1, 2)  # rank 4: (K + 0 I)^-1 does not exist
    k_cross = test_features @ train_features.transpose(1, 2)
    y = torch.randn(2, 10, generator=g, dtype=F64)
    got = kernel_regression(k_train, k_cross, y)
    expected = (k_cross @ torch.linalg.pinv(k_train, hermitian=True, rtol=1e-10) @ y[..., None])[..., 0]
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-8)
    # the ridgeless limit; a ridge far above the null space's rounding-level eigenvalues (~1e-15, which
    # differ between CPUs: at 1e-9 they moved the fit by 2e-6 on an AVX-512 Xeon), far below the signal's
    tiny_ridge = kernel_regression(k_train, k_cross, y, ridge=1e-7)
    torch.testing.assert_close(got, tiny_ridge, rtol=1e-6, atol=1e-6)
    # the same as least squares in the 4 features, minimum norm: the fit a linear model would reach
    weights = torch.linalg.pinv(train_features) @ y[..., None]
    torch.testing.assert_close(got, (test_features @ weights)[..., 0], rtol=1e-7, atol=1e-8)


def test_a_lazy_network_trained_by_gradient_descent_ends_at_kernel_regression_with_its_initial_kernel():
    # Chizat et al. 2019: f = alpha (g(w) - g(w0)), lr ~ 1/alpha^2. Large alpha trains lazily: the
    # kernel hardly moves and GD from the zero function ends where its initial NTK's regression is.
    n, n_test, dim, alphas = 8, 40, 16, [0.1, 100.0]
    x = torch.randn(n + n_test, dim, generator=torch.Generator().manual_seed(0), dtype=F64)
    y = (torch.sin(2 * x[:, 0]) + x[:, 1] ** 2).expand(2, -1).clone()
    idx = torch.arange(n + n_test).expand(2, -1)
    data = TaskData(x=x, y=y, train_idx=idx[:, :n].clone(), test_idx=idx[:, n:].clone())
    model = MLP(dim, (256,), 1, [0, 0], output_scale=alphas, centered=True).double()
    k0 = empirical_ntk(model, x)
    expected = kernel_regression(k0[:, :n, :n], k0[:, n:, :n], y[:, :n])
    top = torch.linalg.eigvalsh(k0[:, :n, :n])[:, -1]  # proportional to alpha^2
    lr = [0.5 * n / float(t) for t in top]  # half the stable step for the mean squared error
    history = train(model, data, TrainConfig(steps=300, lr=lr, optimizer="sgd", loss="mse", dtype="float64",
                                             eval_every=300, eval_log_points=0, device="cpu"))
    assert (history.metrics["train_loss"][-1] < 1e-12).all(), "both members interpolate their training data"
    got = predict(model, x[n:].expand(2, -1, -1))[..., 0]
    distance = (got - expected).norm(dim=1) / expected.norm(dim=1)
    assert distance[1] < 1e-3, f"lazy member: test predictions {distance[1]:.2e} from kernel regression"
    assert distance[0] > 30 * distance[1], f"rich member {distance[0]:.2e} vs lazy {distance[1]:.2e}"
    change = relative_kernel_change(k0[:, :n, :n], empirical_ntk(model, x[:n]))
    assert change[1] < 1e-3 < 0.1 < change[0], f"relative kernel change {change.tolist()}"


def test_kernel_alignment_of_the_target_kernel_is_one():
    y = torch.randn(2, 9, generator=torch.Generator().manual_seed(7), dtype=F64)
    target = y[:, :, None] * y[:, None, :]
    torch.testing.assert_close(kernel_alignment(3.0 * target, y), torch.ones(2, dtype=F64))
    torch.testing.assert_close(kernel_alignment(target, y, centered=True), torch.ones(2, dtype=F64))
    # <I, y y^T> = |y|^2, |I|_F = sqrt(n), |y y^T|_F = |y|^2
    identity = torch.eye(9, dtype=F64).expand(2, -1, -1)
    torch.testing.assert_close(kernel_alignment(identity, y), torch.full((2,), 9**-0.5, dtype=F64))
    one_hot = torch.nn.functional.one_hot(torch.arange(9) % 3).to(F64).expand(2, -1, -1)
    torch.testing.assert_close(kernel_alignment(one_hot @ one_hot.transpose(1, 2), one_hot), torch.ones(2, dtype=F64))


def test_centred_alignment_ignores_a_constant_offset():
    y = torch.randn(1, 9, generator=torch.Generator().manual_seed(8), dtype=F64)
    y = y - y.mean()
    offset = y[:, :, None] * y[:, None, :] + 5.0  # y y^T plus a constant kernel
    assert kernel_alignment(offset, y) < 0.9
    torch.testing.assert_close(kernel_alignment(offset, y, centered=True), torch.ones(1, dtype=F64))


def test_relative_kernel_change():
    k0 = random_psd(2, 5, 5)
    moved = k0.clone()
    moved[1] *= 1.25
    torch.testing.assert_close(relative_kernel_change(k0, moved), torch.tensor([0.0, 0.25], dtype=F64))


@pytest.mark.parametrize("call, name", [
    (lambda m: empirical_ntk(torch.nn.Linear(3, 1), inputs(2)), "model"),
    (lambda m: empirical_ntk(m, inputs(2, dim=4)), "x1"),
    (lambda m: empirical_ntk(m, [[0.0, 1.0, 2.0]]), "x1"),
    (lambda m: empirical_ntk(m, torch.randn(2, 4, 3, dtype=F64)), "x1"),
    (lambda m: empirical_ntk(m, inputs(2), torch.zeros(3, 3, dtype=torch.long)), "x2"),
    (lambda m: empirical_ntk(m, inputs(2), chunk=0), "chunk"),
    (lambda m: empirical_ntk(EmbeddingMLP(5, [0]), torch.tensor([[0, 5]])), "x1"),
    (lambda m: kernel_regression(random_psd(3, 4, 4), torch.ones(3, 2, 4), torch.ones(3, 4), ridge=-1.0), "ridge"),
    (lambda m: kernel_regression(torch.ones(3, 4, 5), torch.ones(3, 2, 4), torch.ones(3, 4)), "k_train"),
    (lambda m: kernel_regression(random_psd(3, 4, 4), torch.ones(3, 2, 5), torch.ones(3, 4)), "k_cross"),
    (lambda m: kernel_regression(random_psd(3, 4, 4), torch.ones(3, 2, 4), torch.ones(3, 5)), "y_train"),
    (lambda m: kernel_alignment(random_psd(3, 4, 4), torch.ones(2, 4)), "y"),
    (lambda m: kernel_alignment(random_psd(3, 4, 4), torch.ones(3, 4, dtype=torch.long)), "y"),
    (lambda m: kernel_alignment(torch.ones(4, 4), torch.ones(1, 4)), "k"),
    (lambda m: relative_kernel_change(random_psd(3, 4, 4), random_psd(3, 5, 5)), "k"),
])
def test_bad_arguments_are_refused(call, name):
    with pytest.raises(ValueError, match=name) as err:
        call(tiny())
    assert "got" in str(err.value)


def test_ntk_entry_exercise_check(capsys):
    from genlib.pages.exercises import check_ntk_entry

    def right(f, params, x1, x2):
        g1 = torch.autograd.grad(f(params, x1), params)
        g2 = torch.autograd.grad(f(params, x2), params)
        return sum((a * b).sum() for a, b in zip(g1, g2)).item()

    def product_of_outputs(f, params, x1, x2):
        return (f(params, x1) * f(params, x2)).item()

    def first_tensor_only(f, params, x1, x2):
        g1, g2 = torch.autograd.grad(f(params, x1), params[0]), torch.autograd.grad(f(params, x2), params[0])
        return (g1[0] * g2[0]).sum().item()

    assert check_ntk_entry(right)
    assert "✓" in capsys.readouterr().out
    assert not check_ntk_entry(product_of_outputs)
    assert "✗" in capsys.readouterr().out
    assert not check_ntk_entry(first_tensor_only)
    assert "every parameter" in capsys.readouterr().out
    assert not check_ntk_entry(lambda f, params, x1, x2: "one")
    assert "number" in capsys.readouterr().out
