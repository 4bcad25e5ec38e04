"""Units of what the memorization chapter added to genlib: dropout, the signed readout, ELR, the
penalty hook, and the randomized, diluted and XOR data sets."""
import pytest
import torch
import torch.nn.functional as F

from genlib.core.data import DIGITS_IMAGES, diluted_digits, randomized_digits, xor_clusters
from genlib.core.losses import EarlyLearningRegularization
from genlib.core.models import MLP
from genlib.core.train import TrainConfig, train


def test_dropout_is_per_member_and_only_in_training():
    model = MLP(5, (64,), 3, [0, 1], dropout=[0.0, 0.5])
    x = torch.randn(2, 20, 5)
    model.train()
    a, b = model(x), model(x)
    assert torch.equal(a[0], b[0]), "rate 0: no randomness"
    assert not torch.equal(a[1], b[1]), "rate 0.5: a new mask every call"
    model.eval()
    assert torch.equal(model(x), model(x))


def test_training_with_dropout_is_reproducible_and_evaluates_without_it(tiny_digits):
    histories = [train(MLP(64, (32,), 10, [0, 1], dropout=0.3), tiny_digits,
                       TrainConfig(steps=20, lr=0.05, optimizer="sgd", batch_size=32, eval_every=10, progress=False))
                 for _ in range(2)]
    assert all((histories[0][k] == histories[1][k]).all() for k in histories[0].names)


def test_signed_readout_gives_logistic_loss_and_sign():
    model = MLP(4, (6,), 2, [0], readout="signed", bias=False)
    out = model(torch.randn(1, 50, 4))
    f = out[..., 1]
    assert torch.equal(out[..., 0], torch.zeros_like(f))
    labels = torch.randint(0, 2, (1, 50))
    ce = F.cross_entropy(out[0], labels[0], reduction="none")
    assert torch.allclose(ce, F.softplus(-(2 * labels[0] - 1) * f[0]), atol=1e-6)
    assert sorted(model.readout_signs[0].unique().tolist()) == pytest.approx([-6**-0.5, 6**-0.5])


@pytest.mark.parametrize("make, name", [
    (lambda: MLP(3, (4,), 2, [0], dropout=1.0), "dropout"),
    (lambda: MLP(3, (4,), 1, [0], readout="signed"), "out_dim"),
    (lambda: MLP(3, (), 2, [0], readout="signed"), "hidden"),
])
def test_bad_arguments(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_elr_penalty_tracks_past_predictions():
    elr = EarlyLearningRegularization([0.0, 3.0], members=2, examples=10, num_classes=4, beta=0.7)
    outputs = torch.randn(2, 3, 4, requires_grad=True)
    idx = torch.tensor([[0, 1, 2], [4, 5, 6]])
    penalty = elr(outputs, idx, slice(None))
    assert penalty[0] == 0 and penalty[1] < 0  # log(1 - <t, p>) < 0
    p = torch.softmax(outputs.detach(), -1).clamp(1e-4, 1 - 1e-4)
    expected = 0.3 * p / p.sum(-1, keepdim=True)
    assert torch.allclose(elr.targets[1, [4, 5, 6]], expected[1], atol=1e-6)
    assert elr.targets[:, 3].abs().sum() == 0, "examples not in the batch keep their targets"
    penalty.sum().backward()
    assert outputs.grad[0].abs().sum() == 0 and outputs.grad[1].abs().sum() > 0
    with pytest.raises(ValueError, match="beta"):
        EarlyLearningRegularization(1.0, 1, 2, 2, beta=1.0)


def test_penalty_hook_receives_the_batch_indices(tiny_digits):
    seen = []

    class Recorder:
        def to(self, device, dtype):
            return self

        def __call__(self, outputs, idx, members):
            seen.append(idx.clone())
            return outputs.sum((1, 2)) * 0

    train(MLP(64, (8,), 10, [0, 1]), tiny_digits, TrainConfig(steps=3, batch_size=16, progress=False),
          penalty=Recorder())
    assert len(seen) == 3 and seen[0].shape == (2, 16)
    for s in range(2):  # every index is one of the member's own training examples
        assert set(seen[0][s].tolist()) <= set(tiny_digits.train_idx[s].tolist())


def test_randomized_digits_blocks_and_corruptions():
    data = randomized_digits([("real", 0.0), ("shuffled pixels", 0.0), ("random pixels", 0.9)], 100, [0, 1])
    assert data.x.shape == (3 * DIGITS_IMAGES, 64) and data.y.shape == (6, 3 * DIGITS_IMAGES)
    real, shuffled = data.x[:DIGITS_IMAGES], data.x[DIGITS_IMAGES : 2 * DIGITS_IMAGES]
    matches = (shuffled[:, :, None] - real[:, None, :]).abs().amax(0) < 1e-5  # (shuffled col, real col)
    varying = real.std(0) > 1e-3  # some border pixels are blank in every image: they match each other
    order = [int(matches[j].nonzero()[0]) for j in range(64) if shuffled[:, j].std() > 1e-3]
    assert sorted(order) == varying.nonzero()[:, 0].tolist(), "shuffled pixels: one permutation for all images"
    assert torch.allclose(real.sort(1).values, shuffled.sort(1).values, atol=1e-5)
    assert data.train_idx[2].min() >= DIGITS_IMAGES and data.test_idx[4].min() >= 2 * DIGITS_IMAGES
    assert torch.equal(data.train_idx[0], data.train_idx[2] - DIGITS_IMAGES), "same split for every condition"
    noisy = data.y[4, data.train_idx[4]] != data.y[0, data.train_idx[0]]
    assert noisy.float().mean() == pytest.approx(0.9, abs=0.01)
    with pytest.raises(ValueError, match="inputs"):
        randomized_digits([("blurred", 0.0)])


def test_xor_clusters():
    data = xor_clusters(40, 100, 50, 5.0, 0.15, seeds=[0, 1])
    assert data.per_member_inputs and data.x.shape == (2, 140, 50) and data.subsets["corrupted"].shape == (2, 6)
    assert not torch.equal(data.x[0], data.x[1]), "each seed draws its own data set"
    train0 = data.train_idx[0]
    y = data.y[0, train0]
    flipped = torch.isin(train0, data.subsets["corrupted"][0])
    assert y[~flipped].float().mean() == pytest.approx(0.5, abs=0.1), "balanced clusters"
    assert torch.equal(data.y[0, data.subsets["clean_train"][0]], y[~flipped])
    with pytest.raises(ValueError, match="flip_fraction"):
        xor_clusters(flip_fraction=0.5)


def test_diluted_digits():
    data = diluted_digits(50, 3, seeds=[0, 1], n_test=300)
    assert data.train_idx.shape == (2, 200) and data.test_idx.shape == (2, 300)
    assert data.per_member_inputs and data.x.shape == (2, 500, 64), "one data set per member, nothing padded"
    clean = data.subsets["clean_train"]
    assert clean.shape == (2, 50) and torch.equal(clean[0], data.train_idx[0, :50])
    test_x, train_x = data.inputs(data.test_idx)[0], data.inputs(data.train_idx)[0]
    shared = (test_x[:, None, :] == train_x[None, :, :]).all(-1).any()
    assert not shared, "no test image is also a training image"
    labels = data.y[0, data.train_idx[0, 50:]]
    assert 0.05 < (labels == 3).float().mean() < 0.2, "noisy labels are uniform over the 10 classes"
    with pytest.raises(ValueError, match="n_clean"):
        diluted_digits(1500, 1, n_test=500)


def test_grids_hold_plain_points():
    from genlib.experiments.memorization import DilutionGrid, DilutionSetup, NoiseSetup, NoiseSweep

    noise = NoiseSweep.at_scale(noises=(0.0, 0.4), epochs=3).setups()
    assert list(noise) == [0.0, 0.4] and all(type(s) is NoiseSetup and s.epochs == 3 for s in noise.values())
    assert noise[0.4].noise == 0.4
    grid = DilutionGrid.at_scale("full")
    assert grid.base == DilutionSetup.at_scale("full") and grid.alphas == (0, 1, 3, 10, 30)
    points = DilutionGrid(DilutionSetup(steps=12), clean_sizes=(100, 300), alphas=(0, 3)).setups()
    assert list(points) == [(100, 0), (100, 3), (300, 0), (300, 3)]
    assert all(type(s) is DilutionSetup and (s.n_clean, s.alpha) == key and s.steps == 12 for key, s in points.items())


@pytest.mark.parametrize("make, name", [
    (lambda m: m.NoiseSetup(regularizers=("none", "mixup")), "regularizers"),
    (lambda m: m.NoiseSetup(noise=1.5), "noise"),
    (lambda m: m.NoiseSetup(dropout=1.0), "dropout"),
    (lambda m: m.NoiseSetup(elr_beta=1.0), "elr_beta"),
    (lambda m: m.Condition("blurred", inputs="blurred"), "inputs"),
    (lambda m: m.Condition("too noisy", label_noise=1.2), "label_noise"),
    (lambda m: m.RandomizationSetup(conditions=(m.Condition("a"), m.Condition("a", label_noise=0.5))), "names"),
    (lambda m: m.XorSetup(flip_fraction=0.5), "flip_fraction"),
    (lambda m: m.XorSetup(mean_norm=0.0), "mean_norm"),
])
def test_bad_settings_are_refused_when_made(make, name):
    from genlib.experiments import memorization

    with pytest.raises(ValueError, match=name):
        make(memorization)
