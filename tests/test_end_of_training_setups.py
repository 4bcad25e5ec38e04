"""The end-of-training chapter's setups (genlib/experiments/end_of_training.py), at tiny sizes."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from genlib.experiments.end_of_training import (
    DIET_SEED_OFFSET,
    STUDENT_SEED_OFFSET,
    DietSetup,
    DistillationSetup,
    MagnitudePruningSetup,
    NeuralCollapseSetup,
    RandomPruningSetup,
    ScoreSetup,
    SmoothingSetup,
    TicketControlSetup,
)
from genlib.measures.pruning import weight_sparsity
from genlib.running.sweep import run_experiment

TINY = dict(n_train=60, steps=6, eval_every=3, seeds=(0, 1))


def test_collapse_setup_records_every_measure_and_every_layer():
    history = run_experiment(NeuralCollapseSetup.at_scale(hidden=(8, 8), eval_log_points=0, **TINY))
    for name in ("nc/nc1", "nc/equinorm", "nc/equiangularity", "nc/self_duality", "nc/ncc_mismatch",
                 "depth/layer1", "depth/layer2"):
        assert history[name].shape == (3, 4), name
    assert history.labels("weight_decay") == [5e-3, 5e-3, 5e-4, 5e-4]


def test_diet_keeps_the_highest_scores_the_lowest_or_skips_the_top():
    setup = DietSetup.at_scale(fraction=0.3, skip=0.2)
    scores = np.arange(10.0)  # example i has score i: the hardest is the last
    assert setup.subset(scores, "hardest", 0).tolist() == [9, 8, 7]
    assert setup.subset(scores, "easiest", 0).tolist() == [2, 1, 0]
    assert setup.subset(scores, "skip hardest", 0).tolist() == [7, 6, 5]
    random = [sorted(setup.subset(scores, "random", s).tolist()) for s in (0, 1)]
    assert len(set(random[0])) == 3 and random[0] != random[1]
    with pytest.raises(ValueError, match="strategies"):
        setup.subset(scores, "middle", 0)


def test_diet_trains_each_member_on_its_own_subset_of_the_scored_set():
    setup = DietSetup.at_scale(fraction=0.5, strategies=("hardest", "random"), score_steps=2, score_seeds=(0, 1),
                               hidden=(8,), **TINY)
    data, model, _ = setup.build(scores=run_experiment(setup.scoring()))
    scored = ScoreSetup.at_scale(score_steps=2, hidden=(8,), n_train=60, seeds=(0, 1)).data(1).train_idx[0]
    assert data.train_idx.shape == (4, 30) and model.members == 4
    assert all(set(row.tolist()) <= set(scored.tolist()) for row in data.train_idx)
    assert torch.equal(data.train_idx[0], data.train_idx[1])  # "hardest" is one subset, whatever the seed
    assert model.seeds == [s + DIET_SEED_OFFSET for s in (0, 1, 0, 1)]


def test_scores_mark_the_mislabelled_examples():
    history = run_experiment(ScoreSetup.at_scale(noise=0.2, score_steps=2, hidden=(8,), n_train=60, seeds=(0, 1)))
    assert history.arrays["el2n"].shape == history.arrays["grand"].shape == (2, 60)
    assert history.arrays["mislabelled"].sum(1).tolist() == [12, 12]


def test_students_fit_their_own_teachers_predictions_at_their_temperature():
    setup = DistillationSetup.at_scale(hidden=(8,), temperatures=(1.0, 4.0), **TINY)
    data, model, config = setup.build(teachers=run_experiment(setup.teachers()))
    members = setup.members()
    assert data.soft_targets.shape == (len(members), data.y.shape[1], 10)
    assert torch.allclose(data.soft_targets.sum(-1), torch.ones(len(members), data.y.shape[1]))
    assert model.seeds == [m["seed"] + STUDENT_SEED_OFFSET for m in members]
    scales = {m["temperature"]: model.output_scales[i] for i, m in enumerate(members)}
    assert scales == {1.0: 1.0, 4.0: 0.25}
    decay = {m["temperature"]: (config.lr[i], config.weight_decay[i]) for i, m in enumerate(members)}
    assert decay[4.0][0] == 16 * decay[1.0][0] and decay[4.0][1] == decay[1.0][1] / 16  # lr x wd: the same decay
    hot = [i for i, m in enumerate(members) if m["temperature"] == 4.0]
    cold = [i for i, m in enumerate(members) if m["temperature"] == 1.0]
    assert data.soft_targets[hot].max() < data.soft_targets[cold].max()  # a hotter teacher is softer


def test_random_pruning_sets_each_members_sparsity():
    setup = RandomPruningSetup.at_scale(width=16, sparsities=(0.0, 0.75), prune_readout=True, **TINY)
    _, model, _ = setup.build()
    assert weight_sparsity(model).tolist() == pytest.approx([0.0, 0.0, 0.75, 0.75], abs=0.01)


def test_pruning_keeps_the_readout_dense_by_default_and_records_what_the_masks_cut_off():
    setup = RandomPruningSetup.at_scale(width=16, sparsities=(0.0, 0.9), **TINY)
    _, model, _ = setup.build()
    masks = list(model.weight_masks)
    assert torch.all(masks[-1] == 1)
    hidden = 64 * 16 + 16 * 16
    assert weight_sparsity(model).tolist() == pytest.approx([0.0, 0.0] + [0.9 * hidden / (hidden + 160)] * 2, abs=0.01)
    history = run_experiment(setup)
    assert history.arrays["dead_units"].shape == history.arrays["dead_classes"].shape == (4,)
    assert history.arrays["dead_units"][:2].tolist() == [0, 0] and history.arrays["dead_classes"].tolist() == [0] * 4


def test_summed_squared_error_is_the_mean_with_k_times_the_step_and_a_kth_of_the_decay():
    summed = NeuralCollapseSetup.at_scale(loss="mse", hidden=(8,), **TINY)
    _, _, config = summed.build()
    assert config.lr == pytest.approx(10 * summed.lr)
    assert config.weight_decay == pytest.approx([wd / 10 for wd in summed.member_values("weight_decay")])
    for setup in (replace(summed, mse_sum=False), replace(summed, loss="cross_entropy")):
        _, _, config = setup.build()
        assert config.lr == setup.lr and config.weight_decay == setup.member_values("weight_decay")
    assert run_experiment(summed).labels("weight_decay") == [5e-3, 5e-3, 5e-4, 5e-4]


def test_ticket_controls_take_the_tickets_mask_or_its_rewound_weights():
    setup = TicketControlSetup.at_scale(width=16, rounds=2, rewind_step=2, control_rounds=(2,), **TINY)
    tickets = run_experiment(setup.tickets())
    assert setup.requires() == {"tickets": MagnitudePruningSetup.at_scale(width=16, rounds=2, rewind_step=2, **TINY)}
    data, model, config = setup.build(tickets=tickets)
    members = setup.members()
    assert [(m["control"], m["seed"]) for m in members] == [("reinitialized", 0), ("reinitialized", 1),
                                                             ("random mask", 0), ("random mask", 1)]
    assert config.steps == 4 and model.seeds == [2000, 2001, 0, 1]
    masks = list(model.weight_masks)
    for i in range(3):
        found = tickets.arrays[f"masks/layer{i}"]  # (seeds, rounds, fan_in, out)
        assert np.array_equal(masks[i][0].numpy(), found[0, 1]) and np.array_equal(masks[i][1].numpy(), found[1, 1])
        assert not np.array_equal(masks[i][2].numpy(), found[0, 1]) or i == 2  # a random mask (the readout is dense)
        rewound = tickets.arrays[f"rewind/weights.{i}"]  # (seeds, fan_in, out)
        assert np.allclose(model.weights[i][2].detach().numpy(), rewound[0] * masks[i][2].numpy())
    assert weight_sparsity(model).tolist() == pytest.approx([weight_sparsity(model)[0].item()] * 4)
    history = run_experiment(setup)
    assert history.arrays["dead_classes"].tolist() == [0] * 4
    with pytest.raises(ValueError, match="control_rounds"):
        TicketControlSetup.at_scale(control_rounds=(7,))
    with pytest.raises(ValueError, match="controls"):
        TicketControlSetup.at_scale(controls=("shuffled",))


def test_magnitude_pruning_records_one_row_per_round_along_the_sparsity_axis():
    history = run_experiment(MagnitudePruningSetup.at_scale(width=16, rounds=2, rewind_step=2, **TINY))
    assert history.axis_name == "sparsity" and history.axis.tolist() == [0.0, 0.5, 0.75]
    assert history["test_acc"].shape == (3, 2)


def test_recipes_are_abstract_and_each_setup_is_trained_or_computed():
    from genlib.experiments import end_of_training as chapter
    from genlib.running.experiment import ComputedExperiment, TrainedExperiment

    for recipe in (chapter.DigitsRecipe, chapter.SmoothingRecipe, chapter.ScoreRecipe, chapter.PruningRecipe):
        with pytest.raises(TypeError):
            recipe()
    trained = (NeuralCollapseSetup, SmoothingSetup, DistillationSetup, ScoreSetup, DietSetup, RandomPruningSetup,
               TicketControlSetup)
    assert all(issubclass(c, TrainedExperiment) for c in trained)
    assert issubclass(MagnitudePruningSetup, ComputedExperiment)
    assert not issubclass(MagnitudePruningSetup, TrainedExperiment)
    # no setup inherits a hook it must not run: a diet is not scored, a student records no collapse measures
    assert DietSetup.after_training is TrainedExperiment.after_training
    assert DistillationSetup.extra_metrics is TrainedExperiment.extra_metrics


def test_requirements_are_the_teachers_and_the_scores_with_the_shared_fields():
    students = DistillationSetup.at_scale(hidden=(8,), n_train=60, steps=6, seeds=(0, 1))
    assert students.requires() == {"teachers": SmoothingSetup.at_scale(hidden=(8,), n_train=60, steps=6, seeds=(0, 1))}
    diet = DietSetup.at_scale(noise=0.2, score_steps=3, seeds=(0, 1), score_seeds=(4, 5))
    assert diet.requires() == {"scores": ScoreSetup.at_scale(noise=0.2, score_steps=3, seeds=(4, 5))}
    assert DietSetup.at_scale(scale="full").scoring() == ScoreSetup.at_scale(scale="full")


@pytest.mark.parametrize("make, match", [
    (lambda: DietSetup.at_scale(strategies=("hardest", "middle")), "strategies"),
    (lambda: DietSetup.at_scale(score="forgetting"), "score"),
    (lambda: DietSetup.at_scale(fraction=0.0), "fraction"),
    (lambda: DietSetup.at_scale(skip=-0.1), "skip"),
    (lambda: ScoreSetup.at_scale(noise=1.0), "noise"),
    (lambda: NeuralCollapseSetup.at_scale(loss="hinge"), "loss"),
    (lambda: SmoothingSetup.at_scale(smoothings=(0.0, 1.0)), "smoothings"),
    (lambda: DistillationSetup.at_scale(teacher_smoothings=(0.0, 0.2)), "teacher_smoothings"),
    (lambda: DistillationSetup.at_scale(teacher_weight_decay=1e-2), "teacher_weight_decay"),
    (lambda: DistillationSetup.at_scale(temperatures=(0.0,)), "temperatures"),
    (lambda: RandomPruningSetup.at_scale(sparsities=(0.5, 1.0)), "sparsities"),
    (lambda: MagnitudePruningSetup.at_scale(rewind_step=500), "rewind_step"),
    (lambda: MagnitudePruningSetup.at_scale(rounds=-1), "rounds"),
])
def test_bad_settings_are_refused_when_made(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_students_keep_their_logits_and_nc1_but_record_no_collapse_measures():
    setup = DistillationSetup.at_scale(hidden=(8,), temperatures=(2.0,), **TINY)
    history = run_experiment(setup)
    assert history.labels("temperature") == [2.0] * 4 and history.labels("teacher_smoothing") == [0.0, 0.0, 0.1, 0.1]
    assert history.arrays["logits"].shape == (4, 1797, 10) and history.arrays["nc1_test"].shape == (4,)
    assert not any(name.startswith("nc/") for name in history.metrics)


def test_a_diet_records_its_training_and_no_scores_of_its_own():
    setup = DietSetup.at_scale(fraction=0.5, score_steps=2, score_seeds=(0,), hidden=(8,), **TINY)
    history = run_experiment(setup)
    assert history.arrays == {} and history["test_acc"].shape == (3, 4)


def test_test_outputs_are_each_members_logits_on_its_own_test_images():
    setup = SmoothingSetup.at_scale(hidden=(8,), smoothings=(0.0,), weight_decays=(5e-4,), **TINY)
    history = run_experiment(setup)
    logits, labels = setup.test_outputs(history.select(seed=1))
    from genlib.core.data import digits

    data = digits(60, [1])
    assert logits.shape == (1, 1797 - 60, 10) and torch.equal(labels[0], data.y[0, data.test_idx[0]])
    assert torch.equal(logits[0], torch.tensor(history.select(seed=1).arrays["logits"][0])[data.test_idx[0]])
