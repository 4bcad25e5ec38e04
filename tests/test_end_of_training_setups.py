"""The end-of-training chapter's setups (genlib/experiments/end_of_training.py), at tiny sizes."""
import numpy as np
import pytest
import torch

from genlib.experiments.end_of_training import (
    STUDENT_SEED_OFFSET,
    CollapseSetup,
    DietSetup,
    DistillationSetup,
    MagnitudePruningSetup,
    RandomPruningSetup,
    ScoreSetup,
)
from genlib.pruning import weight_sparsity

TINY = dict(n_train=60, steps=6, eval_every=3, seeds=(0, 1))


def test_collapse_setup_records_every_measure_and_every_layer():
    history = CollapseSetup.at_scale(hidden=(8, 8), early_readings=0, **TINY).run()
    for name in ("nc/nc1", "nc/equinorm", "nc/equiangularity", "nc/self_duality", "nc/ncc_mismatch",
                 "depth/layer1", "depth/layer2"):
        assert history[name].shape == (3, 4), name
    assert history.labels("weight_decay") == [5e-3, 5e-3, 5e-4, 5e-4]


def test_diet_keeps_the_highest_scores_the_lowest_or_skips_the_top():
    setup = DietSetup.at_scale(fraction=0.3, skip=0.2)
    scores = np.arange(10.0)  # example i has score i: the hardest is the last
    assert setup.kept(scores, "hardest", 0).tolist() == [9, 8, 7]
    assert setup.kept(scores, "easiest", 0).tolist() == [2, 1, 0]
    assert setup.kept(scores, "skip hardest", 0).tolist() == [7, 6, 5]
    random = [sorted(setup.kept(scores, "random", s).tolist()) for s in (0, 1)]
    assert len(set(random[0])) == 3 and random[0] != random[1]
    with pytest.raises(ValueError, match="strategies"):
        setup.kept(scores, "middle", 0)


def test_diet_trains_each_member_on_its_own_subset_of_the_scored_set():
    setup = DietSetup.at_scale(fraction=0.5, strategies=("hardest", "random"), score_steps=2, score_seeds=(0, 1),
                               hidden=(8,), **TINY)
    data, model, _ = setup.build()
    scored = ScoreSetup.at_scale(score_steps=2, hidden=(8,), n_train=60, seeds=(0, 1)).data(1).train_idx[0]
    assert data.train_idx.shape == (4, 30) and model.members == 4
    assert all(set(row.tolist()) <= set(scored.tolist()) for row in data.train_idx)
    assert torch.equal(data.train_idx[0], data.train_idx[1])  # "hardest" is one subset, whatever the seed
    assert model.seeds == [s + STUDENT_SEED_OFFSET for s in (0, 1, 0, 1)]


def test_scores_mark_the_mislabelled_examples():
    history = ScoreSetup.at_scale(noise=0.2, score_steps=2, hidden=(8,), n_train=60, seeds=(0, 1)).run()
    assert history.arrays["el2n"].shape == history.arrays["grand"].shape == (2, 60)
    assert history.arrays["mislabelled"].sum(1).tolist() == [12, 12]


def test_students_fit_their_own_teachers_predictions_at_their_temperature():
    setup = DistillationSetup.at_scale(hidden=(8,), temperatures=(1.0, 4.0), **TINY)
    data, model, config = setup.build()
    members = setup.members()
    assert data.soft_targets.shape == (len(members), data.y.shape[1], 10)
    assert torch.allclose(data.soft_targets.sum(-1), torch.ones(len(members), data.y.shape[1]))
    scales = {m["temperature"]: model.output_scales[i] for i, m in enumerate(members)}
    assert scales == {1.0: 1.0, 4.0: 0.25}
    decay = {m["temperature"]: (config.lr[i], config.weight_decay[i]) for i, m in enumerate(members)}
    assert decay[4.0][0] == 16 * decay[1.0][0] and decay[4.0][1] == decay[1.0][1] / 16  # lr x wd: the same decay
    hot = [i for i, m in enumerate(members) if m["temperature"] == 4.0]
    cold = [i for i, m in enumerate(members) if m["temperature"] == 1.0]
    assert data.soft_targets[hot].max() < data.soft_targets[cold].max()  # a hotter teacher is softer


def test_random_pruning_sets_each_members_sparsity():
    setup = RandomPruningSetup.at_scale(width=16, sparsities=(0.0, 0.75), **TINY)
    _, model, _ = setup.build()
    assert weight_sparsity(model).tolist() == pytest.approx([0.0, 0.0, 0.75, 0.75], abs=0.01)


def test_magnitude_pruning_records_one_row_per_round_along_the_sparsity_axis():
    history = MagnitudePruningSetup.at_scale(width=16, rounds=2, rewind_step=2, **TINY).run()
    assert history.axis_name == "sparsity" and history.axis.tolist() == [0.0, 0.5, 0.75]
    assert history["test_acc"].shape == (3, 2)
