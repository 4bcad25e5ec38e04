"""genlib.measures.mlp_hvp: the written-out Hessian-vector products of plain MLPs against autograd's."""
import pytest
import torch

from genlib.core.data import TaskData
from genlib.core.models import MLP
from genlib.measures import mlp_hvp
from genlib.measures.curvature import _autograd_hessian_operator, _training_batch, dense_hessian, hessian_vector_product


def task(loss: str, members: int = 3, n: int = 15, in_dim: int = 5, out_dim: int = 3, float_targets: bool = False):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, in_dim, generator=g, dtype=torch.float64)
    if loss == "mse" and float_targets:
        y, classes = torch.randn(members, n, out_dim, generator=g, dtype=torch.float64), None
    else:
        y, classes = torch.randint(0, out_dim, (members, n), generator=g), out_dim
    idx = torch.arange(n).expand(members, n).clone()
    return TaskData(x=x, y=y, train_idx=idx, test_idx=idx[:, :3], num_classes=classes)


def network(members: int = 3, hidden=(6, 4), out_dim: int = 3, **kw) -> MLP:
    return MLP(5, hidden, out_dim, list(range(members)), **({"activation": "tanh", "init_scale": 1.5} | kw)).double()


def both_products(model, data, loss, members=None):
    """(written out, autograd) products with the same random vectors."""
    x, y = _training_batch(model, data, loss, None)
    g = torch.Generator().manual_seed(2)
    vectors = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in model.parameters()]
    if members is not None:
        vectors = [v[members] for v in vectors]
    return (mlp_hvp.hessian_operator(model, x, y, loss, members)(vectors),
            _autograd_hessian_operator(model, x, y, loss, members)(vectors))


CASES = {
    "tanh, two hidden layers": {},
    "ReLU": {"activation": "relu"},
    "no biases": {"bias": False},
    "output scales": {"output_scale": [0.5, 2.0, 1.0]},
    "one hidden layer": {"hidden": (7,)},
    "no hidden layer": {"hidden": ()},
    "three hidden layers": {"hidden": (4, 5, 3)},
    "dropout (products in evaluation mode)": {"dropout": 0.5},
    "maximal-update parameterization": {"parameterization": "mup", "base_width": 2},
}


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("case", list(CASES))
def test_written_out_products_are_autograds(loss, case):
    model, data = network(**CASES[case]), task(loss)
    model.train()
    assert mlp_hvp.supports(model, loss)
    for mine, reference in zip(*both_products(model, data, loss)):
        torch.testing.assert_close(mine, reference, rtol=1e-10, atol=1e-12)
    assert model.training


def test_float_targets_and_a_subset_of_members():
    model, data = network(), task("mse", float_targets=True)
    for mine, reference in zip(*both_products(model, data, "mse", members=torch.tensor([0, 2]))):
        assert mine.shape[0] == 2
        torch.testing.assert_close(mine, reference, rtol=1e-10, atol=1e-12)


def test_a_product_is_the_dense_hessian_times_the_vector():
    model, data = network(hidden=(4,)), task("cross_entropy")
    vectors = [torch.randn_like(p) for p in model.parameters()]
    products = hessian_vector_product(model, data, vectors, "cross_entropy")
    for s in range(model.members):
        flat = torch.cat([v[s].reshape(-1) for v in vectors])
        expected = dense_hessian(model, data, "cross_entropy", s) @ flat
        torch.testing.assert_close(torch.cat([p[s].reshape(-1) for p in products]), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kw, loss", [
    ({"activation": "gelu"}, "mse"),
    ({"readout": "mean", "out_dim": 1}, "mse"),
    ({"centered": True}, "mse"),
    ({"batch_norm": True}, "mse"),
    ({"member_widths": [2, 4, 4], "hidden": (4,)}, "mse"),
    ({}, "stablemax"),
])
def test_other_networks_and_losses_go_to_autograd(kw, loss):
    model = network(**kw)
    assert not mlp_hvp.supports(model, loss)
    data = task(loss, out_dim=model.out_dim)
    vectors = [torch.randn_like(p) for p in model.parameters()]
    products = hessian_vector_product(model, data, vectors, loss)  # by autograd: still the dense Hessian's
    flat = torch.cat([v[0].reshape(-1) for v in vectors])
    torch.testing.assert_close(torch.cat([p[0].reshape(-1) for p in products]),
                               dense_hessian(model, data, loss, 0) @ flat, rtol=0, atol=1e-9)


def test_pruned_networks_go_to_autograd():
    model = network()
    model.set_weight_masks([torch.ones_like(w) for w in model.weights])
    assert not mlp_hvp.supports(model, "mse")


def test_an_unsupported_model_is_refused_by_name():
    model, data = network(activation="gelu"), task("mse")
    x, y = _training_batch(model, data, "mse", None)
    with pytest.raises(ValueError, match="model and loss"):
        mlp_hvp.hessian_operator(model, x, y, "mse")
