"""Weight masks on the MLP and the pruning helpers: sparsity, magnitude order, nesting, training."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from genlib.core.data import TaskData
from genlib.core.models import MLP, EmbeddingMLP
from genlib.core.train import TrainConfig, ensemble_backward, train
from genlib.measures.pruning import (
    disconnected,
    iterative_magnitude_pruning,
    magnitude_masks,
    random_masks,
    rewind,
    snapshot,
    weight_sparsity,
)


def tiny(members=3, n=24, **kw):
    """An MLP 5 -> 12 -> 9 -> 3 and n random examples with random labels."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, generator=g)
    y = torch.randint(0, 3, (members, n), generator=g)
    idx = torch.arange(n).expand(members, n).clone()
    data = TaskData(x=x, y=y, train_idx=idx, test_idx=idx[:, :4], num_classes=3)
    return MLP(5, (12, 9), 3, list(range(members)), **kw), data


def pruned_counts(masks):
    return [(m == 0).flatten(1).sum(1).tolist() for m in masks]  # per layer, per member


def test_random_masks_prune_exactly_the_share_of_every_layer():
    model, _ = tiny()
    shares = [0.0, 0.3, 0.9]
    masks = random_masks(model, shares)
    sizes = [w[0].numel() for w in model.weights]  # 60, 108, 27
    assert pruned_counts(masks) == [[round(s * n) for s in shares] for n in sizes]
    assert all(m.shape == w.shape and set(m.unique().tolist()) <= {0.0, 1.0} for m, w in zip(masks, model.weights))


def test_random_masks_are_reproducible_and_differ_by_member_and_seed():
    model, _ = tiny()
    a, b, other = random_masks(model, 0.5), random_masks(model, 0.5), random_masks(model, 0.5, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a, b)), "the same seed gives the same masks"
    assert not torch.equal(a[0][0], a[0][1]), "members draw their own masks"
    assert not torch.equal(a[0][0], other[0][0]), "another seed, other masks"
    alone = random_masks(MLP(5, (12, 9), 3, [1]), 0.5)
    assert all(torch.equal(m[1], m_alone[0]) for m, m_alone in zip(a, alone)), "a member's mask ignores the others"


def test_magnitude_masks_keep_exactly_the_largest_weights_of_each_layer():
    model, _ = tiny()
    shares = [0.2, 0.5, 0.75]
    masks = magnitude_masks(model, shares)
    for w, m in zip(model.weights, masks):
        for s, share in enumerate(shares):
            magnitudes = w[s].detach().abs().flatten()
            kept = len(magnitudes) - round(share * len(magnitudes))
            largest = set(torch.sort(magnitudes, descending=True).indices[:kept].tolist())
            assert set(m[s].flatten().nonzero().flatten().tolist()) == largest, f"member {s}, {tuple(w.shape)}"


def test_magnitude_masks_nest_inside_the_current_mask():
    model, _ = tiny()
    current = random_masks(model, 0.5)
    model.set_weight_masks(current)
    with torch.no_grad():  # make the pruned weights the largest: they must stay pruned all the same
        for w, m in zip(model.weights, current):
            w.add_(10.0 * (1 - m))
    new = magnitude_masks(model, 0.75, current=current)
    for w, m, old in zip(model.weights, new, current):
        assert (m <= old).all(), "a weight pruned before stays pruned"
        n = w[0].numel()
        assert (m == 0).flatten(1).sum(1).tolist() == [round(0.75 * n)] * 3
        for s in range(3):  # kept: the largest of the weights alive in current
            alive = old[s].flatten().nonzero().flatten()
            magnitudes = w[s].detach().abs().flatten()[alive]
            largest = alive[torch.sort(magnitudes, descending=True).indices[: n - round(0.75 * n)]]
            assert set(m[s].flatten().nonzero().flatten().tolist()) == set(largest.tolist())
    with pytest.raises(ValueError, match="sparsity must be at least current's"):
        magnitude_masks(model, 0.25, current=current)


def test_setting_masks_zeroes_the_pruned_weights_and_the_sparsity_is_recorded():
    model, _ = tiny()
    assert weight_sparsity(model).tolist() == [0.0, 0.0, 0.0]
    masks = random_masks(model, [0.1, 0.5, 0.8])
    model.set_weight_masks(masks)
    for w, m in zip(model.weights, masks):
        assert (w[m == 0] == 0).all() and (w[m == 1] != 0).all()
    total = sum(w[0].numel() for w in model.weights)
    expected = [sum(round(s * w[0].numel()) for w in model.weights) / total for s in (0.1, 0.5, 0.8)]
    np.testing.assert_allclose(weight_sparsity(model).numpy(), expected, rtol=1e-6)
    model.set_weight_masks(None)
    assert len(model.weight_masks) == 0 and weight_sparsity(model).tolist() == [0.0, 0.0, 0.0]


def test_masks_are_buffers_that_follow_the_model():
    model, _ = tiny()
    model.set_weight_masks(random_masks(model, 0.5, seed=3))
    names = [name for name, _ in model.named_buffers()]
    assert {"weight_masks.0", "weight_masks.1", "weight_masks.2"} <= set(names)
    model.double()
    assert all(m.dtype == torch.float64 for m in model.weight_masks)
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    w, b = model.readout_layer()
    torch.testing.assert_close(model.features(x) @ w + b, model.raw_output(x))


@pytest.mark.parametrize("settings", [
    dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-3),
    dict(optimizer="adamw", lr=1e-2, weight_decay=0.5),
    dict(optimizer="adamw", lr=1e-2, sam_radius=0.05, perpendicular_grad=True),
])
def test_pruned_weights_stay_zero_and_get_no_gradient_through_training(settings):
    model, data = tiny()
    masks = random_masks(model, [0.3, 0.6, 0.9])
    model.set_weight_masks(masks)
    before = [w.detach().clone() for w in model.weights]
    train(model, data, TrainConfig(steps=20, device="cpu", eval_log_points=0, **settings))
    for w, w0, m in zip(model.weights, before, masks):
        assert (w[m == 0] == 0).all(), "a pruned weight moved in training"
        assert (w[m == 1] != w0[m == 1]).float().mean() > 0.9, "the kept weights train"
    x, y = data.batch(data.train_idx)
    ensemble_backward(model, x, y, "cross_entropy", block=3)
    assert all((w.grad[m == 0] == 0).all() for w, m in zip(model.weights, masks)), "pruned weights get gradient"


def test_a_masked_model_trains_the_same_in_member_blocks_and_in_one_pass():
    results = []
    for block in (1, 3):
        model, data = tiny()
        model.set_weight_masks(random_masks(model, [0.2, 0.5, 0.8]))
        h = train(model, data, TrainConfig(steps=15, lr=1e-2, device="cpu", member_block=block, dtype="float64"))
        results.append((h["train_loss"], [w.detach().clone() for w in model.weights]))
    (loss_blocks, w_blocks), (loss_one, w_one) = results
    np.testing.assert_allclose(loss_blocks, loss_one, rtol=1e-10)
    for a, b in zip(w_blocks, w_one):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_rewind_restores_the_snapshot_and_keeps_the_masks():
    model, data = tiny()
    early = snapshot(model)
    train(model, data, TrainConfig(steps=5, lr=1e-2, device="cpu"))
    masks = magnitude_masks(model, 0.5)
    model.set_weight_masks(masks)
    rewind(model, early)
    for name, p in model.named_parameters():
        if name.startswith("biases"):
            assert torch.equal(p, early[name]), f"{name} is rewound"
    for w, name, m in zip(model.weights, ["weights.0", "weights.1", "weights.2"], masks):
        torch.testing.assert_close(w.detach(), early[name] * m, rtol=0, atol=0)
    early["weights.0"] = early["weights.0"][:, :2]
    with pytest.raises(ValueError, match="state"):
        rewind(model, early)


@pytest.mark.parametrize("sparsity", [1.0, -0.1, math.nan, [0.5, 0.5], "half"])
def test_bad_sparsity_is_refused(sparsity):
    model, _ = tiny()
    for make in (random_masks, magnitude_masks):
        with pytest.raises(ValueError, match="sparsity"):
            make(model, sparsity)


def test_bad_masks_and_models_are_refused():
    model, _ = tiny()
    masks = random_masks(model, 0.5)
    with pytest.raises(ValueError, match="masks"):
        model.set_weight_masks(masks[:2])
    with pytest.raises(ValueError, match="masks"):
        model.set_weight_masks([m * 0.5 for m in masks])
    with pytest.raises(ValueError, match="current"):
        magnitude_masks(model, 0.5, current=[m[:, :1] for m in masks])
    with pytest.raises(ValueError, match="model"):
        random_masks(EmbeddingMLP(5, [0]), 0.5)
    with pytest.raises(ValueError, match="seed"):
        random_masks(model, 0.5, seed=-1)


def test_iterative_magnitude_pruning_is_the_written_out_procedure_bit_for_bit():
    config = TrainConfig(steps=12, lr=0.1, optimizer="sgd", momentum=0.9, batch_size=8, device="cpu",
                         eval_every=12, eval_log_points=0)
    model, data = tiny()
    members = [{"seed": s} for s in model.seeds]
    history = iterative_magnitude_pruning(model, data, config, rounds=3, rewind_step=4, members=members)

    by_hand, _ = tiny()  # the same initial weights
    rest = replace(config, steps=8, eval_every=8)
    train(by_hand, data, replace(config, steps=4, eval_every=4))
    early = snapshot(by_hand)
    runs, masks = [train(by_hand, data, rest, members=members)], None
    for r in range(1, 4):
        masks = magnitude_masks(by_hand, 1 - 0.5**r, masks)
        rewind(by_hand, early)
        by_hand.set_weight_masks(masks)
        runs.append(train(by_hand, data, rest, members=members))

    assert history.axis_name == "sparsity" and history.axis.tolist() == [0.0, 0.5, 0.75, 0.875]
    assert sorted(history.metrics) == ["test_acc", "train_acc"] and history.members == runs[0].members
    for name in ("train_acc", "test_acc"):
        np.testing.assert_array_equal(history[name], np.stack([run.final(name) for run in runs]))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), by_hand.parameters())), "the same final weights"
    assert all(torch.equal(a, b) for a, b in zip(model.weight_masks, masks)), "the model keeps the last round's masks"
    assert history.meta["config"]["steps"] == 8


def test_iterative_magnitude_pruning_evaluates_only_at_the_end_of_each_part_and_prunes_every_layer_alike():
    model, data = tiny()
    config = TrainConfig(steps=10, lr=1e-2, device="cpu", eval_every=1)  # eval_every and log points are ignored
    history = iterative_magnitude_pruning(model, data, config, rounds=2, rewind_step=3)
    assert history["test_acc"].shape == (3, 3)
    assert history.labels("seed") == [0, 1, 2] and history.members[0]["lr"] == 1e-2
    sizes = [w[0].numel() for w in model.weights]
    assert pruned_counts(list(model.weight_masks)) == [[round(0.75 * n)] * 3 for n in sizes]
    np.testing.assert_allclose(weight_sparsity(model).numpy(), 0.75, atol=0.01)


@pytest.mark.parametrize("settings, match", [
    (dict(rounds=-1), "rounds"), (dict(rounds=1.5), "rounds"), (dict(rewind_step=0), "rewind_step"),
    (dict(rewind_step=10), "rewind_step"), (dict(config="sgd"), "config"),
])
def test_iterative_magnitude_pruning_arguments_are_checked(settings, match):
    model, data = tiny()
    arguments = dict(config=TrainConfig(steps=10, device="cpu"), rounds=2, rewind_step=3) | settings
    with pytest.raises(ValueError, match=match):
        iterative_magnitude_pruning(model, data, **arguments)
    with pytest.raises(ValueError, match="model"):
        iterative_magnitude_pruning(EmbeddingMLP(5, [0]), data, TrainConfig(steps=10), rounds=1, rewind_step=3)


def test_a_dense_readout_keeps_the_last_layer_whole_and_the_others_as_drawn():
    model, _ = tiny()
    pruned, dense = random_masks(model, 0.5), random_masks(model, 0.5, prune_readout=False)
    assert all(torch.equal(a, b) for a, b in zip(pruned[:-1], dense[:-1])), "the other layers are drawn alike"
    assert torch.all(dense[-1] == 1) and not torch.all(pruned[-1] == 1)
    by_magnitude = magnitude_masks(model, 0.75, current=dense, prune_readout=False)
    assert torch.all(by_magnitude[-1] == 1)
    assert pruned_counts(by_magnitude[:-1]) == pruned_counts(magnitude_masks(model, 0.75)[:-1])
    with pytest.raises(ValueError, match="prune_readout must be True or False; got 'no'"):
        random_masks(model, 0.5, prune_readout="no")
    with pytest.raises(ValueError, match="prune_readout"):
        magnitude_masks(model, 0.5, prune_readout=1)


def test_disconnected_counts_units_and_classes_that_no_path_joins_to_inputs_and_outputs():
    # 2 inputs -> 3 hidden -> 2 hidden -> 2 classes, one member
    first = torch.tensor([[1.0, 0, 0], [1, 0, 0]])   # hidden unit 0 has inputs; units 1 and 2 none
    second = torch.tensor([[1.0, 0], [0, 1], [0, 0]])  # unit 0 -> a; unit 1 -> b; unit 2 -> nothing
    readout = torch.tensor([[1.0, 0], [0, 1]])         # a -> class 0, b -> class 1
    cut = disconnected([first[None], second[None], readout[None]])
    # layer 1: units 1, 2 have no input; layer 2: b is fed only by unit 1, which has none
    assert cut["units"].tolist() == [3] and cut["classes"].tolist() == [1]
    whole = disconnected([torch.ones(2, 2, 3), torch.ones(2, 3, 2), torch.ones(2, 2, 2)])
    assert whole["units"].tolist() == [0, 0] and whole["classes"].tolist() == [0, 0]
    dead_end = disconnected([torch.ones(1, 2, 3), torch.zeros(1, 3, 2), torch.ones(1, 2, 2)])
    assert dead_end["units"].tolist() == [5] and dead_end["classes"].tolist() == [2]


@pytest.mark.parametrize("masks, match", [
    ([], "masks must be a non-empty list"),
    ("mask", "masks must be a non-empty list"),
    ([torch.ones(1, 2, 3), torch.ones(1, 4, 2)],
     r"each layer's out the next one's fan_in; got \[\(1, 2, 3\), \(1, 4, 2\)\]"),
    ([torch.ones(2, 3)], "masks must be one"),
    ([torch.full((1, 2, 3), 0.5)], "only 0 and 1"),
])
def test_disconnected_refuses_bad_masks(masks, match):
    with pytest.raises(ValueError, match=match):
        disconnected(masks)


def test_iterative_magnitude_pruning_keeps_every_rounds_masks_and_the_rewound_weights():
    model, data = tiny()
    config = TrainConfig(steps=10, lr=1e-2, device="cpu")
    history = iterative_magnitude_pruning(model, data, config, rounds=2, rewind_step=3, prune_readout=False)
    sizes = [w[0].numel() for w in model.weights]
    for i, w in enumerate(model.weights):
        masks = history.arrays[f"masks/layer{i}"]
        assert masks.shape == (3, 2, *w.shape[1:]) and masks.dtype == np.uint8
        np.testing.assert_array_equal(masks[:, -1], list(model.weight_masks)[i].numpy())  # the last round's
    pruned = [[int((history.arrays[f"masks/layer{i}"][:, r] == 0).reshape(3, -1).sum(1)[0]) for i in range(3)]
              for r in range(2)]
    assert pruned == [[round(share * sizes[0]), round(share * sizes[1]), 0] for share in (0.5, 0.75)]
    assert set(k.removeprefix("rewind/") for k in history.arrays if k.startswith("rewind/")) == \
        {name for name, _ in model.named_parameters()}
    assert history.select(seed=1).arrays["masks/layer0"].shape[0] == 1  # per member, like every array
