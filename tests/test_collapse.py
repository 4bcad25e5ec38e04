"""Neural collapse measures on features whose answer is known, and MLP's penultimate features."""
import math

import pytest
import torch

from genlib.core.data import TaskData
from genlib.core.models import MLP
from genlib.measures.collapse import (
    equiangularity,
    equinorm,
    model_collapse,
    ncc_mismatch,
    neural_collapse,
    self_duality,
    within_class_variation,
)


def simplex_etf(k: int, d: int, scale: float = 2.0) -> torch.Tensor:
    """(k, d) centred simplex: equal norms ``scale``, pairwise cosines -1/(k-1), in a random rotation."""
    vertices = torch.eye(k, dtype=torch.float64) - 1 / k  # rows sum to 0; cos between rows -1/(k-1)
    vertices = vertices / vertices.norm(dim=1, keepdim=True) * scale
    rotation = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(k), dtype=torch.float64))[0]
    return torch.cat([vertices, torch.zeros(k, d - k, dtype=torch.float64)], 1) @ rotation


def collapsed(k=4, d=6, per_class=5, noise=0.0, members=1, seed=0):
    """Features (S, N, d) at the vertices of a simplex ETF (offset by a global mean) plus noise."""
    labels = torch.arange(k).repeat_interleave(per_class).expand(members, -1).clone()  # (S, N)
    means = simplex_etf(k, d) + torch.linspace(-1, 1, d, dtype=torch.float64)  # mu_G is not 0
    g = torch.Generator().manual_seed(seed)
    features = means[labels] + noise * torch.randn(members, k * per_class, d, generator=g, dtype=torch.float64)
    return features, labels, means


def test_a_simplex_etf_without_noise_is_fully_collapsed():
    k, d = 4, 6
    features, labels, means = collapsed(k, d)
    centred = means - means.mean(0)
    weight = (3.0 * centred.T)[None]  # classifier rows = the centred means (any scale), (1, d, K)
    bias = -(means.mean(0) @ weight[0])[None, None]  # so that h W + b = 3 <mu_c - mu_G, h - mu_G>
    values = neural_collapse(features, labels, k, weight, bias)
    assert set(values) == {"nc1", "equinorm", "equiangularity", "self_duality", "ncc_mismatch"}
    for name, v in values.items():
        assert v.shape == (1,) and abs(float(v[0])) < 1e-12, f"{name} of a noiseless simplex ETF is {float(v[0])}"


def test_without_a_classifier_only_the_feature_measures_are_returned():
    features, labels, _ = collapsed()
    assert set(neural_collapse(features, labels, 4)) == {"nc1", "equinorm", "equiangularity"}


def test_nc1_grows_with_the_within_class_noise():
    values = [float(within_class_variation(*collapsed(noise=noise)[:2], 4)[0]) for noise in (0.01, 0.1, 0.3, 1.0)]
    assert all(a < b for a, b in zip(values, values[1:])), f"NC1 at growing noise: {values}"
    assert values[0] < 1e-3 < values[-1]


def test_nc1_of_a_diverged_member_is_nan_and_the_others_are_unchanged():
    """A run that diverged has NaN features: its NC1 is NaN, the solver does not fail for the batch."""
    features, labels, _ = collapsed(noise=0.1, members=3)
    alone = within_class_variation(features[:1], labels[:1], 4)
    features[1, 3, 2] = torch.nan
    features[2, 0, 0] = torch.inf
    nc1 = within_class_variation(features, labels, 4)
    assert torch.isnan(nc1[1:]).all() and torch.equal(nc1[:1], alone)


def test_when_the_batched_eigensolver_fails_each_member_is_solved_alone(monkeypatch):
    """Member 1's eigendecomposition fails (SVD gives its pseudo-inverse), member 2's fails both ways
    (NaN); member 0 is unaffected, though the batch as a whole failed."""
    from genlib.measures import collapse

    a = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigma = a @ a.transpose(1, 2)  # symmetric, rank 2
    expected = torch.linalg.pinv(sigma, rtol=collapse.PINV_RTOL, hermitian=True)
    real_pinv = torch.linalg.pinv

    def flaky(matrix, rtol=None, hermitian=False):
        if matrix.dim() == 3 or (hermitian and torch.equal(matrix, sigma[1])) or torch.equal(matrix, sigma[2]):
            raise torch.linalg.LinAlgError("linalg.eigh: the algorithm failed to converge")
        return real_pinv(matrix, rtol=rtol, hermitian=hermitian)

    monkeypatch.setattr(torch.linalg, "pinv", flaky)
    got = collapse._pseudo_inverse(sigma)
    torch.testing.assert_close(got[:2], expected[:2])
    assert torch.isnan(got[2]).all()


def test_nc1_of_a_two_class_example_by_hand():
    """Class 0 at (-1 -+ b, +-c), class 1 at (1 -+ b, +-c): means (-1, 0), (1, 0) and Sigma_B = diag(1, 0);
    the deviations (-+b, +-c) give Sigma_W = [[b^2, -bc], [-bc, c^2]], so NC1 = b^2 / 2 whatever c."""
    b, c = 0.5, 3.0
    features = torch.tensor([[[-1 - b, c], [-1 + b, -c], [1 - b, c], [1 + b, -c]]], dtype=torch.float64)
    labels = torch.tensor([[0, 0, 1, 1]])
    assert math.isclose(float(within_class_variation(features, labels, 2)[0]), b**2 / 2, rel_tol=1e-12)


def test_nc1_matches_the_formula_written_out_with_class_loops():
    g = torch.Generator().manual_seed(1)
    k, n, d = 3, 30, 5
    features = torch.randn(2, n, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, k, (2, n), generator=g)
    got = within_class_variation(features, labels, k)
    for s in range(2):
        h, y = features[s], labels[s]
        mu = torch.stack([h[y == c].mean(0) for c in range(k)])
        sigma_w = sum(torch.outer(h[i] - mu[y[i]], h[i] - mu[y[i]]) for i in range(n)) / n
        sigma_b = sum(torch.outer(m - h.mean(0), m - h.mean(0)) for m in mu) / k
        expected = torch.trace(sigma_w @ torch.linalg.pinv(sigma_b)) / k
        assert math.isclose(float(got[s]), float(expected), rel_tol=1e-10), f"member {s}: {got[s]} vs {expected}"


def test_equinorm_and_equiangularity_by_hand():
    """Means (0, 0), (2, 0), (0, 4) with one example each: mu_G = (2/3, 4/3)."""
    features = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]]], dtype=torch.float64)
    labels = torch.tensor([[0, 1, 2]])
    centred = features[0] - features[0].mean(0)
    norms = centred.norm(dim=1)
    assert math.isclose(float(equinorm(features, labels, 3)[0]), float(norms.std() / norms.mean()), rel_tol=1e-12)
    unit = centred / norms[:, None]
    pairs = [(0, 1), (0, 2), (1, 2)]
    expected = sum(abs(float(unit[a] @ unit[b]) + 0.5) for a, b in pairs) / 3
    assert math.isclose(float(equiangularity(features, labels, 3)[0]), expected, rel_tol=1e-12)


def test_self_duality_is_the_distance_of_the_normalized_matrices():
    features, labels, means = collapsed(k=3, d=4, noise=0.2)
    weight = torch.randn(1, 4, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    h = features[0]
    mu = torch.stack([h[labels[0] == c].mean(0) for c in range(3)]) - h.mean(0)
    expected = (weight[0].T / weight[0].norm() - mu / mu.norm()).pow(2).sum()
    assert math.isclose(float(self_duality(features, labels, 3, weight)[0]), float(expected), rel_tol=1e-12)
    aligned = (mu.T * 7.0)[None]
    assert float(self_duality(features, labels, 3, aligned)[0]) < 1e-24, "the classifier equal to the means: 0"


def test_ncc_mismatch_counts_where_the_classifier_and_the_nearest_mean_disagree():
    # Two classes on a line, means -1 and 1; the classifier's threshold sits at 0.5 instead of 0.
    features = torch.tensor([[[-1.5], [-0.5], [0.2], [0.4], [0.6], [1.4]]], dtype=torch.float64)
    labels = torch.tensor([[0, 0, 0, 1, 1, 1]])  # class means -0.6 and 0.8: the nearest-mean cut is at 0.1
    weight = torch.tensor([[[-1.0, 1.0]]], dtype=torch.float64)  # logits (-h, h)
    bias = torch.tensor([[[0.5, -0.5]]], dtype=torch.float64)  # class 1 iff 2h - 1 > 0, h > 0.5
    # Nearest mean says class 1 for 0.2, 0.4, 0.6, 1.4; the classifier only for 0.6, 1.4: two of six differ.
    assert math.isclose(float(ncc_mismatch(features, labels, 2, weight, bias)[0]), 2 / 6, rel_tol=1e-12)
    assert float(ncc_mismatch(features, labels, 2, weight)[0]) == 0.0, "without the bias the cut is at 0"


def test_members_are_independent():
    features, labels, _ = collapsed(members=3, noise=0.3, seed=4)
    weight = torch.randn(3, 6, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    before = neural_collapse(features, labels, 4, weight)
    changed = features.clone()
    changed[0] = changed[0] * 5 + torch.randn(20, 6, dtype=torch.float64)
    changed[2] = torch.randn(20, 6, dtype=torch.float64)
    after = neural_collapse(changed, labels, 4, weight)
    for name in before:
        assert torch.equal(before[name][1], after[name][1]), f"member 1's {name} moved when members 0 and 2 changed"
        assert not torch.equal(before[name][0], after[name][0]) or name == "ncc_mismatch"


def test_float32_features_give_float64_values():
    features, labels, _ = collapsed(noise=0.1)
    value = within_class_variation(features.float(), labels, 4)
    assert value.dtype == torch.float64
    assert math.isclose(float(value[0]), float(within_class_variation(features, labels, 4)[0]), rel_tol=1e-5)


@pytest.mark.parametrize("change, name", [
    (lambda f, y, w: (f[0], y, w), "features"),
    (lambda f, y, w: (f.long(), y, w), "features"),
    (lambda f, y, w: (f, y[:, :-1], w), "labels"),
    (lambda f, y, w: (f, y.float(), w), "labels"),
    (lambda f, y, w: (f, y + 1, w), "labels"),  # class 4 of 4 classes
    (lambda f, y, w: (f, y - 1, w), "labels"),
    (lambda f, y, w: (f, y.clamp(max=2), w), "class 3"),  # class 3 has no examples
    (lambda f, y, w: (f, y, w[:, :, :3]), "weight"),
    (lambda f, y, w: (f, y, w.transpose(1, 2)), "weight"),
])
def test_bad_inputs_are_refused_naming_the_argument(change, name):
    features, labels, _ = collapsed(d=6)
    weight = torch.zeros(1, 6, 4, dtype=torch.float64)
    f, y, w = change(features, labels, weight)
    with pytest.raises(ValueError, match=name):
        neural_collapse(f, y, 4, w)


def test_bad_num_classes_and_bias_are_refused():
    features, labels, _ = collapsed()
    with pytest.raises(ValueError, match="num_classes"):
        neural_collapse(features, labels, 1)
    with pytest.raises(ValueError, match="bias"):
        neural_collapse(features, labels, 4, bias=torch.zeros(1, 1, 4))
    with pytest.raises(ValueError, match="bias"):
        neural_collapse(features, labels, 4, torch.zeros(1, 6, 4), torch.zeros(1, 4))


def test_mlp_features_times_the_last_layer_are_the_raw_output():
    model = MLP(3, (5, 7), 4, [0, 1], activation="tanh", output_scale=[1.0, 2.0]).double()
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    h = model.features(x)
    assert h.shape == (2, 9, 7)
    w, b = model.readout_layer()
    torch.testing.assert_close(h @ w + b, model.raw_output(x), rtol=0, atol=1e-14)
    torch.testing.assert_close(h @ model.weights[-1] + model.biases[-1], model.raw_output(x), rtol=0, atol=1e-14)
    by_hand = torch.tanh(torch.tanh(x @ model.weights[0] + model.biases[0]) @ model.weights[1] + model.biases[1])
    torch.testing.assert_close(h, by_hand, rtol=0, atol=1e-14)


def test_mlp_features_apply_unit_masks_and_dropout_only_in_training():
    model = MLP(3, (6,), 2, [0, 1], member_widths=[2, 6], dropout=0.5)
    x = torch.randn(2, 50, 3)
    model.eval()
    h = model.features(x)
    assert h[0, :, 2:].abs().max() == 0, "member 0's units past its width are masked"
    torch.testing.assert_close(h @ model.weights[-1] + model.biases[-1], model.raw_output(x))
    model.train()
    dropped = model.features(x)
    assert (dropped[1] == 0).float().mean() > 0.3, "dropout zeroes about half the units in training mode"


@pytest.mark.parametrize("make, name", [
    (lambda: MLP(3, (4,), 1, [0], readout="mean"), "readout"),
    (lambda: MLP(3, (4,), 2, [0], readout="signed"), "readout"),
    (lambda: MLP(3, (), 2, [0]), "hidden"),
])
def test_features_need_a_linear_readout_and_a_hidden_layer(make, name):
    with pytest.raises(ValueError, match=name):
        make().features(torch.randn(1, 2, 3))


def test_model_collapse_uses_the_penultimate_features_of_the_training_set():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = torch.stack([torch.arange(40) % 3, (torch.arange(40) + 1) % 3])
    idx = torch.stack([torch.arange(30), torch.arange(10, 40)])
    data = TaskData(x=x, y=y, train_idx=idx, test_idx=idx[:, :6], num_classes=3)
    model = MLP(3, (8,), 3, [0, 1], activation="tanh", dropout=0.3).double()
    model.train()
    got = model_collapse(model, data)
    assert model.training, "the model's mode is restored"
    model.eval()
    features, labels = model.features(x[idx]), y.gather(1, idx)
    expected = neural_collapse(features, labels, 3, model.weights[-1], model.biases[-1])
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="split"):
        model_collapse(model, data, split="validation")


def test_nc1_by_layer_measures_every_hidden_layer():
    from genlib.core.data import digits
    from genlib.core.models import MLP
    from genlib.measures.collapse import nc1_by_layer

    data = digits(100, [0, 1])
    model = MLP(64, (16, 8), 10, [0, 1])
    layers = nc1_by_layer(model, data)
    assert list(layers) == ["layer1", "layer2"] and all(v.shape == (2,) for v in layers.values())
    with torch.no_grad():
        expected = within_class_variation(model.features(data.inputs(data.train_idx), layer=0),
                                          data.batch(data.train_idx)[1], 10)
    torch.testing.assert_close(layers["layer1"], expected)
