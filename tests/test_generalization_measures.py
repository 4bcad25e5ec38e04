"""The generalization measures and bounds (genlib.measures.generalization) on cases with known answers."""
import itertools
import math

import numpy as np
import pytest
import torch

from genlib.core.data import digits
from genlib.core.models import MLP
from genlib.measures import generalization as g


def tiny(bias=False, seeds=(0, 1), hidden=(3, 4), **kw):
    model = MLP(2, hidden, 2, list(seeds), bias=bias, **kw).double()
    if bias:
        with torch.no_grad():
            for b in model.biases:
                b.normal_()
    return model


def test_norms_match_numpy_per_layer():
    model = tiny()
    weights = [w.detach().numpy() for w in model.weights]
    for s in range(2):
        fro = [np.linalg.norm(w[s]) for w in weights]
        spec = [np.linalg.svd(w[s], compute_uv=False)[0] for w in weights]
        np.testing.assert_allclose(g.frobenius_norms(model)[s].numpy(), fro, rtol=1e-10)
        np.testing.assert_allclose(g.spectral_norms(model)[s].numpy(), spec, rtol=1e-10)
        np.testing.assert_allclose(float(g.parameter_norm_squared(model)[s]), sum(f**2 for f in fro), rtol=1e-10)


def test_path_norm_is_the_sum_over_paths_of_squared_weights():
    model = tiny()
    w = [p.detach()[0] for p in model.weights]  # (2, 3), (3, 4), (4, 2)
    brute = sum(float((w[0][i, j] * w[1][j, k] * w[2][k, o]) ** 2)
                for i, j, k, o in itertools.product(range(2), range(3), range(4), range(2)))
    assert float(g.path_norm_squared(model)[0]) == pytest.approx(brute, rel=1e-10)


def test_path_norm_counts_the_paths_from_biases():
    model = MLP(1, (1,), 1, [0], bias=True).double()
    with torch.no_grad():
        model.weights[0].fill_(2.0), model.weights[1].fill_(3.0)
        model.biases[0].fill_(0.5), model.biases[1].fill_(-1.0)
    # paths: x -> h -> y (2^2 3^2 = 36), b1 -> h -> y (0.25 * 9), b2 -> y (1)
    assert float(g.path_norm_squared(model)[0]) == pytest.approx(36 + 2.25 + 1)


def test_masked_units_are_left_out_of_the_norms():
    wide = MLP(2, (4,), 2, [0, 1], member_widths=[2, 4]).double()
    weights, biases = g.layer_weights(wide)
    assert torch.all(weights[0][0, :, 2:] == 0) and torch.all(weights[1][0, 2:] == 0)
    assert torch.all(biases[0][0, :, 2:] == 0) and torch.all(weights[0][1] != 0)
    x = torch.randn(2, 5, 2, dtype=torch.float64)
    with torch.no_grad():  # the weights as read give the network's own outputs
        h = torch.relu(x @ weights[0] + biases[0])
        torch.testing.assert_close(h @ weights[1] + biases[1], wide(x))


def test_output_margin_on_known_outputs():
    model = tiny(seeds=(0,))
    x = torch.randn(1, 11, 2, dtype=torch.float64)
    with torch.no_grad():
        out = model(x)[0]
    labels = torch.zeros(1, 11, dtype=torch.long)
    margins = out[:, 0] - out[:, 1]
    expected = torch.quantile(margins, 0.1)
    assert float(g.output_margin(model, x, labels, 0.1)[0]) == pytest.approx(float(expected))
    assert float(g.output_margin(model, x, labels, 0.0)[0]) == pytest.approx(float(margins.min()))


def test_perturbed_error_without_noise_is_the_error_and_flatness_finds_the_threshold():
    data = digits(100, [0])
    model = MLP(64, (16,), 10, [0])
    x, y = data.batch(data.train_idx)
    with torch.no_grad():
        error = (model(x).argmax(-1) != y).float().mean()
    assert float(g.perturbed_error(model, x, y, 0.0)[0]) == pytest.approx(float(error))
    sigma = g.flatness_sigma(model, x, y, tolerance=0.02, draws=4, iterations=12)  # to a factor 1.003
    assert 1e-4 < float(sigma[0]) < 1.0
    assert float(g.perturbed_error(model, x, y, sigma, draws=4)[0]) <= float(error) + 0.02
    assert float(g.perturbed_error(model, x, y, sigma * 1.005, draws=4)[0]) > float(error) + 0.02
    with pytest.raises(ValueError, match="sigma must be one number >= 0"):
        g.perturbed_error(model, x, y, [0.1, 0.2])


def test_kendall_tau_known_answers_and_granulated_tau():
    assert g.kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert g.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert g.kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)  # 2 concordant pairs, 1 discordant
    with pytest.raises(ValueError, match="measure and gap must be two 1-d arrays"):
        g.kendall_tau([1, 2], [1, 2, 3])
    # two hyperparameters a, b on a 2 x 2 grid; the measure follows the gap along a, against it along b
    a, b = [0, 0, 1, 1], [0, 1, 0, 1]
    gap = [1.0, 2.0, 3.0, 4.0]  # grows with a and with b
    measure = [2.0, 1.0, 4.0, 3.0]  # grows with a, falls with b
    psi = g.granulated_tau(measure, gap, {"a": a, "b": b})
    assert psi == pytest.approx({"a": 1.0, "b": -1.0, "mean": 0.0})
    with pytest.raises(ValueError, match=r"hyperparameters\['a'\] must give one value per network"):
        g.granulated_tau(measure, gap, {"a": [0, 1]})


def test_per_example_gradients_match_autograd_and_coherence_known_cases():
    model = tiny(bias=True, seeds=(0, 1))
    x = torch.randn(2, 5, 2, dtype=torch.float64)
    y = torch.randint(0, 2, (2, 5))
    grads = g.per_example_gradients(model, x, y, member=1)
    for i in range(5):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[:, i : i + 1])[1], y[1, i : i + 1]).backward()
        expected = torch.cat([p.grad[1].reshape(-1) for p in model.parameters()])
        torch.testing.assert_close(grads[i], expected)
    same = torch.ones(4, 3)
    alpha, ratio = g.gradient_coherence(same)
    assert float(alpha) == pytest.approx(1.0) and float(ratio) == pytest.approx(4.0)
    alpha, ratio = g.gradient_coherence(torch.eye(5) * torch.arange(1.0, 6.0)[:, None])  # orthogonal
    assert float(alpha) == pytest.approx(1 / 5) and float(ratio) == pytest.approx(1.0)
    alpha, _ = g.gradient_coherence(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))  # opposite: cancel
    assert float(alpha) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="gradients must be"):
        g.gradient_coherence(torch.ones(1, 3))


def test_kl_inverse_and_the_bounds():
    p = g.kl_inverse(0.1, 0.05)
    assert g.binary_kl(0.1, p) == pytest.approx(0.05, abs=1e-9) and p > 0.1
    assert g.kl_inverse(0.0, 0.0) == pytest.approx(0.0, abs=1e-12)
    assert g.kl_inverse(0.0, math.log(2)) == pytest.approx(0.5)  # kl(0 || p) = -ln(1 - p)
    w, w0 = torch.tensor([3.0, 4.0]), torch.zeros(2)
    assert g.gaussian_kl(w, w0, 0.5) == pytest.approx(25 / (2 * 0.25))
    with pytest.raises(ValueError, match="sigma must be"):
        g.gaussian_kl(w, w0, 0.0)
    # the PAC-Bayes bound: no KL and endless data leave the error; more candidates cost more
    assert g.pac_bayes_bound(0.1, 10**9, 0.0, 10**9) == pytest.approx(0.1, abs=1e-3)
    assert g.pac_bayes_bound(0.1, 100, 50.0, 1000, candidates=10) > g.pac_bayes_bound(0.1, 100, 50.0, 1000)
    train = g.kl_inverse(0.1, math.log(4 / 0.05) / 100)
    expected = g.kl_inverse(train, (50 + math.log(4 * math.sqrt(1000) / 0.05)) / 1000)
    assert g.pac_bayes_bound(0.1, 100, 50.0, 1000) == pytest.approx(expected)
    train = g.kl_inverse(0.1, math.log(4 * 10 / 0.05) / 100)  # K = 10 candidates: delta / (2K) in both parts
    expected = g.kl_inverse(train, (50 + math.log(2 * math.sqrt(1000) * 2 * 10 / 0.05)) / 1000)
    assert g.pac_bayes_bound(0.1, 100, 50.0, 1000, candidates=10) == pytest.approx(expected)
    with pytest.raises(ValueError, match="delta must be"):
        g.pac_bayes_bound(0.1, 100, 50.0, 1000, delta=1.0)
    # the norm bound, by hand: one layer of norm 2, inputs of norm 1, n = 100, margin 1, 2 classes
    hand = 0.0 + 4 * 2 / 1 * (1 * (math.sqrt(2 * math.log(2)) + 1) * 2 / 10) + math.sqrt(math.log(20) / 200)
    assert g.norm_margin_bound(0.0, [2.0], 1.0, 100, 1.0, 2) == pytest.approx(hand)
    with pytest.raises(ValueError, match="margin must be"):
        g.norm_margin_bound(0.0, [2.0], 1.0, 100, 0.0, 2)


def test_layer_weights_refuse_other_models():
    with pytest.raises(ValueError, match="model must be a genlib MLP"):
        g.layer_weights(MLP(2, (3,), 1, [0], readout="mean"))


def test_distance_from_init_counts_only_the_units_a_member_has():
    from genlib.experiments.predictors import _distance_from_init, _flat

    model = MLP(2, (4,), 2, [0, 1], member_widths=[2, 4]).double()
    initial = _flat(model).clone()
    with torch.no_grad():  # move every weight of the hidden layer's units 2 and 3 (member 0 lacks them)
        model.weights[0][:, :, 2:] += 1.0
        model.weights[1][:, 2:, :] += 1.0
    moved = _flat(model).clone()
    distance = _distance_from_init(model, initial)
    assert float(distance[0]) == pytest.approx(0.0, abs=1e-12)
    assert float(distance[1]) == pytest.approx(2 * 2 + 2 * 2)  # 2 inputs x 2 units + 2 units x 2 outputs
    torch.testing.assert_close(_flat(model), moved)  # the model's own weights are put back
