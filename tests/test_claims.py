"""Chapters' claims, checked at a size that runs in seconds (grokking at p = 31, double descent at n = 60)."""
import numpy as np

from genlib.experiments.grokking import GrokSetup, LazyRichSetup
from genlib.running.sweep import run_experiment, sweep

TINY = dict(p=31, embed_dim=32, hidden=64, train_fraction=0.5, seeds=(0, 1))


def test_grokking_needs_weight_decay():
    history = run_experiment(GrokSetup.at_scale(**TINY, steps=1000, weight_decays=(0.0, 2.0)))
    with_wd, without = history.select(weight_decay=2.0), history.select(weight_decay=0.0)
    fit, grok = with_wd.first_step("train_acc", 0.99), with_wd.first_step("test_acc", 0.9)
    assert np.all(fit <= 100), f"train accuracy should pass 99% early; got steps {fit}"
    assert np.all(grok >= 5 * fit), f"test accuracy should pass 90% >= 5x later; fit {fit}, test {grok}"
    assert np.all(without.final("test_acc") <= 0.05), f"no weight decay: test {without.final('test_acc')}"


def test_perpendicular_gradient_generalizes_without_weight_decay():
    history = run_experiment(GrokSetup.at_scale(**TINY, steps=800, weight_decays=(0.0,), perpendicular_grad=True,
                                                eps=1e-25))
    assert np.all(history.final("test_acc") >= 0.95), f"⊥Grad test accuracy {history.final('test_acc')}"


def test_float32_softmax_collapses_and_float64_postpones_it():
    fp32, fp64 = sweep([GrokSetup.at_scale(**TINY, steps=1500, weight_decays=(0.0,), eps=1e-25, dtype=d)
                        for d in ("float32", "float64")])
    assert np.all(fp32["collapse"].max(0) >= 0.5), f"float32 collapse share {fp32['collapse'].max(0)}"
    assert np.all(fp32.final("test_acc") <= 0.05), "float32 without weight decay should not generalize"
    assert fp64["collapse"].max() <= 0.1 * fp32["collapse"].max(), "float64 should postpone the collapse"


def test_larger_output_scale_is_lazier_and_generalizes_worse():
    s = LazyRichSetup.at_scale(dim=10, n_train=40, n_test=200, width=32, steps=400, alphas=(0.3, 3.0, 30.0))
    history = run_experiment(s)
    moved = [np.median(history.select(output_scale=a).final("weight_change")) for a in s.alphas]
    test = [np.median(history.select(output_scale=a).final("test_loss")) for a in s.alphas]
    assert np.all(np.diff(moved) < 0), f"relative weight change should fall with alpha: {moved}"
    assert np.all(np.diff(test) > 0), f"final test loss should grow with alpha: {test}"


def test_random_features_peak_at_the_threshold_and_a_tuned_ridge_removes_it():
    from genlib.experiments.double_descent import MIN_NORM, TUNED, FeatureSweep

    s = FeatureSweep.at_scale(n_train=60, n_val=100, widths=(15, 30, 60, 120, 600), noises=(0.2,), gd_steps=(10,),
                              seeds=(0, 1))
    run = run_experiment(s)
    assert run.axis_name == "features" and list(run.axis) == list(s.widths)
    ridgeless, tuned = run.select(fit=MIN_NORM)["test_mse"], run.select(fit=TUNED)["test_mse"]
    at = list(s.widths).index(60)
    assert np.all(ridgeless.argmax(0) == at), "min-norm test error peaks at N = n"
    assert np.all(ridgeless[at] > 10 * ridgeless[-1])
    assert np.all(tuned[at] < ridgeless[at] / 10), "a tuned ridge removes the peak"


def test_benign_then_harmful_interpolation_in_linear_regression():
    from genlib.experiments.memorization import BenignRegression

    s = BenignRegression.at_scale(n_train=40, weak_dims=(35, 4000), seeds=(0, 1))  # 5 + 35 = n: square
    run = run_experiment(s)
    excess = run["excess_risk"] / s.noise_std**2
    assert run.axis_name == "weak directions" and run.axis.tolist() == [35, 4000]
    assert np.all(excess[0] > 3) and np.all(excess[1] < 0.3)


def test_elr_prevents_memorizing_wrong_labels():
    from genlib.experiments.memorization import NoiseSetup

    run = run_experiment(NoiseSetup.at_scale(n_train=400, hidden=(128, 128), epochs=25, seeds=(0,), noise=0.4))
    memorized = {reg: float(run.select(regularizer=reg).final("corrupted_acc")[0]) for reg in ("none", "ELR")}
    assert memorized["none"] > 0.9 and memorized["ELR"] < 0.5, memorized


def test_lms_network_relies_on_the_linear_coordinate_alone():
    from genlib.experiments.simplicity import LmsSetup

    run = run_experiment(LmsSetup(n_train=4000, n_test=1000, epochs=10, seeds=(0,)))
    assert run.final("test_acc")[0] > 0.97
    assert run.final("linear_randomized_acc")[0] < 0.65 and run.final("slabs_randomized_acc")[0] > 0.9
