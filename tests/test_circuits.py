import math

import pytest
import torch
from torch import nn

from genlib.core.data import modular_arithmetic
from genlib.core.models import EmbeddingMLP, Ensemble, Transformer
from genlib.core.train import evaluate
from genlib.measures.circuits import (
    all_pair_logits,
    distance_irrelevance,
    embedding_spectrum,
    excluded_loss,
    gradient_symmetricity,
    key_frequencies,
    logit_spectrum,
    restricted_loss,
)

F64 = torch.float64
P = 11


def grid(p=P):
    """a, b (p, p) and the pairs' sums and differences mod p."""
    a, b = torch.meshgrid(torch.arange(p, dtype=F64), torch.arange(p, dtype=F64), indexing="ij")
    return a, b


def wave_logits(frequencies, p=P, amplitude=3.0, members=2):
    """(S, p, p, p) logits amplitude * sum_k cos(w_k (a + b - c)): Nanda et al.'s Fourier circuit."""
    a, b = grid(p)
    c = torch.arange(p, dtype=F64)
    total = sum(torch.cos(2 * math.pi * k / p * (a[..., None] + b[..., None] - c)) for k in frequencies)
    return (amplitude * total).expand(members, -1, -1, -1).clone()


def addition(members=2, p=P, fraction=0.5):
    return modular_arithmetic(p, "+", fraction, list(range(members)))


def cross_entropy(logits, data, rows):
    """Independent reference: the loss of (S, p^2, p) logits on the examples rows (S, n) of data."""
    x = data.x
    position = x[:, 0] * P + x[:, 1]
    out = []
    for s in range(len(logits)):
        chosen = logits[s, position[rows[s]]]
        out.append(nn.functional.cross_entropy(chosen, data.y[s, rows[s]]))
    return torch.stack(out)


def reference_trig_part(logits, frequencies):
    """As in Nanda et al.'s helpers: project each output's (p^2,) logits on the 2-D Fourier directions
    cos(w_k (a + b)) = (cos a cos b - sin a sin b) / sqrt 2 and sin(w_k (a + b)), built from the
    orthonormal 1-D basis (const, cos 1, sin 1, ...)."""
    p = logits.shape[1]
    t = torch.arange(p, dtype=F64)
    basis = [torch.ones(p, dtype=F64) / math.sqrt(p)]
    for k in range(1, p // 2 + 1):
        for wave in (torch.cos(2 * math.pi * k * t / p), torch.sin(2 * math.pi * k * t / p)):
            basis.append(wave / wave.norm())

    def term(i, j):
        return (basis[i][:, None] * basis[j][None, :]).flatten()

    flat = logits.reshape(len(logits), p * p, p)
    total = torch.zeros_like(flat)
    for k in frequencies:
        cos_dir = (term(2 * k - 1, 2 * k - 1) - term(2 * k, 2 * k)) / math.sqrt(2)
        sin_dir = (term(2 * k, 2 * k - 1) + term(2 * k - 1, 2 * k)) / math.sqrt(2)
        for v in (cos_dir, sin_dir):
            total += v[:, None] * torch.einsum("n,snc->sc", v, flat)[:, None, :]
    return total  # (S, p^2, p)


def test_all_pair_logits_are_the_models_outputs_on_every_pair():
    model, data = EmbeddingMLP(P, [0, 1], embed_dim=8, hidden=(16,)), addition()
    logits = all_pair_logits(model)
    assert logits.shape == (2, P, P, P)
    with torch.no_grad():
        direct = model(data.x.expand(2, -1, -1))  # data.x lists (a, b) in lexicographic order
    torch.testing.assert_close(logits.reshape(2, P * P, P), direct)


def test_the_embedding_spectrum_and_the_constant_add_up_to_the_squared_norm():
    embedding = torch.randn(3, P, 7, generator=torch.Generator().manual_seed(0), dtype=F64)
    spectrum = embedding_spectrum(embedding)
    assert spectrum.shape == (3, P // 2)
    constant = embedding.sum(1).pow(2).sum(-1) / P
    torch.testing.assert_close(spectrum.sum(1) + constant, embedding.pow(2).sum((1, 2)))


def test_a_fourier_embedding_concentrates_on_its_frequency_and_a_random_one_is_flat():
    angle = 2 * math.pi * 3 / P * torch.arange(P, dtype=F64)
    noise = torch.randn(2, P, 64, generator=torch.Generator().manual_seed(1), dtype=F64)
    fourier = 0.05 * noise
    fourier[:, :, 0] += 2 * torch.cos(angle + 0.4)
    fourier[:, :, 1] += 2 * torch.sin(angle + 0.4)
    spectrum = embedding_spectrum(fourier)
    assert key_frequencies(spectrum, 1).tolist() == [[3], [3]]
    share = spectrum[:, 2] / spectrum.sum(1)
    assert (share > 0.95).all(), f"frequency 3 holds {share.tolist()} of the power"
    flat = embedding_spectrum(noise)  # 64 dimensions: each frequency's power is a chi-square(128)
    ratio = flat.amax(1) / flat.amin(1)
    assert (ratio < 2).all(), f"a random embedding's largest / smallest frequency power {ratio.tolist()}"


def test_key_frequencies_are_the_strongest_first():
    spectrum = torch.tensor([[0.1, 5.0, 0.2, 3.0, 0.0], [9.0, 0.0, 0.0, 0.0, 1.0]], dtype=F64)
    assert key_frequencies(spectrum, 2).tolist() == [[2, 4], [1, 5]]


def test_logits_made_of_key_frequencies_have_the_full_loss_restricted_and_chance_excluded():
    data, logits = addition(), wave_logits([2, 5])
    full = cross_entropy(logits.reshape(2, P * P, P), data, torch.arange(P * P).expand(2, -1))
    torch.testing.assert_close(restricted_loss(logits, data, [2, 5]), full, rtol=1e-12, atol=1e-12)
    # Removing both frequencies leaves the outputs' means, here 0: uniform predictions, loss log p.
    chance = torch.full((2,), math.log(P), dtype=F64)
    torch.testing.assert_close(excluded_loss(logits, data, [5, 2]), chance, rtol=1e-12, atol=1e-12)
    # Keeping only one of the two frequencies loses part of the fit; removing one keeps part.
    assert (restricted_loss(logits, data, [2]) > full + 0.1).all()
    assert (excluded_loss(logits, data, [2]) < math.log(P) - 0.1).all()
    assert key_frequencies(logit_spectrum(logits), 2).sort(1).values.tolist() == [[2, 5], [2, 5]]


def test_per_output_constants_are_kept_by_the_restricted_loss():
    data = addition()
    offsets = torch.randn(P, generator=torch.Generator().manual_seed(2), dtype=F64)
    logits = wave_logits([4]) + offsets  # a bias on each output c
    full = cross_entropy(logits.reshape(2, P * P, P), data, torch.arange(P * P).expand(2, -1))
    torch.testing.assert_close(restricted_loss(logits, data, [4]), full, rtol=1e-12, atol=1e-12)
    constant = offsets.expand(2, P, P, P).reshape(2, P * P, P)
    torch.testing.assert_close(excluded_loss(logits, data, [4]), cross_entropy(constant, data, data.train_idx),
                               rtol=1e-12, atol=1e-12)


def test_restricted_and_excluded_losses_match_the_papers_projection_on_random_logits():
    data = addition()
    logits = torch.randn(2, P, P, P, generator=torch.Generator().manual_seed(3), dtype=F64) * 2
    flat = logits.reshape(2, P * P, P)
    for freqs in ([1], [2, 3], [1, 2, 3, 4, 5]):
        trig = reference_trig_part(logits, freqs)
        restricted = trig + (flat - trig).mean(1, keepdim=True)  # their bias correction
        expected = cross_entropy(restricted, data, torch.arange(P * P).expand(2, -1))
        torch.testing.assert_close(restricted_loss(logits, data, freqs), expected, rtol=1e-12, atol=1e-12)
        expected = cross_entropy(flat - trig, data, data.train_idx)
        torch.testing.assert_close(excluded_loss(logits, data, freqs), expected, rtol=1e-12, atol=1e-12)


def test_the_restricted_loss_scores_the_inputs_it_is_asked_for():
    data = addition()
    logits = torch.randn(2, P, P, P, generator=torch.Generator().manual_seed(4), dtype=F64) * 2
    flat = logits.reshape(2, P * P, P)
    trig = reference_trig_part(logits, [2, 3])
    restricted = trig + (flat - trig).mean(1, keepdim=True)  # the ablation uses all p^2 inputs whatever is scored
    for inputs, rows in [("test", data.test_idx), ("train", data.train_idx),
                         ("all", torch.arange(P * P).expand(2, -1))]:
        torch.testing.assert_close(restricted_loss(logits, data, [2, 3], inputs=inputs),
                                   cross_entropy(restricted, data, rows), rtol=1e-12, atol=1e-12)
    # the split covers the table, so "all" is the size-weighted mean of "train" and "test"
    n_train, n_test = data.train_idx.shape[1], data.test_idx.shape[1]
    assert n_train + n_test == P * P
    mixed = (n_train * restricted_loss(logits, data, [2, 3], inputs="train")
             + n_test * restricted_loss(logits, data, [2, 3], inputs="test")) / (P * P)
    torch.testing.assert_close(mixed, restricted_loss(logits, data, [2, 3]), rtol=1e-12, atol=1e-12)


def test_each_member_uses_its_own_key_frequencies():
    data, logits = addition(), wave_logits([2, 5])
    both = restricted_loss(logits, data, [[2], [5]])
    torch.testing.assert_close(both[0], restricted_loss(logits, data, [2])[0], rtol=0, atol=0)
    torch.testing.assert_close(both[1], restricted_loss(logits, data, [5])[1], rtol=0, atol=0)
    chosen = torch.tensor([[5, 2], [2, 5]])  # as key_frequencies returns them
    torch.testing.assert_close(excluded_loss(logits, data, chosen), excluded_loss(logits, data, [2, 5]))


def test_a_memorized_table_of_random_labels_keeps_its_fit_when_the_key_frequencies_are_excluded():
    data = addition()
    data.y = torch.randint(0, P, data.y.shape, generator=torch.Generator().manual_seed(6))  # nothing to find
    logits = torch.zeros(2, P * P, P, dtype=F64)
    for s in range(2):
        train = data.train_idx[s]
        logits[s, train, data.y[s, train]] = 10.0  # a lookup table of the training set
    logits = logits.reshape(2, P, P, P)
    train_loss = excluded_loss(logits, data, [])
    excluded, restricted = excluded_loss(logits, data, [1, 3]), restricted_loss(logits, data, [1, 3])
    assert (excluded < train_loss + 0.2).all(), f"excluded {excluded.tolist()} vs train {train_loss.tolist()}"
    assert (restricted > 0.95 * math.log(P)).all(), f"restricted {restricted.tolist()}, chance {math.log(P):.3f}"


def test_a_lookup_table_of_the_true_training_labels_holds_a_share_of_every_frequency():
    # (a + b) mod p = c is sum_k cos(w_k (a + b - c)) up to scale: a table of the true answers on the
    # training pairs holds about (training share) of each frequency's term, so keeping 2 of the 5
    # frequencies already predicts the held-out pairs better than chance.
    data = addition()
    logits = torch.zeros(2, P * P, P, dtype=F64)
    for s in range(2):
        logits[s, data.train_idx[s], data.y[s, data.train_idx[s]]] = 10.0
    restricted = restricted_loss(logits.reshape(2, P, P, P), data, [1, 3])
    assert (restricted < 0.6 * math.log(P)).all(), f"restricted {restricted.tolist()}"


def test_excluding_no_frequency_gives_the_models_training_loss():
    model, data = Transformer(P, [0, 1], d_model=8, heads=2, d_mlp=16), addition()
    expected = evaluate(model, data, "cross_entropy")["train_loss"]
    got = excluded_loss(all_pair_logits(model), data, [])
    torch.testing.assert_close(got.float(), expected, rtol=1e-5, atol=1e-6)


def correct_logit_table(values):
    """(S, p, p, p) logits whose correct logit at (a, b) is values[a, b] and whose others are 0."""
    a, b = torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij")
    logits = torch.zeros(1, P, P, P, dtype=F64)
    logits[0, a, b, (a + b) % P] = values
    return logits


def test_distance_irrelevance_is_one_for_the_clock_and_zero_for_the_pizza():
    a, b = grid()
    w = 2 * math.pi * 3 / P
    clock = correct_logit_table(1 + 0.5 * torch.cos(w * (a + b)))  # depends on a + b only
    pizza = correct_logit_table(torch.cos(w * (a - b) / 2).abs())  # |cos(w (a - b) / 2)|: the pizza's scale
    torch.testing.assert_close(distance_irrelevance(clock), torch.ones(1, dtype=F64))
    assert distance_irrelevance(pizza) < 1e-12
    noise = 0.05 * torch.randn(P, P, generator=torch.Generator().manual_seed(4), dtype=F64)
    assert distance_irrelevance(correct_logit_table(torch.cos(w * (a - b) / 2).abs() + noise)) < 0.4


class RotationNet(Ensemble):
    """The clock: 2-d embeddings z_a = e^(i w a) multiplied, logit_c = Re(z_a z_b conj(z_c))."""

    def __init__(self, p, k, members=1):
        super().__init__(list(range(members)))
        self.p = self.vocab = self.out_dim = p
        angle = 2 * math.pi * k / p * torch.arange(p, dtype=F64)
        circle = torch.stack([angle.cos(), angle.sin()], -1)
        self.embed = nn.Parameter(circle.expand(members, -1, -1).clone())
        self.register_buffer("unembed", circle.expand(members, -1, -1).clone())

    def raw_output(self, x):
        rows = torch.arange(len(x))[:, None]
        za, zb = self.embed[rows, x[..., 0]], self.embed[rows, x[..., 1]]  # (S, B, 2)
        product = torch.stack([za[..., 0] * zb[..., 0] - za[..., 1] * zb[..., 1],
                               za[..., 0] * zb[..., 1] + za[..., 1] * zb[..., 0]], -1)
        return torch.einsum("sbi,sci->sbc", product, self.unembed)


class SumNet(Ensemble):
    """The pizza's reading of its operands: logits = relu((E_a + E_b) W) U."""

    def __init__(self, p, members=2):
        super().__init__(list(range(members)))
        self.p = self.vocab = self.out_dim = p
        g = torch.Generator().manual_seed(5)
        self.embed = nn.Parameter(torch.randn(members, p, 4, generator=g, dtype=F64))
        self.w = nn.Parameter(torch.randn(members, 4, 16, generator=g, dtype=F64))
        self.u = nn.Parameter(torch.randn(members, 16, p, generator=g, dtype=F64))

    def raw_output(self, x):
        rows = torch.arange(len(x))[:, None]
        h = self.embed[rows, x[..., 0]] + self.embed[rows, x[..., 1]]
        return torch.relu(h @ self.w) @ self.u


def test_gradient_symmetricity_of_a_clock_and_of_a_pizza():
    # Clock: the gradients with respect to z_a and z_b have cosine cos(w (a - b)), whose mean over
    # all p^3 triples is 0 exactly. Had the a = b triples shared one row's gradient, it would be 1/p.
    clock = gradient_symmetricity(RotationNet(P, 3), samples=P**3)
    assert abs(clock.item()) < 1e-12, f"clock: {clock.item()}"
    assert abs(gradient_symmetricity(RotationNet(P, 3)).item()) < 0.3  # 100 random triples
    pizza = gradient_symmetricity(SumNet(P))
    torch.testing.assert_close(pizza, torch.ones(2, dtype=F64), rtol=0, atol=1e-12)


def test_gradient_symmetricity_of_genlib_models():
    summed = EmbeddingMLP(P, [0, 1], embed_dim=8, hidden=(32,), combine="sum").double()
    torch.testing.assert_close(gradient_symmetricity(summed), torch.ones(2, dtype=F64), rtol=0, atol=1e-12)
    concat = gradient_symmetricity(EmbeddingMLP(P, [0, 1], embed_dim=8, hidden=(32,)))
    assert (concat.abs() < 0.5).all(), f"concatenated embeddings at initialization: {concat.tolist()}"
    transformer = gradient_symmetricity(Transformer(P, [0, 1], d_model=8, heads=2, d_mlp=16))
    assert ((transformer > -1) & (transformer <= 1)).all()


def test_gradient_symmetricity_is_per_member_and_leaves_the_model_alone():
    model = EmbeddingMLP(P, [0, 1, 2], embed_dim=8, hidden=(32,))
    model.train()
    before = gradient_symmetricity(model, samples=200, seed=3)
    assert model.training and all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        model.embed[1].normal_()
    after = gradient_symmetricity(model, samples=200, seed=3)
    assert after[1] != before[1]
    torch.testing.assert_close(after[[0, 2]], before[[0, 2]], rtol=0, atol=0)


@pytest.mark.parametrize("call, name", [
    (lambda: all_pair_logits(EmbeddingMLP(10, [0])), "p"),
    (lambda: embedding_spectrum(torch.zeros(P, 3)), "embedding"),
    (lambda: embedding_spectrum(torch.zeros(1, 8, 3)), "embedding"),
    (lambda: key_frequencies(torch.ones(2, 5), count=6), "count"),
    (lambda: key_frequencies(torch.ones(5), count=1), "spectrum"),
    (lambda: restricted_loss(torch.zeros(2, P, P), addition(), [1]), "logits"),
    (lambda: restricted_loss(wave_logits([1]), addition(), [6]), "frequencies"),
    (lambda: restricted_loss(wave_logits([1]), addition(), [0]), "frequencies"),
    (lambda: restricted_loss(wave_logits([1]), addition(), [1], inputs="held-out"), "inputs"),
    (lambda: excluded_loss(wave_logits([1]), addition(), [[1], [2], [3]]), "frequencies"),
    (lambda: excluded_loss(wave_logits([1]), addition(), 2.5), "frequencies"),
    (lambda: excluded_loss(wave_logits([1]), addition(members=3), [1]), "data"),
    (lambda: excluded_loss(wave_logits([1]), modular_arithmetic(7, "+", 0.5, [0, 1]), [1]), "data"),
    (lambda: excluded_loss(wave_logits([1]), "data", [1]), "data"),
    (lambda: gradient_symmetricity(EmbeddingMLP(P, [0]), samples=0), "samples"),
    (lambda: gradient_symmetricity(EmbeddingMLP(P, [0]), seed=-1), "seed"),
    (lambda: distance_irrelevance(torch.zeros(1, 6, 6, 6)), "p"),
])
def test_bad_arguments_are_refused(call, name):
    with pytest.raises(ValueError, match=name) as err:
        call()
    assert "got" in str(err.value)


def test_models_without_tokens_are_refused():
    from genlib.core.models import MLP

    with pytest.raises(ValueError, match="model"):
        gradient_symmetricity(MLP(3, (4,), 3, [0]))
