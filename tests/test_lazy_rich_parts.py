"""The lazy-and-rich chapter's setups (genlib/experiments/lazy_rich.py) and their helpers."""
import math

import numpy as np
import pytest
import torch

from genlib.core.models import MLP
from genlib.experiments.grokking import GrokSetup
from genlib.experiments.lazy_rich import (
    CircuitSetup,
    FeatureSetup,
    KernelRegimeSetup,
    MLPCircuitSetup,
    WidthGrid,
    digit_parity,
    feature_alignment,
    kernel_gradient_descent,
    ntk_top_eigenvalue,
    single_index,
    strongest_frequencies,
    teacher_direction,
)
from genlib.measures.circuits import logit_spectrum
from genlib.measures.ntk import empirical_ntk, kernel_regression
from genlib.running.sweep import run_experiment

F64 = torch.float64
TINY = dict(n_train=40, kernel_test=20, kernel_probe=8, width=16, alphas=(0.1, 100.0), steps=30, eval_every=10,
            eval_log_points=0, seeds=(0, 1))


def test_digit_parity_is_plus_one_for_even_digits_and_each_seed_splits_on_its_own():
    data = digit_parity(100, seeds=[0, 1])
    assert data.x.shape == (1797, 64) and data.y.shape == (2, 1797) and data.num_classes is None
    assert set(data.y.unique().tolist()) == {-1.0, 1.0}
    assert abs(float((data.y[0] > 0).float().mean()) - 0.5) < 0.02  # about as many even as odd digits
    assert data.train_idx.shape == (2, 100) and data.test_idx.shape == (2, 1697)
    for s in range(2):
        assert not set(data.train_idx[s].tolist()) & set(data.test_idx[s].tolist())
    assert not torch.equal(data.train_idx[0], data.train_idx[1])


def test_single_index_target_is_the_second_hermite_polynomial_of_the_teachers_projection():
    data = single_index(dim=6, n_train=50, n_test=30, seeds=[3, 4])
    for s, seed in enumerate([3, 4]):
        beta = teacher_direction(6, seed)
        assert math.isclose(float(beta.norm()), 1.0, rel_tol=1e-6)
        torch.testing.assert_close(data.y[s], (data.x @ beta) ** 2 - 1)
    assert data.train_idx.shape == (2, 50) and data.test_idx.shape == (2, 30)


def test_feature_alignment_is_one_along_beta_and_about_one_over_dim_for_random_weights():
    beta = torch.zeros(1, 10)
    beta[0, 3] = 1.0
    along = torch.zeros(1, 10, 5)
    along[0, 3] = torch.randn(5)
    assert torch.allclose(feature_alignment(along, beta), torch.ones(1))
    random = torch.randn(1, 10, 20000, generator=torch.Generator().manual_seed(0))
    assert abs(float(feature_alignment(random, beta)) - 0.1) < 0.01


def test_ntk_top_eigenvalue_matches_the_dense_kernels():
    x = torch.randn(2, 30, 5, generator=torch.Generator().manual_seed(0))
    model = MLP(5, (12,), 1, [0, 1], centered=True, output_scale=[0.5, 20.0])
    with torch.no_grad():  # away from the initialization
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    exact = torch.linalg.eigvalsh(empirical_ntk(model, x).double())[:, -1]
    got = ntk_top_eigenvalue(model, x, iterations=60)
    assert torch.allclose(got.double(), exact, rtol=1e-4), f"power iteration {got.tolist()}, eigvalsh {exact.tolist()}"


def test_kernel_gradient_descent_is_gradient_descent_on_the_linear_model_and_tends_to_kernel_regression():
    g = torch.Generator().manual_seed(2)
    features = torch.randn(2, 12, 5, generator=g, dtype=F64)  # 8 training points, 4 test points
    k = features @ features.transpose(1, 2)
    y = torch.randn(2, 8, generator=g, dtype=F64)
    lr = torch.tensor([0.3, 0.1], dtype=F64) * 8 / torch.linalg.eigvalsh(k[:, :8, :8])[:, -1]
    w = torch.zeros(2, 5, dtype=F64)  # f = features @ w, its kernel K; GD on mean (f - y)^2 from zero
    for _ in range(25):
        residual = torch.einsum("snd,sd->sn", features[:, :8], w) - y
        w = w - lr[:, None] * 2 / 8 * torch.einsum("snd,sn->sd", features[:, :8], residual)
    expected = torch.einsum("snd,sd->sn", features[:, 8:], w)
    got = kernel_gradient_descent(k[:, :8, :8], k[:, 8:, :8], y, lr, 25)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)
    limit = kernel_regression(k[:, :8, :8], k[:, 8:, :8], y)
    far = kernel_gradient_descent(k[:, :8, :8], k[:, 8:, :8], y, lr, 10**7)
    torch.testing.assert_close(far, limit, rtol=1e-5, atol=1e-6)


def test_each_members_step_is_the_fraction_of_its_own_largest_stable_step():
    setup = KernelRegimeSetup(**TINY)
    data, model, config = setup.build()
    top = torch.linalg.eigvalsh(empirical_ntk(model, data.inputs(data.train_idx)).double())[:, -1]
    expected = setup.lr_fraction * setup.n_train / top
    assert np.allclose(config.lr, expected.numpy(), rtol=1e-3)
    lr, alphas = np.array(config.lr), np.array(setup.member_values("output_scale"))
    # the NTK of alpha (g - g0) is alpha^2 that of g: lr alpha^2 is the same for a seed at every alpha
    seeds = np.array(setup.member_values("seed"))
    for seed in setup.seeds:
        scaled = lr[seeds == seed] * alphas[seeds == seed] ** 2
        assert np.allclose(scaled, scaled[0], rtol=1e-3), scaled


def test_a_tiny_kernel_run_records_its_measures_per_member_and_large_alpha_is_lazier():
    history = run_experiment(KernelRegimeSetup(**TINY))
    assert [(m["output_scale"], m["seed"]) for m in history.members] == [(0.1, 0), (0.1, 1), (100.0, 0), (100.0, 1)]
    assert {"weight_change", "probe_kernel_change", "train_acc", "test_acc"} <= set(history.metrics)
    for name in ("kernel_change", "linear_distance", "limit_distance", "alignment_start", "alignment_end", "lr"):
        assert history.arrays[name].shape == (4,), name
    rich, lazy = slice(0, 2), slice(2, 4)
    assert np.all(history.final("weight_change")[lazy] < history.final("weight_change")[rich] / 100)
    assert np.all(history.arrays["kernel_change"][lazy] < history.arrays["kernel_change"][rich] / 10)
    assert np.all(history.arrays["linear_distance"][lazy] < 0.05), history.arrays["linear_distance"]
    assert np.allclose(history.arrays["alignment_start"][rich], history.arrays["alignment_start"][lazy], rtol=1e-4)
    # kernel regression with the final NTK: at large alpha the kernel barely moves, so it is the one with K0
    arrays = history.arrays
    for name in ("final_kernel_distance", "final_kernel_agreement", "final_kernel_test_loss", "final_kernel_test_acc"):
        assert arrays[name].shape == (4,) and np.all(np.isfinite(arrays[name])), name
    assert np.allclose(arrays["final_kernel_test_loss"][lazy], arrays["limit_test_loss"][lazy], rtol=0.05)
    assert np.allclose(arrays["final_kernel_distance"][lazy], arrays["limit_distance"][lazy], rtol=0.05)
    assert not np.allclose(arrays["final_kernel_test_loss"][rich], arrays["limit_test_loss"][rich], rtol=0.05)


def test_width_grid_gives_one_plain_setup_per_width():
    grid = WidthGrid(base=KernelRegimeSetup(**TINY), widths=(8, 32))
    setups = grid.setups()
    assert list(setups) == [8, 32] and all(type(s) is KernelRegimeSetup for s in setups.values())
    assert [s.width for s in setups.values()] == [8, 32] and setups[8].alphas == TINY["alphas"]


def test_feature_setup_starts_at_random_alignment_and_records_it():
    setup = FeatureSetup(**(TINY | dict(n_train=60, width=64)), dim=8, n_test=40)
    data, model, _ = setup.build()
    metrics = setup.extra_metrics(data, model)
    assert "test_acc" not in metrics and "feature_alignment" in metrics
    start = metrics["feature_alignment"](model)
    assert start.shape == (4,) and torch.all((start > 0.02) & (start < 0.5)), start


def test_strongest_frequencies_take_the_fewest_that_reach_the_share():
    spectrum = torch.tensor([[0.0, 6.0, 1.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    chosen = strongest_frequencies(spectrum, 0.85)
    assert chosen[0] == [2, 4] and sorted(chosen[1]) == [1, 2, 3, 4]  # equal powers: all four are needed
    assert strongest_frequencies(spectrum, 0.6)[0] == [2]
    with pytest.raises(ValueError, match="share"):
        strongest_frequencies(spectrum, 0.0)


def test_mlp_circuit_setup_is_the_grokking_chapters_mlp():
    mlp, grok = MLPCircuitSetup(), GrokSetup()
    for name in ("p", "train_fraction", "embed_dim", "hidden", "lr", "steps", "weight_decays", "seeds"):
        assert getattr(mlp, name) == getattr(grok, name), name
    assert mlp.model == "mlp" and CircuitSetup().model == "transformer"


@pytest.mark.parametrize("model", ["transformer", "mlp"])
def test_a_tiny_circuit_run_records_progress_measures_at_every_evaluation(model):
    setup = CircuitSetup(p=7, model=model, embed_dim=8, hidden=16, steps=20, eval_every=10, eval_log_points=0,
                         seeds=(0, 1), symmetricity_samples=20)
    history = run_experiment(setup)
    steps = len(history.steps)
    assert list(history.steps) == [0, 10, 20]
    for name in ("restricted_loss", "excluded_loss"):
        assert history[name].shape == (steps, 2) and np.all(np.isfinite(history[name])), name
    assert not any(name.startswith("spectrum/") for name in history.metrics)  # moved to arrays
    assert history.arrays["embedding_spectrum"].shape == (2, steps, 3)
    keys = history.arrays["key_frequencies"]
    assert keys.shape == (2, 3) and np.all((keys >= 0) & (keys <= 3)) and np.all(keys[:, 0] >= 1)
    # at step 0 the excluded loss is the training loss minus the key frequencies: near chance
    assert np.all(np.abs(history["excluded_loss"][0] - math.log(7)) < 0.5)
    for name in ("gradient_symmetricity", "distance_irrelevance"):
        assert history.arrays[name].shape == (2,) and np.all(np.isfinite(history.arrays[name])), name


def test_key_frequencies_of_a_pure_wave_logit_table_are_its_frequency():
    p = 11
    a, b, c = torch.meshgrid(torch.arange(p), torch.arange(p), torch.arange(p), indexing="ij")
    logits = (3 * torch.cos(2 * math.pi * 4 / p * (a + b - c).double()))[None]
    assert strongest_frequencies(logit_spectrum(logits), 0.98) == [[4]]
