"""Experiments of the distribution-shift chapter (book/distribution_shift.ipynb): declared setups plus
one build (or compute) each. Members of every run are (condition, seed) pairs, each seed with its
own split of the digits.

- :func:`spurious_digits`: the digits as a binary task (digit >= 5) with a cue pixel that agrees with
  the label in a chosen share of training images: four groups (label x cue). The cue is the simplicity
  chapter's class-coding pixel (:func:`genlib.core.synthetic.cued_digits`), for two classes.
- :class:`GroupShiftSetup`: ERM, group reweighting and group DRO as the cue's share grows (members:
  share x method x seed); last-layer retraining of every member on a small group-balanced set.
- :class:`CueBrightnessSweep`: one :class:`GroupShiftSetup` per cue brightness (section 2).
- :class:`LineSetup`: many models (widths x weight decays x seeds, each read at several training
  steps) on a natural-like shift (noise and one-pixel translations) or on the spurious shift.
- :class:`AdversarialSetup`: standard and adversarial training; clean and PGD accuracy per epsilon.
- :class:`TiltSetup`: L2-penalized logistic regression on two digit classes as the penalty falls:
  test error and distance to the boundary (boundary tilting).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..core._validate import check_float, check_int, check_seeds
from ..core.data import TaskData, digit_inputs, load_digits
from ..core.history import History
from ..core.models import MLP
from ..core.train import TrainConfig
from ..measures.robustness import (
    GROUP_METHODS,
    AdversarialObjective,
    GroupObjective,
    check_share,
    fgsm,
    group_accuracies,
    linear_margin_distance,
    readout_features,
    refit_readout,
    robust_accuracy,
)
from ..running.experiment import Bounds, ComputedExperiment, TrainedExperiment
from ..running.grid import Grid

CUE_PIXELS = (0, 7)  # the cue of class a brightens pixel CUE_PIXELS[a]: the two top corners, blank in the digits
GROUPS = 4  # group id = 2 * label + cue
SHIFTS = ("natural", "spurious")


def _binary_digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(raw pixels (N, 64) in [0, 1], model inputs (N, 64) as genlib's digits, labels: digit >= 5)."""
    pixels, labels = load_digits()
    return pixels, digit_inputs("real", pixels), (labels >= 5).long()


def spurious_digits(
    conditions: Sequence[tuple[float, int]],
    n_train: int = 1000,
    cue_strength: float = 6.0,
    n_balanced: int = 25,
) -> tuple[TaskData, torch.Tensor]:
    """The digits as a binary task (label: digit >= 5) with a cue, one member per (share, seed).

    Each image gets a cue a in {0, 1}: pixel ``CUE_PIXELS[a]`` brightened by ``cue_strength`` (the
    simplicity chapter's class-coding pixel, for two classes). In the training images the cue agrees
    with the label (a = label) with probability ``share``, else it is the other one. Groups are
    (label, cue): id 2 * label + a; the images whose cue agrees are the majority groups.

    Sets per member: 'train'; 'test' (the held-out images with the agreeing cue); 'conflict' (the
    same images with the other cue); 'balanced' (``n_balanced`` further held-out images per group,
    each image once: a small group-balanced set for last-layer retraining). Returns the TaskData and
    the (S, N) group id of every row.
    """
    check_int("n_train", n_train, low=2, high=1500)
    check_int("n_balanced", n_balanced, low=1, high=60)
    check_float("cue_strength", cue_strength, 0.0)
    if not conditions:
        raise ValueError("conditions must list at least one (share, seed) pair; got []")
    for share, _ in conditions:
        check_share("share", share)
    check_seeds([seed for _, seed in conditions])
    _, x, y = _binary_digits()

    def cued(idx: torch.Tensor, cue: torch.Tensor) -> torch.Tensor:
        images = x[idx].clone()
        images[torch.arange(len(idx)), torch.tensor(CUE_PIXELS)[cue]] += cue_strength
        return images

    blocks, groups = [], []
    for share, seed in conditions:
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(y), generator=g)
        train, rest = perm[:n_train], perm[n_train:]
        per_label = [rest[y[rest] == label][: 2 * n_balanced] for label in (0, 1)]  # agree, then conflict
        balanced = torch.cat(per_label)
        test = rest[~torch.isin(rest, balanced)]
        cue_train = torch.where(torch.rand(n_train, generator=g) < share, y[train], 1 - y[train])
        half = torch.arange(2 * n_balanced) < n_balanced
        cue_balanced = torch.cat([torch.where(half, label, 1 - label) for label in (0, 1)])
        sets = {
            "train": (cued(train, cue_train), y[train], cue_train),
            "test": (cued(test, y[test]), y[test], y[test]),
            "conflict": (cued(test, 1 - y[test]), y[test], 1 - y[test]),
            "balanced": (cued(balanced, cue_balanced), y[balanced], cue_balanced),
        }
        blocks.append({name: (images, labels) for name, (images, labels, _) in sets.items()})
        groups.append(torch.cat([2 * labels + cue for _, labels, cue in sets.values()]))
    data = TaskData.from_blocks(blocks, 2, f"digits >= 5 with a cue of strength {cue_strength}")
    return data, torch.stack(groups)


def shifted_digits(pixels: torch.Tensor, noise: float, g: torch.Generator) -> torch.Tensor:
    """A natural-like shift of raw digits (N, 64) in [0, 1]: each image moved by one pixel in a random
    direction (up, down, left or right; blank pixels enter), plus Gaussian pixel noise of std ``noise``,
    clipped to [0, 1]; then normalized as the unshifted digits (:func:`digit_inputs`'s mean image)."""
    check_float("noise", noise, 0.0)
    images = pixels.view(-1, 8, 8)
    moved = torch.zeros_like(images)
    direction = torch.randint(0, 4, (len(images),), generator=g)
    moved[direction == 0, :-1] = images[direction == 0, 1:]
    moved[direction == 1, 1:] = images[direction == 1, :-1]
    moved[direction == 2, :, :-1] = images[direction == 2, :, 1:]
    moved[direction == 3, :, 1:] = images[direction == 3, :, :-1]
    noisy = (moved.view(-1, 64) + noise * torch.randn(len(images), 64, generator=g)).clamp(0, 1)
    centred = noisy - pixels.mean(0)
    return centred / centred.norm(dim=1, keepdim=True) * 8.0


def _test_group_accuracies(model, data: TaskData, groups: torch.Tensor) -> torch.Tensor:
    """(S, 4) accuracy of every member in each group on its test images (agreeing and conflicting cue)."""
    idx = torch.cat([data.test_idx, data.subsets["conflict"]], 1)
    x, labels = data.batch(idx)
    rows = torch.arange(len(idx))[:, None]
    with torch.no_grad():
        outputs = model(x.to(next(model.parameters())))
    return group_accuracies(outputs.cpu(), labels.cpu(), groups[rows, idx.cpu()], GROUPS)


def _refit_accuracies(model, data: TaskData, groups: torch.Tensor, l2: float) -> np.ndarray:
    """(S, 4) test group accuracies of every member with its readout refit on its balanced set."""
    device = next(model.parameters())
    balanced, test = data.subsets["balanced"], torch.cat([data.test_idx, data.subsets["conflict"]], 1)
    xb, yb = data.batch(balanced)
    w, b = refit_readout(readout_features(model, xb.to(device)).cpu(), yb.cpu(), 2, l2=l2)
    xt, yt = data.batch(test)
    outputs = torch.baddbmm(b, readout_features(model, xt.to(device)).cpu(), w)
    rows = torch.arange(len(test))[:, None]
    return group_accuracies(outputs, yt.cpu(), groups[rows, test.cpu()], GROUPS).float().numpy()


def group_balanced_training(data: TaskData, groups: torch.Tensor, balance: Sequence[bool],
                            seeds: Sequence[int]) -> TaskData:
    """``data`` with the training rows of each member s where ``balance[s]`` resampled, as many as
    before, with replacement and each group equally likely (the group-balanced sampling under which
    Sagawa et al. 2020 train group DRO and reweighting): the same images, rare groups repeated. The
    members' other sets are unchanged."""
    if len(balance) != len(data.train_idx) or len(seeds) != len(balance):
        raise ValueError(f"balance and seeds must give one value per member ({len(data.train_idx)}); got "
                         f"{len(balance)} and {len(seeds)}")
    train_idx = data.train_idx.clone()
    n = train_idx.shape[1]
    for s, (resample, seed) in enumerate(zip(balance, seeds)):
        if resample:
            g = groups[s, train_idx[s]]
            weight = 1.0 / torch.bincount(g, minlength=GROUPS).double()[g]
            drawn = torch.multinomial(weight, n, replacement=True, generator=torch.Generator().manual_seed(seed))
            train_idx[s] = train_idx[s][drawn]
    return dataclasses.replace(data, train_idx=train_idx)


@dataclass(frozen=True)
class GroupShiftSetup(TrainedExperiment):
    """Sections 1 and 2: an MLP 64-``hidden``-2 trained by SGD with momentum on :func:`spurious_digits`,
    one member per (share, method, seed); methods "erm", "reweight", "dro" (:class:`GroupObjective`), the
    same steps and batch size for each; "reweight" and "dro" draw their batches group-balanced from the
    same training images (:func:`group_balanced_training`), as Sagawa et al. do. Metrics "group/<g>"
    (test accuracy in group g = 2 * label + cue) at every evaluation. Arrays "refit" (S, 4): test group
    accuracies after last-layer retraining on the member's balanced set; "refit_init" (S, 4): the same
    refit on the features of the untrained network (the control: what random features of the digits
    allow)."""

    FULL = dict(n_train=1200, steps=2000, seeds=tuple(range(5)))
    AXES = {"share": "shares", "method": "methods"}
    CHOICES = {"methods": GROUP_METHODS}
    BOUNDS = {"shares": Bounds(0.0, 1.0), "cue_strength": Bounds(0.0), "dro_step": Bounds(0.0),
              "refit_l2": Bounds(0.0)}

    shares: tuple[float, ...] = (0.5, 0.8, 0.95, 0.99)
    methods: tuple[str, ...] = GROUP_METHODS
    cue_strength: float = 6.0
    n_train: int = 1000
    n_balanced: int = 25
    hidden: int = 64
    steps: int = 500
    lr: float = 0.05
    dro_step: float = 0.01
    refit_l2: float = 1e-2
    eval_log_points: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)

    def _data(self) -> tuple[TaskData, torch.Tensor]:
        members = self.members()
        return spurious_digits([(m["share"], m["seed"]) for m in members], self.n_train, self.cue_strength,
                               self.n_balanced)

    def build(self):
        data, groups = self._data()
        data = group_balanced_training(data, groups, [m != "erm" for m in self.member_values("method")],
                                       self.member_values("seed"))
        config = TrainConfig(steps=self.steps, lr=self.lr, optimizer="sgd", momentum=0.9, batch_size=64,
                             eval_every=self.steps, eval_log_points=self.eval_log_points)
        return data, MLP(64, (self.hidden,), 2, self.member_values("seed")), config

    def penalty(self, data, model):
        _, groups = self._data()
        return GroupObjective(groups, data.y, GROUPS, self.member_values("method"), step_size=self.dro_step)

    def extra_metrics(self, data, model):
        _, groups = self._data()
        return {"group": lambda m: dict(enumerate(_test_group_accuracies(m, data, groups).T.float()))}

    def before_training(self, data, model):
        _, groups = self._data()
        return _refit_accuracies(model, data, groups, self.refit_l2)

    def after_training(self, history: History, run) -> History:
        _, groups = self._data()
        history.arrays["refit"] = _refit_accuracies(run.model, run.data, groups, self.refit_l2)
        history.arrays["refit_init"] = run.before
        return history


def average_accuracy(history: History, shares: Sequence[float] | None = None) -> np.ndarray:
    """(T, S) accuracy on the training distribution, from the group metrics: the agreeing groups weighted
    by each member's share, the conflicting ones by 1 - share (Sagawa et al.'s average accuracy)."""
    share = np.array(history.labels("share") if shares is None else shares, dtype=float)
    agree = (history["group/0"] + history["group/3"]) / 2
    conflict = (history["group/1"] + history["group/2"]) / 2
    return share * agree + (1 - share) * conflict


def worst_group(history: History) -> np.ndarray:
    """(T, S) the lowest of the four test group accuracies."""
    return np.min([history[f"group/{g}"] for g in range(GROUPS)], axis=0)


@dataclass(frozen=True)
class CueBrightnessSweep(Grid):
    """Section 2: ERM at shares 0.99 and 1 (no conflicting training image), one GroupShiftSetup per cue
    brightness; last-layer retraining read from each."""

    POINT = GroupShiftSetup
    POINT_QUICK = dict(shares=(0.99, 1.0), methods=("erm",))
    POINT_FULL = dict(shares=(0.99, 1.0), methods=("erm",))
    FULL = dict(cue_strengths=(0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0))

    cue_strengths: tuple[float, ...] = (1.0, 4.0, 16.0)

    def setups(self) -> dict[float, GroupShiftSetup]:
        """{brightness: its GroupShiftSetup}."""
        return self.vary("cue_strength", self.cue_strengths)


@dataclass(frozen=True)
class LineSetup(TrainedExperiment):
    """Section 3: many models in one ensemble, MLP 64-``max(widths)``-C with member widths x weight
    decays x seeds (each width a masked slice of the layer), AdamW, evaluated at log-spaced steps:
    every (member, step) is a model. ``shift="natural"``: 10 digit classes, subset 'shifted' = the test
    images moved by a pixel and noised (:func:`shifted_digits`); ``shift="spurious"``: the binary cue
    task of :func:`spurious_digits` at ``share``, its 'conflict' subset the shifted test set."""

    FULL = dict(widths=(4, 8, 16, 32, 64, 128, 256), weight_decays=(0.0, 1e-3, 1e-2, 1e-1), steps=2000,
                seeds=tuple(range(5)))
    AXES = {"width": "widths", "weight_decay": "weight_decays"}
    CHOICES = {"shift": SHIFTS}
    BOUNDS = {"share": Bounds(0.0, 1.0), "noise": Bounds(0.0), "weight_decays": Bounds(0.0),
              "widths": Bounds(1.0)}

    shift: str = "natural"
    widths: tuple[int, ...] = (4, 16, 64)
    weight_decays: tuple[float, ...] = (0.0, 0.1)
    n_train: int = 500
    noise: float = 0.1
    share: float = 0.99
    cue_strength: float = 4.0
    steps: int = 400
    lr: float = 3e-3
    eval_log_points: int = 8
    seeds: tuple[int, ...] = (0, 1, 2)

    def build(self):
        seeds = self.member_values("seed")
        if self.shift == "spurious":
            data, _ = spurious_digits([(self.share, s) for s in seeds], self.n_train, self.cue_strength)
            classes = 2
        else:
            pixels, labels = load_digits()
            x = digit_inputs("real", pixels)
            blocks = []
            for seed in seeds:
                g = torch.Generator().manual_seed(seed)
                perm = torch.randperm(len(labels), generator=g)
                train, test = perm[: self.n_train], perm[self.n_train :]
                blocks.append({"train": (x[train], labels[train]), "test": (x[test], labels[test]),
                               "shifted": (shifted_digits(pixels[test], self.noise, g), labels[test])})
            data, classes = TaskData.from_blocks(blocks, 10, "digits and their shifted copies"), 10
        config = TrainConfig(steps=self.steps, lr=self.lr, weight_decay=self.member_values("weight_decay"),
                             batch_size=100, eval_every=self.steps, eval_log_points=self.eval_log_points)
        widths = self.member_values("width")
        return data, MLP(64, (max(widths),), classes, seeds, member_widths=widths), config


@dataclass(frozen=True)
class AdversarialSetup(TrainedExperiment):
    """Section 4: MLP 64-``hidden``-10 on the digits (AdamW), trained on clean images (train epsilon 0)
    or adversarially (:class:`AdversarialObjective`: the clean loss plus the loss at a ``train_steps``-step
    PGD attack of radius train epsilon); the same steps and batches. Arrays "robust" (S, E): test accuracy
    under a ``attack_steps``-step PGD attack at each of ``epsilons`` (0: clean), and "fgsm" (S, E)."""

    FULL = dict(steps=3000, hidden=256, seeds=tuple(range(5)), train_epsilons=(0.0, 0.1, 0.3, 0.6, 1.0),
                epsilons=(0.0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0), train_steps=7, attack_steps=40)
    AXES = {"train_epsilon": "train_epsilons"}
    BOUNDS = {"train_epsilons": Bounds(0.0), "epsilons": Bounds(0.0)}

    train_epsilons: tuple[float, ...] = (0.0, 0.3, 1.0)
    epsilons: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)
    n_train: int = 1000
    hidden: int = 128
    steps: int = 400
    lr: float = 3e-3
    train_steps: int = 3
    attack_steps: int = 10
    seeds: tuple[int, ...] = (0, 1, 2)

    def build(self):
        seeds = self.member_values("seed")
        pixels, labels = load_digits()
        x = digit_inputs("real", pixels)
        blocks = []
        for seed in seeds:
            perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
            train, test = perm[: self.n_train], perm[self.n_train :]
            blocks.append({"train": (x[train], labels[train]), "test": (x[test], labels[test])})
        config = TrainConfig(steps=self.steps, lr=self.lr, batch_size=100, eval_every=self.steps, eval_log_points=0)
        return TaskData.from_blocks(blocks, 10, "digits"), MLP(64, (self.hidden,), 10, seeds), config

    def penalty(self, data, model):
        return AdversarialObjective(model, data, self.member_values("train_epsilon"), self.train_steps)

    def after_training(self, history: History, run) -> History:
        x, labels = run.data.batch(run.data.test_idx)
        x, labels = x.to(next(run.model.parameters())), labels.to(x.device)
        history.arrays["robust"] = torch.stack(
            [robust_accuracy(run.model, x, labels, e, self.attack_steps) for e in self.epsilons], 1).cpu().numpy()
        run.model.eval()
        fast = []
        for e in self.epsilons:
            adv = fgsm(run.model, x, labels, e)
            with torch.no_grad():
                fast.append((run.model(adv).argmax(-1) == labels).float().mean(-1))
        history.arrays["fgsm"] = torch.stack(fast, 1).cpu().numpy()
        return history


@dataclass(frozen=True)
class TiltSetup(ComputedExperiment):
    """Section 4, boundary tilting (Tanay and Griffin 2016): L2-penalized logistic regression of digit
    ``classes[1]`` against ``classes[0]`` on ``n_train`` images per seed, solved by L-BFGS, for each
    penalty. Axis: the penalty; metrics per seed: "test_error", "l2_distance" and "linf_distance" (the
    median over correctly classified test images of the exact distance to the boundary)."""

    FULL = dict(l2s=tuple(10.0 ** (-k / 2) for k in range(15)), iterations=3000, seeds=tuple(range(5)))
    BOUNDS = {"l2s": Bounds(0.0, low_open=True)}

    classes: tuple[int, int] = (3, 8)
    l2s: tuple[float, ...] = (1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-5, 1e-6)
    n_train: int = 150
    iterations: int = 1000
    seeds: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        super().__post_init__()
        for c in self.classes:
            check_int("classes", c, low=0, high=9)
        if len(self.classes) != 2 or self.classes[0] == self.classes[1]:
            raise ValueError(f"classes must be two different digits; got {self.classes!r}")

    def compute(self) -> History:
        pixels, labels = load_digits()
        x = digit_inputs("real", pixels)
        chosen = torch.isin(labels, torch.tensor(self.classes))
        x, y = x[chosen], (labels[chosen] == self.classes[1]).long()
        metrics = {"test_error": [], "l2_distance": [], "linf_distance": []}
        for l2 in self.l2s:
            row = {k: [] for k in metrics}
            for seed in self.seeds:
                perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
                train, test = perm[: self.n_train], perm[self.n_train :]
                w, b = refit_readout(x[train][None], y[train][None], 2, l2=l2, iterations=self.iterations,
                                     standardize=False)
                w_diff, b_diff = (w[..., 1] - w[..., 0]).double(), (b[:, 0, 1] - b[:, 0, 0]).double()
                xt = x[test][None].double()
                right = ((torch.einsum("sbd,sd->sb", xt, w_diff) + b_diff[:, None] > 0).long() == y[test])[0]
                distance = linear_margin_distance(w_diff, b_diff, xt)
                row["test_error"].append(1 - right.double().mean().item())
                row["l2_distance"].append(distance["l2"][0, right].median().item())
                row["linf_distance"].append(distance["linf"][0, right].median().item())
            for k in metrics:
                metrics[k].append(row[k])
        return History(np.array(self.l2s), {k: np.array(v) for k, v in metrics.items()},
                       [{"seed": s} for s in self.seeds], axis_name="L2 penalty")
