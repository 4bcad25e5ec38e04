import pytest
import torch

from genlib.core.layers import (
    READOUTS,
    Centered,
    Chain,
    HiddenLayer,
    LinearReadout,
    MeanReadout,
    SignedReadout,
    WeightMasks,
    affine,
    member_dropout,
    member_unit_masks,
)
from genlib.core.models import MLP, EmbeddingMLP, Transformer, prieto_mlp


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


@pytest.mark.parametrize("combine", ["concat", "sum"])
def test_embedding_mlp_gradients_are_those_of_the_plain_formula(combine):
    """The pair lookup's own backward pass (mask, then index_add_) against autograd on the plain
    formula, in float64, repeated tokens included."""
    m = EmbeddingMLP(7, [0, 1], embed_dim=4, hidden=(8,), combine=combine).double()
    x = tokens(7, 2, 30)
    targets = torch.randn(2, 30, 7, dtype=torch.float64)
    (m(x) * targets).sum().backward()
    mine = [p.grad.clone() for p in m.parameters()]
    m.zero_grad(set_to_none=True)
    a, b = x[..., 0], x[..., 1]
    if combine == "sum":
        rows = lambda t, i: torch.stack([t[s][i[s]] for s in range(2)])
        h = torch.relu(rows(m.embed_a, a) + rows(m.embed_b, b))
        layers = zip(m.weights, m.biases)
    else:
        e = torch.stack([m.embed[s][x[s]] for s in range(2)]).flatten(2)
        h = torch.relu(torch.bmm(e, m.weights[0]) + m.biases[0])
        layers = zip(m.weights[1:], m.biases[1:])
    layers = list(layers)
    for i, (w, bias) in enumerate(layers):
        h = torch.bmm(h, w) + bias
        h = torch.relu(h) if i < len(layers) - 1 else h
    (h * targets).sum().backward()
    for got, expected in zip(mine, [p.grad for p in m.parameters()]):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


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
    from genlib.core.train import ensemble_backward

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


# The parts MLP is composed of (genlib.core.layers), each on its own.


def test_affine_is_each_members_own_matrix_product():
    h, w, b = torch.randn(2, 5, 3), torch.randn(2, 3, 4), torch.randn(2, 1, 4)
    for s in range(2):
        torch.testing.assert_close(affine(h, w, b)[s], h[s] @ w[s] + b[s])
        torch.testing.assert_close(affine(h, w)[s], h[s] @ w[s])


def test_member_dropout_zeroes_at_each_members_rate_and_rescales_the_rest():
    h = torch.ones(3, 400, 50)
    rate = torch.tensor([0.0, 0.25, 0.75]).view(-1, 1, 1)
    torch.manual_seed(0)
    out = member_dropout(h, rate)
    assert torch.equal(out[0], h[0]), "rate 0 keeps every unit unchanged"
    for s, r in ((1, 0.25), (2, 0.75)):
        kept = out[s][out[s] != 0]
        assert abs(1 - kept.numel() / h[s].numel() - r) < 0.02
        torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - r)))


def test_hidden_layer_is_affine_norm_activation_unit_mask_then_dropout():
    w, b, x = torch.randn(2, 3, 6), torch.randn(2, 1, 6), torch.randn(2, 5, 3)
    torch.testing.assert_close(HiddenLayer(w, b, torch.tanh)(x), torch.tanh(x @ w + b))
    torch.testing.assert_close(HiddenLayer(w, None, torch.tanh, norm=lambda z: 2 * z)(x), torch.tanh(2 * (x @ w)))
    mask = (torch.arange(6) < torch.tensor([[2], [6]])).float()[:, None, :]
    h = HiddenLayer(w, b, torch.relu, unit_mask=mask)(x)
    assert h[0, :, 2:].abs().max() == 0 and torch.equal(h[1], torch.relu(x @ w + b)[1])
    torch.manual_seed(1)
    dropped = HiddenLayer(w, b, torch.relu, unit_mask=mask, dropout_rate=torch.full((2, 1, 1), 0.5))(x)
    torch.manual_seed(1)
    torch.testing.assert_close(dropped, member_dropout(h, torch.full((2, 1, 1), 0.5)))


def test_readout_heads():
    h = torch.randn(2, 5, 4)
    w, b = torch.randn(2, 4, 3), torch.randn(2, 1, 3)
    torch.testing.assert_close(LinearReadout(w, b)(h), h @ w + b)
    torch.testing.assert_close(MeanReadout()(h), h.mean(-1, keepdim=True))
    signs = SignedReadout.alternating(2, 4)
    assert torch.equal(signs, torch.tensor([[0.5, -0.5, 0.5, -0.5]] * 2))
    logits = SignedReadout(signs)(h)
    f = 0.5 * (h[..., 0] - h[..., 1] + h[..., 2] - h[..., 3])
    torch.testing.assert_close(logits, torch.stack([torch.zeros_like(f), f], dim=-1))
    assert torch.equal(logits.argmax(-1), (f > 0).long()), "the predicted class is the sign of f"
    assert {name: head.out_dim for name, head in READOUTS.items()} == {"linear": None, "mean": 1, "signed": 2}


def test_chain_applies_its_parts_in_turn():
    x = torch.randn(3)
    assert Chain()(x) is x
    torch.testing.assert_close(Chain(torch.exp, lambda z: z + 1, torch.log)(x), torch.log(torch.exp(x) + 1))


def test_centered_subtracts_a_frozen_copy_evaluated_after_the_network():
    w = torch.randn(3, requires_grad=True)
    w0 = w.detach().clone()
    calls = []

    def network(x):
        calls.append("network")
        return x * w

    def initial(x):
        calls.append("initial")
        return x * w0

    x = torch.randn(4, 3)
    out = Centered(network, initial)(x)
    assert torch.equal(out, torch.zeros_like(out)) and calls == ["network", "initial"]
    out.sum().backward()
    torch.testing.assert_close(w.grad, x.sum(0))  # the gradient of the network alone


def test_weight_masks_apply_prune_and_check():
    weights = [torch.randn(2, 3, 4), torch.randn(2, 4, 1, dtype=torch.float64)]
    assert all(a is b for a, b in zip(WeightMasks([]).apply(weights), weights)), "no masks: the weights themselves"
    given = [torch.randint(0, 2, w.shape) for w in weights]
    masks = WeightMasks.for_weights(given, weights)
    assert [name for name, _ in masks.named_buffers()] == ["0", "1"] and len(masks) == 2
    assert [m.dtype for m in masks] == [torch.float32, torch.float64], "masks take the weights' dtype"
    for used, w, m in zip(masks.apply(weights), weights, given):
        torch.testing.assert_close(used, w * m)
    masks.prune(weights)
    assert all((w[m == 0] == 0).all() and (w[m == 1] != 0).all() for w, m in zip(weights, given))
    with pytest.raises(ValueError, match="masks must be one tensor per weight matrix"):
        WeightMasks.for_weights(given[:1], weights)
    with pytest.raises(ValueError, match="only 0 and 1"):
        WeightMasks.for_weights([m * 0.5 for m in given], weights)


def test_member_unit_masks():
    mask, scale = member_unit_masks([1, 3], [4, 4], 2)
    assert torch.equal(mask, torch.tensor([[[1.0, 0, 0, 0]], [[1.0, 1, 1, 0]]]))
    torch.testing.assert_close(scale.flatten(), torch.tensor([2.0, (4 / 3) ** 0.5]))
    for widths, hidden, name in (([1], [4], "member_widths"), ([1, 5], [4], "member_widths"),
                                 ([1, 2], [4, 3], "hidden"), ([1, 2], [], "hidden")):
        with pytest.raises(ValueError, match=name):
            member_unit_masks(widths, hidden, 2)


# MLP as the composition of those parts.


def test_mlp_is_the_chain_of_its_parts():
    model = MLP(3, (5, 5), 2, [0, 1], activation="tanh", member_widths=[2, 5], batch_norm=True)
    model.set_weight_masks([(torch.rand(w.shape) < 0.7).float() for w in model.weights])
    x = torch.randn(2, 8, 3)
    model.eval()
    layers, head = model._parts(model.weights, model.biases)
    assert [type(p) for p in (*layers, head)] == [HiddenLayer, HiddenLayer, LinearReadout]
    h, masks = x, list(model.weight_masks)
    for i in range(2):
        z = h @ (model.weights[i] * masks[i]) + model.biases[i]
        h = torch.tanh(model.norms[i](z)) * model.unit_mask
    expected = h @ (model.weights[2] * masks[2]) + model.biases[2]
    torch.testing.assert_close(model.raw_output(x), expected)
    signed = MLP(3, (6,), 2, [0, 1], readout="signed", centered=True)
    assert isinstance(signed._parts(signed.weights, signed.biases)[1], SignedReadout)
    assert signed.raw_output(x).abs().max() == 0, "a centered network starts from the zero function"


def test_mlp_parameter_initialisation_order():
    """Weights and biases are drawn in turn, layer by layer (each _param call is the next salt), so a
    member's numbers never change with the flags that add no parameter of their own."""
    seeds, std = [3, 8], [1 / 3**0.5, 1 / 5**0.5]
    model = MLP(3, (5,), 2, seeds, bias_init=0.5)
    for i, (p, shape, scale) in enumerate([(model.weights[0], (3, 5), std[0]), (model.biases[0], (1, 5), 0.5),
                                           (model.weights[1], (5, 2), std[1]), (model.biases[1], (1, 2), 0.5)]):
        for s, seed in enumerate(seeds):
            g = torch.Generator().manual_seed(seed * 1_000_003 + i + 1)
            assert torch.equal(p[s].detach(), torch.randn(shape, generator=g) * scale)
    for flag in ({"dropout": 0.3}, {"centered": True}, {"batch_norm": True}):
        other = MLP(3, (5,), 2, seeds, bias_init=0.5, **flag)
        assert all(torch.equal(a, b) for a, b in zip(model.weights, other.weights))


def test_mlp_tensor_names_and_order():
    """functional_call, member blocks, state dicts and code iterating parameters() rely on these."""
    model = MLP(3, (4, 4), 2, [0, 1], member_widths=[2, 4], dropout=0.1, batch_norm=True)
    model.set_weight_masks([torch.ones_like(w) for w in model.weights])
    assert [n for n, _ in model.named_parameters()] == [
        "weights.0", "weights.1", "weights.2", "biases.0", "biases.1", "biases.2",
        "norms.0.weight", "norms.0.bias", "norms.1.weight", "norms.1.bias"]
    assert [n for n, _ in model.named_buffers()] == [
        "output_scale", "dropout_rate", "unit_mask", "weight_masks.0", "weight_masks.1", "weight_masks.2",
        "norms.0.running_mean", "norms.0.running_var", "norms.1.running_mean", "norms.1.running_var"]
    signed = MLP(3, (4,), 2, [0, 1], readout="signed", centered=True, bias=False)
    assert [n for n, _ in signed.named_parameters()] == ["weights.0"]
    assert list(signed.state_dict()) == [
        "output_scale", "dropout_rate", "readout_signs", "weights.0", "initial_weights.0"]
