"""Units of what the simplicity- and spectral-bias chapters added: synthetic tasks, activations,
Fourier features and the spectral centroid."""
import math

import numpy as np
import pytest
import torch

from genlib.core.data import fourier_features
from genlib.core.metrics import spectral_centroid
from genlib.core.models import MLP
from genlib.core.synthetic import cued_digits, cumulant_classes, lms, two_cues
from genlib.experiments.simplicity import AvailabilityRun, AvailabilitySetup, CueSetup
from genlib.experiments.spectral import RedshiftSetup, SinusoidSetup, SnakeSetup
from genlib.running.sweep import run_experiment


def member_set(data, name, member=0):
    """(inputs, labels) of one member's named set ('train', 'test' or a subset)."""
    idx = data.eval_sets()[name]
    return data.inputs(idx)[member], data.y[member, idx[member]]


def test_lms_coordinates_each_predict_the_label():
    data = lms(2000, 500, slabs=5, dims=6, seeds=[0])
    x, y = member_set(data, "train")
    assert data.subsets["linear_randomized"].shape == (1, 500)
    assert (x.norm(dim=1) <= math.sqrt(6) + 1e-4).all(), "a rotation keeps points in the [-1, 1]^d cube's ball"
    balance = y.float().mean()
    assert 0.4 < balance < 0.6


def test_lms_randomization_keeps_marginals_and_labels():
    data = lms(100, 400, slabs=3, dims=4, seeds=[1])
    (test, y), (shuffled, y_shuffled) = member_set(data, "test"), member_set(data, "slabs_randomized")
    assert torch.equal(y, y_shuffled)
    assert torch.allclose(test.mean(0), shuffled.mean(0), atol=1e-5), "shuffling keeps each coordinate's values"
    with pytest.raises(ValueError, match="margin"):
        lms(slabs=5, margin=0.6)


def test_cued_digits_probes():
    data = cued_digits(200, 4.0, seeds=[0])
    cue_only, labels = member_set(data, "cue_only")
    assert torch.equal(cue_only.argmax(1), labels), "the bright pixel's position is the class"
    (conflict, conflict_labels), (digit, _) = member_set(data, "cue_conflict"), member_set(data, "digit_only")
    assert torch.equal((conflict - digit).argmax(1), conflict_labels)
    assert not torch.equal(conflict_labels, member_set(data, "test")[1])
    same_images, digit_labels = member_set(data, "cue_conflict_digit")
    assert torch.equal(same_images, conflict), "the same conflict images, labelled by the digit"
    assert torch.equal(digit_labels, member_set(data, "digit_only")[1])
    assert not (digit_labels == conflict_labels).any(), "in a conflict the cue never names the digit"


def test_cumulant_classes_clone_matches_two_moments():
    data = cumulant_classes(2000, 4000, seeds=[0])
    (x, y), (xc, yc) = member_set(data, "test"), member_set(data, "clone")
    for c in (0, 1):
        assert torch.allclose(x[y == c].mean(0), xc[yc == c].mean(0), atol=0.1)
        assert torch.allclose(torch.cov(x[y == c].T), torch.cov(xc[yc == c].T), atol=0.15)
    kurtosis = lambda z: (z**4).mean() / (z**2).mean() ** 2  # noqa: E731
    assert kurtosis(x[y == 1, 2]) < 2 < kurtosis(xc[yc == 1, 2]), "the clone loses the higher cumulants"


def test_two_cues_conflict_labels_follow_a():
    data = two_cues(100, 300, (0.8, 0.9), (2.0, 0.5), noise_dims=3, seeds=[0])
    x, y = member_set(data, "conflict")
    assert torch.equal((x[:, 0] > 0).long(), y) and torch.equal((x[:, 1] < 0).long(), y)
    with pytest.raises(ValueError, match="predictivity"):
        two_cues(predictivity=(0.8,))


def test_new_activations_and_bias_init():
    z = torch.linspace(-3, 3, 7)
    for name, expected in [("sin", torch.sin(z)), ("gaussian", torch.exp(-z * z)), ("snake", z + torch.sin(z) ** 2)]:
        from genlib.core.models import ACTIVATIONS

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
    data = s.data()
    assert data.x.shape == (128, 1) and data.y.shape == (2, 128), "inputs shared; train and test: the same points"
    run = run_experiment(s)
    assert np.allclose(run["residual_1"][0], 1.0, atol=0.3), "an untrained network has fitted (almost) nothing"
    assert run.arrays["fit"].shape == run.arrays["target"].shape == (2, 64)
    assert run.labels("seed") == [0, 1]


def test_synthetic_tasks_draw_one_data_set_per_seed():
    data = two_cues(50, 60, noise_dims=2, seeds=[0, 1])
    assert data.per_member_inputs and data.x.shape == (2, 50 + 60 + 60, 4)
    assert torch.equal(data.x[1], two_cues(50, 60, noise_dims=2, seeds=[1]).x), "a member's data: its seed's alone"


@pytest.mark.parametrize("kw, name", [(dict(scale=0.0), "scale"), (dict(features=0), "features")])
def test_bad_fourier_feature_arguments(kw, name):
    with pytest.raises(ValueError, match=name):
        fourier_features(torch.zeros(3, 1), **({"scale": 1.0, "features": 4} | kw))


def test_sweeps_are_plain_setups_and_closed_form_axes_are_named():
    from genlib.experiments.simplicity import CueSweep
    from genlib.experiments.spectral import SnakeComparison

    cues = CueSweep(CueSetup(steps=7), cue_strengths=(0.0, 6.0)).setups()
    assert list(cues) == [0.0, 6.0] and all(type(s) is CueSetup and s.steps == 7 for s in cues.values())
    assert cues[6.0].cue_strength == 6.0
    assert CueSweep.at_scale("full").base == CueSetup.at_scale("full"), "the grid's points: CueSetup's own sizes"
    snakes = SnakeComparison.at_scale().setups()
    assert all(type(s) is SnakeSetup and s.activation == a for a, s in snakes.items())
    redshift = RedshiftSetup(activations=("sin",), weight_scales=(1.0, 2.0), width=8, points=64, draws=2).compute()
    assert redshift.axis_name == "weight scale" and redshift["centroid"].shape == (2, 2)
    with pytest.raises(AttributeError, match="weight scale"):
        _ = redshift.steps


def test_availability_is_assembled_from_one_run_per_amplitude_and_model():
    s = AvailabilitySetup(amplitudes=((1.0, 1.0), (3.0, 0.3)), n_train=50, hidden=8, steps=5, seeds=(0, 1))
    runs = s.requires()
    assert list(runs) == ["linear_0", "relu_0", "linear_1", "relu_1"]
    assert all(type(r) is AvailabilityRun and r.steps == 5 for r in runs.values())
    assert runs["relu_1"].amplitude == (3.0, 0.3) and runs["linear_1"].model == "linear"
    reliance = run_experiment(s)
    assert reliance.axis.tolist() == [1.0, 10.0] and reliance.labels("seed") == [0, 1]
    for i in range(2):
        for model in ("linear", "relu"):
            expected = run_experiment(runs[f"{model}_{i}"]).final("conflict_acc")
            assert np.array_equal(reliance[model][i], expected), "each entry: its run's final conflict accuracy"


@pytest.mark.parametrize("make, name", [
    (lambda: SnakeSetup(activation="swish"), "activation"),
    (lambda: RedshiftSetup(activations=("relu", "cos")), "activations"),
    (lambda: RedshiftSetup(weight_scales=(-1.0,)), "weight_scales"),
    (lambda: AvailabilityRun(model="cnn"), "model"),
    (lambda: AvailabilitySetup(predictivity=(0.9, 1.5)), "predictivity"),
    (lambda: CueSetup(cue_strength=-1.0), "cue_strength"),
])
def test_bad_settings_are_refused_when_made(make, name):
    with pytest.raises(ValueError, match=name):
        make()
