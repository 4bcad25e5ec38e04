"""What a network trained on modular addition computes, per ensemble member (grokking chapter).

Fourier multiplication (Nanda, Chan, Lieberum, Smith and Steinhardt 2023, "Progress measures for
grokking via mechanistic interpretability"): the token embedding concentrates on a few key
frequencies w_k = 2 pi k / p, and the logits are sums of cos(w_k (a + b - c)). Their progress
measures, as computed in the paper's code (mechanistic-interpretability-grokking/
progress-measures-paper: ``calculate_trig_loss`` and ``calculate_excluded_loss`` in
transformers.py, ``trig_loss`` and ``calculate_excluded_loss_2D_full`` in the analysis notebook):

- the logits of all p^2 inputs, each output c a function of (a, b), are projected on the unit
  directions cos(w_k (a + b)) and sin(w_k (a + b)) over the p^2 inputs, separately for each c;
- **restricted loss**: keep only the key frequencies' projections, add back each output's mean
  over the inputs (their "bias correction", the constant term), cross-entropy on all p^2 inputs
  (``mode='all'``, the default of ``calculate_trig_loss``). :func:`restricted_loss` can also score
  the held-out inputs alone (``inputs='test'``), which is what compares with the test loss;
- **excluded loss**: subtract the key frequencies' projections from the logits (no bias
  correction), cross-entropy on the training inputs (the paper's Section 5.1 and its code).

A network that memorizes has an excluded loss near its training loss and, when the key
frequencies are a small share of the p//2, a restricted loss near chance (log p); once the Fourier
circuit carries the training fit the excluded loss rises while the restricted loss falls. (A lookup
table of the true training answers is not free of frequencies: (a + b) mod p = c is itself a sum
of cos(w_k (a + b - c)) over all k, so it holds about the training share of every term, which at
small p is a visible fit.) The paper picks the key frequencies from the MLP neurons of the final
network (each neuron's best-explaining frequency); here :func:`key_frequencies` takes the top few
of a spectrum, the embedding's (:func:`embedding_spectrum`) or the logits' (:func:`logit_spectrum`),
or any explicit list.

Clock or pizza (Zhong, Liu, Tegmark and Andreas 2023, "The clock and the pizza"; their code,
fjzzq2002/pizza, code/eval-main.ipynb and eval-linear.ipynb): :func:`gradient_symmetricity` and
:func:`distance_irrelevance` tell the two algorithms apart.

Frequencies k run over 1..p//2 for odd p (the moduli of these papers are primes); the logits of
all inputs are (S, p, p, p) tensors indexed [member, a, b, c] (:func:`all_pair_logits`). The
Fourier terms are those of a + b: the measures are meant for ``op='+'``.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..core._validate import check_choice, check_int
from ..core.data import TaskData
from ..core.models import Ensemble
from ..core.train import evaluation_mode

SYMMETRICITY_BATCH = 1024  # triples per backward pass of gradient_symmetricity
RESTRICTED_INPUTS = ("all", "test", "train")  # the examples restricted_loss can score

Frequencies = Sequence[int] | Sequence[Sequence[int]] | torch.Tensor


def all_pair_logits(model: Ensemble) -> torch.Tensor:
    """(S, p, p, p) logits of every input (a, b), indexed [member, a, b, c], in evaluation mode."""
    p = _vocabulary(model)
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    pairs = torch.stack([a.reshape(-1), b.reshape(-1)], -1).expand(model.members, -1, -1)  # (S, p^2, 2)
    with evaluation_mode(model):
        return model(pairs.to(next(model.parameters()).device)).reshape(model.members, p, p, p)


def embedding_spectrum(embedding: torch.Tensor) -> torch.Tensor:
    """(S, p//2) power of an (S, p, d) token embedding in each frequency k = 1..p//2 (column k - 1):
    the squared coefficients of cos(w_k a) and sin(w_k a) in the orthonormal Fourier basis over the
    tokens, summed over the embedding dimensions (the squares of Nanda et al.'s Figure 3a norms).
    With the constant term (sum_a E_a)^2 / p it adds up to |E|_F^2."""
    if not isinstance(embedding, torch.Tensor) or embedding.dim() != 3 or not embedding.is_floating_point():
        shape = tuple(embedding.shape) if isinstance(embedding, torch.Tensor) else type(embedding).__name__
        raise ValueError(f"embedding must be a real (S, p, d) tensor; got {shape}")
    p = _check_odd("embedding.shape[1]", embedding.shape[1])
    cos, sin = _waves(p, embedding.device)  # (K, p) each, unit rows
    e = embedding.detach().to(torch.float64)
    return (torch.einsum("ka,sad->skd", cos, e).pow(2) + torch.einsum("ka,sad->skd", sin, e).pow(2)).sum(-1)


def logit_spectrum(logits: torch.Tensor) -> torch.Tensor:
    """(S, p//2) power of the logits along cos(w_k (a + b)) and sin(w_k (a + b)) for each frequency,
    summed over the outputs c: the part of each frequency that the restricted loss keeps."""
    p = _check_logits(logits)
    cos, sin = _diagonal_coefficients(logits)  # (S, K, p)
    return (cos.pow(2) + sin.pow(2)).sum(-1) / (p * p / 2)


def key_frequencies(spectrum: torch.Tensor, count: int = 5) -> torch.Tensor:
    """(S, count) frequencies k (1-based) with the most power in an (S, p//2) spectrum, strongest first."""
    if not isinstance(spectrum, torch.Tensor) or spectrum.dim() != 2 or not spectrum.is_floating_point():
        shape = tuple(spectrum.shape) if isinstance(spectrum, torch.Tensor) else type(spectrum).__name__
        raise ValueError(f"spectrum must be a real (S, p//2) tensor, one power per frequency; got {shape}")
    check_int("count", count, low=1, high=spectrum.shape[1])
    return spectrum.topk(count, dim=1).indices + 1


def restricted_loss(logits: torch.Tensor, data: TaskData, frequencies: Frequencies,
                    inputs: str = "all") -> torch.Tensor:
    """(S,) Nanda et al.'s restricted loss: cross-entropy of the logits with only the key
    frequencies' cos/sin(w_k (a + b)) terms and each output's mean kept, on the examples of ``data``
    that ``inputs`` names: "all" (every example, as the paper's code), "test" (each member's
    held-out examples, comparable with its test loss) or "train" (its training examples).

    logits: (S, p, p, p) from :func:`all_pair_logits`; data: the task (``modular_arithmetic`` with
    op '+'), whose labels ``data.y`` are scored (with ``corrupt_fraction > 0``, the corrupted
    training labels too); frequencies: a list shared by the members, or one list per member (e.g.
    the (S, n) tensor of :func:`key_frequencies`). The ablation itself always uses the logits of
    all p^2 inputs: only the scoring is restricted to ``inputs``.
    """
    check_choice("inputs", inputs, RESTRICTED_INPUTS)
    p = _check_logits(logits)
    keep = _frequency_mask(frequencies, logits.shape[0], p)
    x = _check_data(data, logits.shape[0], p)
    trig = _trig_part(logits, keep)
    ablated = trig + logits.to(torch.float64).mean((1, 2), keepdim=True)  # the constant term
    rows = {"all": lambda: torch.arange(x.shape[0]).expand(logits.shape[0], -1),
            "test": lambda: data.test_idx, "train": lambda: data.train_idx}[inputs]()
    return _cross_entropy(ablated, data, rows)


def excluded_loss(logits: torch.Tensor, data: TaskData, frequencies: Frequencies) -> torch.Tensor:
    """(S,) Nanda et al.'s excluded loss: cross-entropy on each member's training examples of the
    logits with the key frequencies' cos/sin(w_k (a + b)) terms removed. Arguments as for
    :func:`restricted_loss`; an empty list of frequencies gives the training loss."""
    p = _check_logits(logits)
    remove = _frequency_mask(frequencies, logits.shape[0], p)
    _check_data(data, logits.shape[0], p)
    return _cross_entropy(logits.to(torch.float64) - _trig_part(logits, remove), data, data.train_idx)


def gradient_symmetricity(model: Ensemble, samples: int = 100, seed: int = 0) -> torch.Tensor:
    """(S,) Zhong et al.'s gradient symmetricity: the mean over random triples (a, b, c) of the
    cosine between the gradients of logit c with respect to the embedding vectors of a and of b.

    Pizza: the network reads the operands through E_a + E_b, so the two gradients agree (near 1;
    their pizza transformer, "Model A", has 0.994). Clock: the operands' rotations are multiplied,
    and the gradients differ (their clock, "Model B", is reported at 0.33). Triples are drawn
    uniformly without replacement from all p^3 (c is any output, not the answer); ``samples``
    triples (the paper's code uses 100), the same for every member. The two vectors are
    differentiated separately even when a = b (each is given its own copy of its row). A triple
    where a gradient is exactly zero (dead ReLUs) has no cosine and is left out of the mean.
    EmbeddingMLP (either ``combine``; with 'sum' the vectors are ``embed_a[a]`` and
    ``embed_b[b]``) and Transformer; first-order gradients only.
    """
    p = _vocabulary(model)
    check_int("samples", samples, low=1, high=p**3)
    check_int("seed", seed, low=0)
    names = _embedding_tables(model)
    triples = torch.randperm(p**3, generator=torch.Generator().manual_seed(seed))[:samples]
    a, b, c = triples // (p * p), triples // p % p, triples % p
    params = {name: t.detach() for name, t in model.named_parameters()}
    buffers = dict(model.named_buffers())
    total = torch.zeros(model.members, dtype=torch.float64)
    count = torch.zeros(model.members, dtype=torch.float64)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, samples, SYMMETRICITY_BATCH):
            part = slice(start, start + SYMMETRICITY_BATCH)
            cosine = _gradient_cosines(model, params, buffers, names, a[part], b[part], c[part])  # (S, B)
            total += torch.nan_to_num(cosine).sum(1).cpu()
            count += cosine.isfinite().sum(1).cpu()
    finally:
        model.train(was_training)
    return total / count


def distance_irrelevance(logits: torch.Tensor) -> torch.Tensor:
    """(S,) Zhong et al.'s distance irrelevance: how little the correct logit depends on a - b.

    The correct logits L[a, b, (a + b) mod p] are laid out by (a + b, a - b) mod p; the measure is
    the mean over a - b of their standard deviation over a + b, divided by their overall standard
    deviation. Clock: the correct logit does not depend on the distance a - b, so it is near 1
    (their "Model B" is reported at 0.85). Pizza: the correct logit scales with |cos(w_k (a - b)
    / 2)|, so it is small (their pizza "Model A": 0.17). Reported bands: pizza 0 to 0.4, clock 0.4
    to 1. As in eval-main.ipynb (the correct logit; the training script's logged value used the
    largest wrong logit instead). Population standard deviations.
    """
    p = _check_logits(logits)
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    correct = logits.detach().to(torch.float64)[:, a, b, (a + b) % p].reshape(logits.shape[0], -1)  # (S, p^2)
    table = torch.empty_like(correct)
    table[:, ((a + b) % p * p + (a - b) % p).reshape(-1)] = correct  # [s, (a + b) p + (a - b)]
    table = table.reshape(-1, p, p)
    within = table.std(1, correction=0).mean(1)  # over a + b, for each a - b
    return within / table.reshape(len(table), -1).std(1, correction=0)


def _gradient_cosines(model, params, buffers, names, a, b, c) -> torch.Tensor:
    """(S, B) cosines between d logit_c / d E_a and d logit_c / d E_b for the B triples.

    Every triple gets two new rows appended to the embedding table(s), copies of E_a and E_b, and
    reads them as tokens V + 2i and V + 2i + 1: one backward pass gives each vector's own gradient.
    """
    first, second = names
    vocab = params[first].shape[1]
    rows = torch.stack([a, b], 1).reshape(-1).to(params[first].device)  # (2B,) the rows to copy
    tables = {name: torch.cat([params[name], params[name][:, rows]], 1).requires_grad_() for name in set(names)}
    ids = vocab + 2 * torch.arange(len(a), device=rows.device)
    x = torch.stack([ids, ids + 1], -1).expand(model.members, -1, -1)  # (S, B, 2)
    with torch.enable_grad():
        out = functional_call(model, params | tables | buffers, (x,))  # (S, B, p)
        picked = out.gather(-1, c.to(out.device).view(1, -1, 1).expand(model.members, -1, 1)).sum()
        grads = dict(zip(tables, torch.autograd.grad(picked, list(tables.values()))))
    grad_a = grads[first][:, vocab::2].to(torch.float64)  # (S, B, d)
    grad_b = grads[second][:, vocab + 1 :: 2].to(torch.float64)
    norms = grad_a.norm(dim=-1) * grad_b.norm(dim=-1)
    return torch.where(norms > 0, (grad_a * grad_b).sum(-1) / norms, torch.nan)


def _embedding_tables(model: Ensemble) -> tuple[str, str]:
    """Names of the parameters that hold the embeddings of the first and of the second token."""
    names = dict(model.named_parameters())
    if getattr(model, "combine", None) == "sum" and {"embed_a", "embed_b"} <= names.keys():
        return "embed_a", "embed_b"
    if "embed" in names and names["embed"].dim() == 3:
        return "embed", "embed"
    raise ValueError(f"model must embed its tokens in an (S, vocab, d) table 'embed' (EmbeddingMLP, Transformer); "
                     f"got {type(model).__name__}")


def _vocabulary(model: Ensemble) -> int:
    if not isinstance(model, Ensemble) or model.vocab is None:
        raise ValueError(f"model must be a genlib token model (EmbeddingMLP, Transformer); got {type(model).__name__}")
    if model.out_dim != model.vocab:
        raise ValueError(f"model must have one logit per token ({model.vocab}); got {model.out_dim} outputs")
    return _check_odd("the model's vocabulary p", model.vocab)


def _check_odd(name: str, p: int) -> int:
    if p < 3 or p % 2 == 0:
        raise ValueError(f"{name} must be odd and >= 3 (frequencies 1..p//2 then span the tokens); got {p!r}")
    return p


def _check_logits(logits) -> int:
    ok = isinstance(logits, torch.Tensor) and logits.is_floating_point() and logits.dim() == 4
    if not ok or not logits.shape[1] == logits.shape[2] == logits.shape[3]:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a real (S, p, p, p) tensor indexed [member, a, b, c]; got {shape}")
    return _check_odd("p (logits.shape[1])", logits.shape[1])


def _check_data(data, members: int, p: int) -> torch.Tensor:
    """The (N, 2) token pairs of ``data``, checked against logits of ``members`` members and p tokens."""
    if not isinstance(data, TaskData):
        raise ValueError(f"data must be a genlib.core.data.TaskData (modular_arithmetic); got {type(data).__name__}")
    x = data.x
    if data.per_member_inputs or x.dim() != 2 or x.shape[1] != 2 or x.is_floating_point():
        raise ValueError(f"data must hold token pairs x (N, 2) shared by the members; got x {x.dtype} {tuple(x.shape)}")
    if int(x.min()) < 0 or int(x.max()) >= p or data.num_classes != p:
        raise ValueError(f"data must be a task on p = {p} tokens and classes; got ids up to {int(x.max())} and "
                         f"num_classes {data.num_classes}")
    if data.members != members:
        raise ValueError(f"data must have one label row per member of the logits ({members}); got {data.members}")
    return x


def _frequency_mask(frequencies, members: int, p: int) -> torch.Tensor:
    """(S, p//2) booleans: which frequencies each member keeps (or removes)."""
    half = p // 2
    if isinstance(frequencies, torch.Tensor):
        frequencies = frequencies.tolist() if frequencies.dim() else [int(frequencies)]
    try:
        rows = list(frequencies)
        if all(isinstance(r, (list, tuple)) for r in rows) and rows:
            rows = [list(r) for r in rows]
        else:
            rows = [list(rows)] * members
    except TypeError:
        raise ValueError(f"frequencies must be a list of frequencies or one list per member; got {frequencies!r}") \
            from None
    if len(rows) != members:
        raise ValueError(f"frequencies must give one list per member ({members}) or one shared list; got {len(rows)}")
    mask = torch.zeros(members, half, dtype=torch.bool)
    for s, row in enumerate(rows):
        for k in row:
            k = int(k) if isinstance(k, numbers.Integral) and not isinstance(k, bool) else k  # numpy ints too
            check_int("frequencies", k, low=1, high=half)
            mask[s, k - 1] = True
    return mask


def _waves(p: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(p//2, p) unit cos(w_k t) and sin(w_k t) rows, k = 1..p//2, in float64."""
    k = torch.arange(1, p // 2 + 1, dtype=torch.float64, device=device)[:, None]
    angle = 2 * math.pi / p * k * torch.arange(p, dtype=torch.float64, device=device)
    return torch.cos(angle) * math.sqrt(2 / p), torch.sin(angle) * math.sqrt(2 / p)


def _diagonal_coefficients(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, K, p) inner products of each output's logits with cos(w_k (a + b)) and sin(w_k (a + b))
    over the p^2 inputs: only the sums along (a + b) mod p matter."""
    members, p = logits.shape[:2]
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    sums = torch.zeros(members, p, p, dtype=torch.float64, device=logits.device)  # [s, (a + b) mod p, c]
    flat = logits.detach().to(torch.float64).reshape(members, p * p, p)
    sums.index_add_(1, ((a + b) % p).reshape(-1).to(logits.device), flat)
    cos, sin = _waves(p, logits.device)
    scale = math.sqrt(p / 2)  # back from unit rows to cos(w_k m) itself
    return scale * torch.einsum("km,smc->skc", cos, sums), scale * torch.einsum("km,smc->skc", sin, sums)


def _trig_part(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(S, p, p, p) the logits' projection on cos/sin(w_k (a + b)) for the frequencies in mask (S, K)."""
    members, p = logits.shape[:2]
    cos_coef, sin_coef = _diagonal_coefficients(logits)  # (S, K, p)
    keep = mask.to(logits.device, torch.float64)[:, :, None]
    cos, sin = _waves(p, logits.device)
    # unit direction over p^2 inputs: cos(w_k m) / (p / sqrt 2); projection = direction * <direction, L>
    per_sum = (torch.einsum("km,skc->smc", cos, keep * cos_coef) + torch.einsum("km,skc->smc", sin, keep * sin_coef))
    per_sum = per_sum * math.sqrt(p / 2) / (p * p / 2)  # (S, (a + b) mod p, c)
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    return per_sum[:, (a + b) % p]  # (S, p, p, p)


def _cross_entropy(logits: torch.Tensor, data: TaskData, rows: torch.Tensor) -> torch.Tensor:
    """(S,) mean cross-entropy over the examples ``rows`` (S, n) of data, logits (S, p, p, p) float64."""
    members, p = logits.shape[:2]
    x = data.x.to(logits.device)
    position = x[:, 0] * p + x[:, 1]  # (N,) where each example sits among the p^2 inputs
    rows = rows.to(logits.device)
    chosen = logits.reshape(members, p * p, p).gather(1, position[rows][..., None].expand(-1, -1, p))  # (S, n, p)
    labels = data.y.to(logits.device).gather(1, rows)
    return -F.log_softmax(chosen, -1).gather(-1, labels[..., None]).squeeze(-1).mean(1)
