import pytest
import torch

from genlib.models import MLP, EmbeddingMLP, Transformer, prieto_mlp


def tokens(p, members, batch):
    return torch.randint(0, p, (members, batch, 2), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("make", [
    lambda s: EmbeddingMLP(11, s, embed_dim=8, hidden=(16,)),
    lambda s: prieto_mlp(11, s, width=16),
    lambda s: Transformer(11, s, d_model=16, heads=2, d_mlp=32),
])
def test_shapes_and_member_independence(make):
    """A member's outputs depend only on its own seed, not on the ensemble it sits in."""
    x = tokens(11, 3, 5)
    big, alone = make([4, 7, 9]), make([7])
    out = big(x)
    assert out.shape == (3, 5, 11)
    torch.testing.assert_close(out[1:2], alone(x[1:2]))


def test_folded_embedding_mlp_equals_concatenation():
    m = EmbeddingMLP(7, [0, 1], embed_dim=4, hidden=(8,))
    x = tokens(7, 2, 6)
    e = torch.stack([m.embed[s][x[s]] for s in range(2)])  # (S, B, 2, d)
    h = torch.relu(torch.bmm(e.flatten(2), m.weights[0]) + m.biases[0])
    expected = torch.bmm(h, m.weights[1]) + m.biases[1]
    torch.testing.assert_close(m(x), expected)


def test_prieto_mlp_is_a_linear_layer_on_one_hot_pairs():
    p = 5
    m = prieto_mlp(p, [0], width=6)
    x = tokens(p, 1, 4)
    one_hot = torch.nn.functional.one_hot(x[0], p).flatten(1).float()  # one-hot(a) || one-hot(b)
    w1 = torch.cat([m.embed_a[0], m.embed_b[0]])  # (2p, width)
    h = torch.relu(torch.relu(one_hot @ w1) @ m.weights[0][0])
    torch.testing.assert_close(m(x)[0], h @ m.weights[1][0])


def test_output_scale_multiplies_outputs():
    x = torch.randn(2, 3, 4)
    a = MLP(4, (8,), 2, [0, 1], output_scale=1.0)
    b = MLP(4, (8,), 2, [0, 1], output_scale=[1.0, 3.0])
    torch.testing.assert_close(b(x)[1], 3 * a(x)[1])


def test_mean_readout():
    m = MLP(3, (5,), 1, [0], activation="tanh", bias=False, readout="mean")
    x = torch.randn(1, 4, 3)
    torch.testing.assert_close(m(x)[0, :, 0], torch.tanh(x[0] @ m.weights[0][0]).mean(-1))


@pytest.mark.parametrize("make, name", [
    (lambda: EmbeddingMLP(1, [0]), "p"),
    (lambda: EmbeddingMLP(5, []), "seeds"),
    (lambda: EmbeddingMLP(5, [0], combine="max"), "combine"),
    (lambda: EmbeddingMLP(5, [0], output_scale=0.0), "output_scale"),
    (lambda: EmbeddingMLP(5, [0, 1], output_scale=[1.0]), "output_scale"),
    (lambda: Transformer(5, [0], d_model=10, heads=3), "d_model"),
    (lambda: MLP(3, (4,), 2, [0], readout="mean"), "out_dim"),
    (lambda: MLP(3, (4,), 1, [0], activation="swish"), "activation"),
    (lambda: MLP(3, (4,), 2, [0, 1], member_widths=[2]), "member_widths"),
    (lambda: MLP(3, (4,), 2, [0], member_widths=[5]), "member_widths"),
    (lambda: MLP(3, (4, 3), 2, [0], member_widths=[2]), "hidden"),
])
def test_bad_model_arguments(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_member_widths_mask_the_units_a_member_does_not_have():
    model = MLP(5, (8,), 3, [0, 1], member_widths=[3, 8])
    x = torch.randn(2, 10, 5)
    before = model(x)
    with torch.no_grad():  # change member 0's units 3..7: its output must not move
        model.weights[0][0, :, 3:] += 1.0
        model.weights[1][0, 3:, :] += 1.0
    after = model(x)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    model(x).sum().backward()
    assert model.weights[0].grad[0, :, 3:].abs().max() == 0 and model.weights[0].grad[1].abs().max() > 0


def test_member_widths_scale_the_readout_for_the_members_own_fan_in():
    narrow = MLP(5, (400,), 3, list(range(200)), member_widths=[4] * 200)
    readout = narrow.weights[1].detach()[:, :4, :]  # the units each member actually uses
    assert 0.8 < float(readout.std()) * 4**0.5 < 1.2  # std 1/sqrt(own width), not 1/sqrt(400)


def test_batch_norm_matches_torch_batchnorm1d_per_member_in_training_and_evaluation():
    seeds = [0, 1]
    model = MLP(3, (5, 4), 2, seeds, batch_norm=True).double()
    with torch.no_grad():  # a non-trivial scale and shift, so that their layout is checked too
        for norm in model.norms:
            norm.weight.normal_(), norm.bias.normal_()
    x = torch.randn(2, 16, 3, dtype=torch.float64)
    references = []
    for s in range(2):  # member s rebuilt from torch modules
        layers = []
        for i, width in enumerate((5, 4)):
            linear = torch.nn.Linear(model.weights[i].shape[1], width).double()
            linear.weight.data, linear.bias.data = model.weights[i][s].T.detach(), model.biases[i][s, 0].detach()
            norm = torch.nn.BatchNorm1d(width).double()
            norm.weight.data, norm.bias.data = model.norms[i].weight[s, 0].detach(), model.norms[i].bias[s, 0].detach()
            layers += [linear, norm, torch.nn.ReLU()]
        out = torch.nn.Linear(4, 2).double()
        out.weight.data, out.bias.data = model.weights[2][s].T.detach(), model.biases[2][s, 0].detach()
        references.append(torch.nn.Sequential(*layers, out))
    for mode in ("train", "train", "eval"):  # two training passes move the running statistics
        model.train(mode == "train")
        outputs = model(x)
        for s, reference in enumerate(references):
            reference.train(mode == "train")
            torch.testing.assert_close(outputs[s], reference(x[s]), msg=f"member {s}, {mode} mode")


def test_batch_norm_running_statistics_follow_member_blocks():
    from genlib.train import ensemble_backward

    x, y = torch.randn(3, 8, 3), torch.randint(0, 2, (3, 8))
    stats = []
    for block in (3, 1):
        model = MLP(3, (6,), 2, [0, 1, 2], batch_norm=True)
        ensemble_backward(model, x, y, "cross_entropy", block)
        stats.append(model.norms[0].running_mean.clone())
    torch.testing.assert_close(stats[1], stats[0])
    assert stats[0].abs().sum() > 0, "a training pass should move the running mean"


def test_batch_norm_is_refused_where_it_has_no_meaning():
    with pytest.raises(ValueError, match="batch_norm"):
        MLP(3, (4,), 1, [0], batch_norm=True, centered=True)
    with pytest.raises(ValueError, match="batch_norm"):
        MLP(3, (4,), 1, [0], batch_norm=True, readout="mean")


def test_features_of_every_hidden_layer():
    model = MLP(3, (5, 4), 2, [0, 1])
    x = torch.randn(2, 7, 3)
    first = torch.relu(torch.baddbmm(model.biases[0], x, model.weights[0]))
    torch.testing.assert_close(model.features(x, layer=0), first)
    torch.testing.assert_close(model.features(x), model.features(x, layer=1))
    with pytest.raises(ValueError, match="layer"):
        model.features(x, layer=2)
