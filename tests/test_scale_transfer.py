"""The scale-transfer chapter's parts: muP against its definition (Tensor Programs V, Table 3), the
optimizer's per-layer multipliers, qk-layernorm, the z-loss and the effective sharpness."""
import math

import pytest
import torch

from genlib.core.data import digits
from genlib.core.models import MLP, Transformer, mup_scales
from genlib.core.optim import EnsembleOptimizer
from genlib.experiments.scale_transfer import (
    CurvatureSetup,
    InstabilitySetup,
    TransferGrid,
    TransferSetup,
    ZLoss,
    effective_sharpness,
)
from genlib.measures.curvature import dense_hessian


def test_mup_scales_follow_table_3():
    assert mup_scales(None, 4.0) == {"init": 1.0, "sgd": 4.0, "adamw": 1.0}  # input weights
    assert mup_scales(None, None) == {"init": 1.0, "sgd": 1.0, "adamw": 1.0}  # e.g. the output bias
    assert mup_scales(4.0, 4.0) == {"init": 1.0, "sgd": 1.0, "adamw": 0.25}  # hidden weights
    assert mup_scales(4.0, None) == {"init": 0.5, "sgd": 0.25, "adamw": 0.25}  # output weights
    with pytest.raises(ValueError, match="fan_in_ratio"):
        mup_scales(0.0, None)


def test_mup_is_sp_at_the_base_width_and_rescales_the_readout_beyond():
    sp, mup = MLP(64, (32, 32), 10, [0, 1]), MLP(64, (32, 32), 10, [0, 1], parameterization="mup")
    for a, b in zip(sp.parameters(), mup.parameters()):
        assert torch.equal(a, b)
    assert mup.lr_multipliers("sgd") == [1.0] * 6 and mup.lr_multipliers("adamw") == [1.0] * 6
    sp, mup = MLP(64, (128, 128), 10, [0], bias=False), MLP(64, (128, 128), 10, [0], bias=False,
                                                            parameterization="mup")
    assert torch.equal(sp.weights[0], mup.weights[0]) and torch.equal(sp.weights[1], mup.weights[1])
    assert torch.allclose(mup.weights[2], sp.weights[2] * 0.5)  # variance 32 / 128^2 = (1/2)^2 / 128
    assert mup.lr_multipliers("sgd") == [4.0, 1.0, 0.25]
    assert mup.lr_multipliers("adamw") == [1.0, 0.25, 0.25]
    assert sp.lr_multipliers("sgd") == [1.0, 1.0, 1.0]


def test_mup_biases_step_like_input_weights():
    mup = MLP(8, (64,), 3, [0], parameterization="mup", base_width=16)
    # order: w0, w1, b0, b1 (ParameterList registration order)
    names = [n for n, _ in mup.named_parameters()]
    multipliers = dict(zip(names, mup.lr_multipliers("sgd")))
    assert multipliers == {"weights.0": 4.0, "weights.1": 0.25, "biases.0": 4.0, "biases.1": 1.0}


def test_mup_rejects_what_it_does_not_define():
    with pytest.raises(ValueError, match="parameterization"):
        MLP(4, (8,), 2, [0], parameterization="ntk")
    with pytest.raises(ValueError, match="parameterization must be 'sp' with member_widths"):
        MLP(4, (8,), 2, [0, 1], member_widths=[4, 8], parameterization="mup")
    with pytest.raises(ValueError, match="base_width"):
        MLP(4, (8,), 2, [0], base_width=0)
    with pytest.raises(ValueError, match="kind"):
        MLP(4, (8,), 2, [0]).lr_multipliers("lion")


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_the_optimizer_steps_each_layer_at_its_multiple(kind):
    model = MLP(4, (16,), 2, [0, 1], parameterization="mup", base_width=4).to(torch.float64)  # tags survive .to
    reference = MLP(4, (16,), 2, [0, 1], parameterization="mup", base_width=4).double()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    lr = torch.tensor([0.1, 0.2], dtype=torch.float64)
    for m in (model, reference):
        m(x).pow(2).sum().backward()
    EnsembleOptimizer(list(model.parameters()), kind, lr=lr, weight_decay=torch.zeros(2, dtype=torch.float64)).step()
    for p, q, mult in zip(model.parameters(), reference.parameters(), reference.lr_multipliers(kind)):
        # one step of a fresh optimizer: SGD moves by lr*m*g, Adam by lr*m*sign(g) (up to eps)
        step = q.grad if kind == "sgd" else q.grad / (q.grad.abs() + 1e-8)
        assert torch.allclose(p, q - lr.view(-1, *[1] * (q.dim() - 1)) * mult * step, atol=1e-10)


def test_sp_steps_are_unchanged_by_the_multiplier_hook():
    model = MLP(4, (16,), 2, [0])
    params = list(model.parameters())
    assert EnsembleOptimizer(params, "sgd", torch.tensor([0.1]), torch.zeros(1)).multipliers == [None] * len(params)


def test_effective_sharpness_is_the_top_eigenvalue_of_the_rescaled_hessian():
    torch.manual_seed(0)
    data = digits(20, seeds=[0])
    model = MLP(64, (6,), 10, [0], parameterization="mup", base_width=3).double()
    data = data.to("cpu", torch.float64)
    hessian = dense_hessian(model, data, "mse", member=0)
    m = torch.cat([torch.full((p[0].numel(),), k, dtype=torch.float64)
                   for p, k in zip(model.parameters(), model.lr_multipliers("sgd"))])
    expected = torch.linalg.eigvalsh(m.sqrt()[:, None] * hessian * m.sqrt()[None]).max()
    got = effective_sharpness(model, data, "mse", iterations=300)
    assert got.shape == (1,) and math.isclose(float(got[0]), float(expected), rel_tol=1e-4)


def test_qk_norm_bounds_the_attention_logits_and_is_off_by_default():
    plain = Transformer(7, [0], d_model=16, heads=4, d_mlp=32)
    assert not hasattr(plain, "q_gain") and len(list(plain.parameters())) == 11
    normed = Transformer(7, [0], d_model=16, heads=4, d_mlp=32, qk_norm=True)
    for a, b in zip(plain.parameters(), normed.parameters()):
        assert torch.equal(a, b)  # the same draws; the gains come last
    x = torch.randint(0, 7, (1, 30, 2))
    with torch.no_grad():
        for w in (plain.w_q, plain.w_k, normed.w_q, normed.w_k):
            w.mul_(100)
        assert plain.attention_logits(x).abs().max() > 100
        # unit-gain LayerNorm: |q|, |k| <= sqrt(d_head), so |q.k| / sqrt(d_head) <= sqrt(d_head) = 2
        assert normed.attention_logits(x).abs().max() <= 2 + 1e-4
        assert normed(x).isfinite().all()


def test_z_loss_is_the_weighted_mean_squared_log_normaliser():
    outputs = torch.log(torch.tensor([[[1.0, 1.0], [2.0, 2.0]]]))  # log Z = log 2, log 4
    expected = 1e-2 * (math.log(2) ** 2 + math.log(4) ** 2) / 2
    assert torch.allclose(ZLoss(1e-2)(outputs, None, slice(None)), torch.tensor([expected]))


def test_settings_are_checked():
    with pytest.raises(ValueError, match="parameterization"):
        TransferSetup(parameterization="ntk")
    with pytest.raises(ValueError, match="lrs"):
        TransferSetup(lrs=(0.1, -1.0))
    with pytest.raises(ValueError, match="fix"):
        InstabilitySetup(fix="layernorm")
    with pytest.raises(ValueError, match="d_model must be divisible"):
        InstabilitySetup(d_model=18).build()
    with pytest.raises(ValueError, match="lr"):
        CurvatureSetup(lr=0.0)


def test_the_transfer_grid_trains_and_labels_step_sizes():
    grid = TransferGrid.at_scale(widths=(32,), parameterizations=("mup",), steps=3, lrs=(0.5, 1.0), seeds=(0, 1))
    (setup,) = grid.setups().values()
    history = setup.compute()
    assert [m["lr"] for m in history.members] == [0.5, 0.5, 1.0, 1.0]
    assert history.final("train_loss").shape == (4,)
