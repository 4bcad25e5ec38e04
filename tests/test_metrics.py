import math

import torch

from genlib.metrics import accuracy, fourier_concentration, parameter_norm, softmax_collapse
from genlib.models import MLP


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

    from genlib.metrics import worst_rise

    assert worst_rise([3.0, 2.0, 2.0, 1.0]) == 1.0
    assert worst_rise([3.0, 1.0, 1.5, 0.5]) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="values"):
        worst_rise([1.0, 0.0])
