import pytest
import torch

from genlib.core.data import digits, modular_arithmetic, quadratic_teacher


@pytest.mark.parametrize("op, fn", [("+", lambda a, b: a + b), ("-", lambda a, b: a - b), ("*", lambda a, b: a * b)])
def test_modular_labels_are_the_operation(op, fn):
    d = modular_arithmetic(7, op, 0.5, seeds=[0])
    a, b = d.x[:, 0], d.x[:, 1]
    assert torch.equal(d.y[0], fn(a, b) % 7)


def test_division_multiplies_back():
    d = modular_arithmetic(7, "/", 0.5, seeds=[0])
    a, b, c = d.x[:, 0], d.x[:, 1], d.y[0]
    assert torch.equal((c * b) % 7, a)
    assert (b != 0).all()


def test_splits_partition_the_table_per_seed():
    d = modular_arithmetic(11, "+", 0.3, seeds=[0, 1])
    assert d.train_idx.shape == (2, round(0.3 * 121)) and d.test_idx.shape == (2, 121 - 36)
    for s in range(2):
        together = torch.cat([d.train_idx[s], d.test_idx[s]]).sort().values
        assert torch.equal(together, torch.arange(121))
    assert not torch.equal(d.train_idx[0], d.train_idx[1]), "different seeds should split differently"


def test_same_seed_same_data():
    a, b = modular_arithmetic(13, seeds=[3]), modular_arithmetic(13, seeds=[3])
    assert torch.equal(a.train_idx, b.train_idx) and torch.equal(a.y, b.y)


def test_corruption_changes_exactly_that_share_of_train_labels():
    clean = modular_arithmetic(23, "+", 0.5, seeds=[0])
    noisy = modular_arithmetic(23, "+", 0.5, seeds=[0], corrupt_fraction=0.2)
    train = noisy.train_idx[0]
    changed = (noisy.y[0, train] != clean.y[0, train]).sum().item()
    assert changed == round(0.2 * len(train)) == noisy.subsets["corrupted"].shape[1]
    assert torch.equal(noisy.y[0, noisy.test_idx[0]], clean.y[0, noisy.test_idx[0]]), "test labels stay clean"
    corrupted = noisy.subsets["corrupted"][0]
    assert (noisy.y[0, corrupted] != clean.y[0, corrupted]).all()


def test_quadratic_teacher_targets():
    d = quadratic_teacher(dim=5, n_train=20, n_test=10, seeds=[0, 1])
    assert d.x.shape == (30, 5) and d.y.shape == (2, 30)
    assert (d.y >= 0).all() and d.num_classes is None


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"p": 1}, "p"),
        ({"p": 2.5}, "p"),
        ({"train_fraction": 0.0}, "train_fraction"),
        ({"train_fraction": 1.0}, "train_fraction"),
        ({"train_fraction": 1.5}, "train_fraction"),
        ({"op": "%"}, "op"),
        ({"op": "/", "p": 8}, "p"),
        ({"corrupt_fraction": -0.1}, "corrupt_fraction"),
        ({"seeds": []}, "seeds"),
        ({"seeds": [-1]}, "seeds"),
    ],
)
def test_bad_inputs_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name) as err:
        modular_arithmetic(**kwargs)
    assert "got" in str(err.value), "the message should give the value received"


def test_digits_splits_noise_and_validation():
    clean, noisy = digits(300, [0, 1], 0.0, n_val=200), digits(300, [0, 1], 0.2, n_val=200)
    assert clean.x.shape == (1797, 64) and clean.num_classes == 10
    assert torch.allclose(clean.x.norm(dim=1), torch.full((1797,), 8.0))
    for s in range(2):
        parts = [clean.train_idx[s], clean.subsets["val"][s], clean.test_idx[s]]
        assert torch.equal(torch.cat(parts).sort().values, torch.arange(1797)), "train, val, test partition"
        assert torch.equal(noisy.train_idx[s], clean.train_idx[s]), "noise does not change the split"
        bad = noisy.subsets["corrupted"][s]
        assert len(bad) == 60 and torch.all(noisy.y[s, bad] != clean.y[s, bad])
        good = noisy.subsets["clean_train"][s]
        assert torch.equal(noisy.y[s, good], clean.y[s, good]) and len(good) == 240
        held_out = torch.cat([clean.subsets["val"][s], clean.test_idx[s]])
        assert torch.equal(noisy.y[s, held_out], clean.y[s, held_out]), "held-out labels stay true"
        prefix = noisy.train_idx[s, :100]  # a smaller training set keeps about the same noise share
        assert 0.1 <= float((noisy.y[s, prefix] != clean.y[s, prefix]).float().mean()) <= 0.3


@pytest.mark.parametrize("kw, name", [
    (dict(n_train=0), "n_train"), (dict(n_train=1797), "n_train"),
    (dict(n_train=1000, n_val=900), "n_val"), (dict(corrupt_fraction=1.5), "corrupt_fraction"),
])
def test_bad_digits_arguments(kw, name):
    with pytest.raises(ValueError, match=name):
        digits(**kw)
