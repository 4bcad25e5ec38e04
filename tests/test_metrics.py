import math

import torch

from genlib.core.metrics import accuracy, fourier_concentration, parameter_norm, softmax_collapse
from genlib.core.models import MLP


def test_accuracy_per_member():
    out = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])
    labels = torch.tensor([[0, 1], [1, 1]])
    assert accuracy(out, labels).tolist() == [1.0, 0.0]


def test_collapse_counts_examples_whose_float32_loss_is_exactly_zero():
    margins = torch.tensor([5.0, 20.0, 120.0])  # 5: loss > 0; 20 and 120: 1 + e^-margin rounds to 1
    out = torch.stack([margins, torch.zeros(3)], -1)[None]  # (1, 3, 2)
    labels = torch.zeros(1, 3, dtype=torch.long)
    assert math.isclose(softmax_collapse(out, labels).item(), 2 / 3, rel_tol=1e-6)
    # float64 postpones the collapse (margin ~37 instead of ~17): only the margin-120 example is 0.
    assert math.isclose(softmax_collapse(out.double(), labels).item(), 1 / 3, rel_tol=1e-6)
    assert softmax_collapse(out, labels, "stablemax").item() == 0.0, "StableMax's loss decays polynomially"


def test_fourier_concentration_separates_a_clean_frequency_from_noise():
    p = 31
    t = torch.arange(p, dtype=torch.float64)[:, None]
    clean = torch.cat([torch.cos(2 * math.pi * 4 * t / p), torch.sin(2 * math.pi * 4 * t / p)], 1)  # (p, 2)
    noise = torch.randn(p, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    c = fourier_concentration(torch.stack([clean, noise[:, :2]]), top_k=1)
    assert c[0] > 0.99 and c[1] < 0.5


def test_parameter_norm_is_per_member():
    m = MLP(2, (3,), 1, [0, 1], bias=False)
    with torch.no_grad():
        for w in m.parameters():
            w.zero_()
            w[1] = 1.0
    assert parameter_norm(m).tolist() == [0.0, 3.0]  # 6 + 3 ones in member 1


def test_worst_rise():
    import pytest

    from genlib.core.metrics import worst_rise

    assert worst_rise([3.0, 2.0, 2.0, 1.0]) == 1.0
    assert worst_rise([3.0, 1.0, 1.5, 0.5]) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="values"):
        worst_rise([1.0, 0.0])


def test_reliability_curve_by_hand():
    import numpy as np
    import pytest

    from genlib.core.metrics import reliability_curve

    # two members pooled; confidences 0.55, 0.58 (bin 5), 0.95 (bin 9) and exactly 1.0 (the last bin, closed)
    p = torch.tensor([[[0.55, 0.45], [0.42, 0.58]], [[0.95, 0.05], [0.0, 1.0]]], dtype=torch.float64)
    labels = torch.tensor([[0, 0], [1, 1]])  # right, wrong, wrong, right
    confidence, accuracy = reliability_curve(p, labels, bins=10)
    np.testing.assert_allclose(confidence, [(0.55 + 0.58) / 2, (0.95 + 1.0) / 2])
    np.testing.assert_allclose(accuracy, [0.5, 0.5])
    confidence, accuracy = reliability_curve(p, labels, bins=10, min_count=3)
    assert len(confidence) == len(accuracy) == 0, "no bin holds 3 examples"
    confidence, accuracy = reliability_curve(p, labels, bins=1)
    np.testing.assert_allclose(confidence, [p.max(-1).values.mean()]), np.testing.assert_allclose(accuracy, [0.5])
    assert reliability_curve(p.float(), labels)[0].dtype == np.float32, "in the probabilities' precision"
    for bad, match in [(dict(bins=0), "bins"), (dict(min_count=0), "min_count")]:
        with pytest.raises(ValueError, match=match):
            reliability_curve(p, labels, **bad)
    with pytest.raises(ValueError, match="probabilities"):
        reliability_curve(p[0], labels)
    with pytest.raises(ValueError, match="probabilities"):
        reliability_curve(p * 2, labels)
    with pytest.raises(ValueError, match="labels"):
        reliability_curve(p, labels[:, :1])


def test_reliability_curve_of_calibrated_predictions_follows_the_diagonal():
    import numpy as np

    from genlib.core.metrics import reliability_curve

    g = torch.Generator().manual_seed(0)
    confidence = 0.5 + 0.5 * torch.rand(2, 50_000, generator=g, dtype=torch.float64)
    labels = (torch.rand(confidence.shape, generator=g, dtype=torch.float64) >= confidence).long()  # 0 w.p. c
    p = torch.stack([confidence, 1 - confidence], -1)
    mean_confidence, accuracy = reliability_curve(p, labels, bins=10, min_count=100)
    assert len(mean_confidence) == 5, "confidences in [0.5, 1): bins 5 to 9"
    np.testing.assert_allclose(accuracy, mean_confidence, atol=0.01)
