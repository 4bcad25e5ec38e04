"""Units of what the simplicity- and spectral-bias chapters added: synthetic tasks, activations,
Fourier features and the spectral centroid."""
import math

import numpy as np
import pytest
import torch

from genlib.experiments.spectral import SinusoidSetup, fourier_features, run_sinusoids, sinusoid_data, spectral_centroid
from genlib.models import MLP
from genlib.synthetic import cued_digits, cumulant_classes, lms, two_cues


def test_lms_coordinates_each_predict_the_label():
    data = lms(2000, 500, slabs=5, dims=6, seeds=[0])
    x, y = data.x[data.train_idx[0]], data.y[0, data.train_idx[0]]
    assert data.subsets["linear_randomized"].shape == (1, 500)
    assert (x.norm(dim=1) <= math.sqrt(6) + 1e-4).all(), "a rotation keeps points in the [-1, 1]^d cube's ball"
    balance = y.float().mean()
    assert 0.4 < balance < 0.6


def test_lms_randomization_keeps_marginals_and_labels():
    data = lms(100, 400, slabs=3, dims=4, seeds=[1])
    test, shuffled = data.x[data.test_idx[0]], data.x[data.subsets["slabs_randomized"][0]]
    assert torch.equal(data.y[0, data.test_idx[0]], data.y[0, data.subsets["slabs_randomized"][0]])
    assert torch.allclose(test.mean(0), shuffled.mean(0), atol=1e-5), "shuffling keeps each coordinate's values"
    with pytest.raises(ValueError, match="margin"):
        lms(slabs=5, margin=0.6)


def test_cued_digits_probes():
    data = cued_digits(200, 4.0, seeds=[0])
    cue_only = data.x[data.subsets["cue_only"][0]]
    labels = data.y[0, data.subsets["cue_only"][0]]
    assert torch.equal(cue_only.argmax(1), labels), "the bright pixel's position is the class"
    conflict = data.x[data.subsets["cue_conflict"][0]] - data.x[data.subsets["digit_only"][0]]
    assert torch.equal(conflict.argmax(1), data.y[0, data.subsets["cue_conflict"][0]])
    assert not torch.equal(data.y[0, data.subsets["cue_conflict"][0]], data.y[0, data.test_idx[0]])


def test_cumulant_classes_clone_matches_two_moments():
    data = cumulant_classes(2000, 4000, seeds=[0])
    x, y = data.x[data.test_idx[0]], data.y[0, data.test_idx[0]]
    xc, yc = data.x[data.subsets["clone"][0]], data.y[0, data.subsets["clone"][0]]
    for c in (0, 1):
        assert torch.allclose(x[y == c].mean(0), xc[yc == c].mean(0), atol=0.1)
        assert torch.allclose(torch.cov(x[y == c].T), torch.cov(xc[yc == c].T), atol=0.15)
    kurtosis = lambda z: (z**4).mean() / (z**2).mean() ** 2  # noqa: E731
    assert kurtosis(x[y == 1, 2]) < 2 < kurtosis(xc[yc == 1, 2]), "the clone loses the higher cumulants"


def test_two_cues_conflict_labels_follow_a():
    data = two_cues(100, 300, (0.8, 0.9), (2.0, 0.5), noise_dims=3, seeds=[0])
    x, y = data.x[data.subsets["conflict"][0]], data.y[0, data.subsets["conflict"][0]]
    assert torch.equal((x[:, 0] > 0).long(), y) and torch.equal((x[:, 1] < 0).long(), y)
    with pytest.raises(ValueError, match="predictivity"):
        two_cues(predictivity=(0.8,))


def test_new_activations_and_bias_init():
    z = torch.linspace(-3, 3, 7)
    for name, expected in [("sin", torch.sin(z)), ("gaussian", torch.exp(-z * z)), ("snake", z + torch.sin(z) ** 2)]:
        from genlib.models import ACTIVATIONS

        assert torch.allclose(ACTIVATIONS[name](z), expected)
    model = MLP(1, (500,), 1, [0], bias_init=2.0)
    assert 1.8 < float(model.biases[0].detach().std()) < 2.2
    with pytest.raises(ValueError, match="bias_init"):
        MLP(1, (4,), 1, [0], bias_init=-1.0)


def test_spectral_centroid_of_pure_cosines():
    x = (torch.arange(512, dtype=torch.float64) + 0.5) / 512  # cell midpoints: the mirror is seamless
    # cos(pi k x) on [0, 1], mirrored, is one cosine with k cycles: its centroid is exactly k
    outputs = torch.stack([torch.cos(math.pi * k * x) for k in (3, 10, 40)])
    assert torch.allclose(spectral_centroid(outputs), torch.tensor([3.0, 10.0, 40.0], dtype=torch.float64))


def test_fourier_features_and_sinusoid_residuals_start_at_one():
    x = torch.rand(10, 1)
    f = fourier_features(x, 3.0, 8)
    assert f.shape == (10, 16) and torch.allclose(f[:, :8] ** 2 + f[:, 8:] ** 2, torch.ones(10, 8))
    s = SinusoidSetup(points=64, hidden=(16,), steps=2, seeds=(0, 1))
    assert sinusoid_data(s).y.shape == (2, 64)
    run = run_sinusoids([s])[0]
    assert np.allclose(run["residual_1"][0], 1.0, atol=0.3), "an untrained network has fitted (almost) nothing"


@pytest.mark.parametrize("kw, name", [(dict(scale=0.0), "scale"), (dict(features=0), "features")])
def test_bad_fourier_feature_arguments(kw, name):
    with pytest.raises(ValueError, match=name):
        fourier_features(torch.zeros(3, 1), **({"scale": 1.0, "features": 4} | kw))
