"""Experiments of the end-of-training chapter (book/end_of_training.ipynb): declared setups plus one
build each, all on scikit-learn's digits with ReLU MLPs trained by SGD with momentum (:class:`DigitsRecipe`).

- :class:`NeuralCollapseSetup`: far past zero training error, with batch norm and a step schedule;
  members are weight decay x seeds; the neural-collapse measures at every evaluation, NC1 at every layer.
- :class:`SmoothingSetup`: label smoothing eps x seeds; every member's logits and NC1 kept.
- :class:`DistillationSetup`: students trained on the soft predictions of a SmoothingSetup's
  networks (its requirement "teachers") at a temperature; members are (teacher's eps, temperature) x seeds.
  Both share :class:`SmoothingRecipe`.
- :class:`ScoreSetup`: EL2N and GraNd a few epochs into training, on one fixed training set, one
  score per example and initialization. :class:`DietSetup`: training on the examples kept by the
  scores (its requirement "scores": hardest, easiest, random, hardest after skipping the very
  hardest); one per kept fraction. Both share :class:`ScoreRecipe`.
- :class:`RandomPruningSetup`: pruned at random before training, members sparsity x seeds.
  :class:`MagnitudePruningSetup`: iterative magnitude pruning with rewinding
  (:func:`genlib.measures.pruning.iterative_magnitude_pruning`), one round per sparsity.
  :class:`TicketControlSetup`: the two controls of a ticket (its requirement "tickets", a
  MagnitudePruningSetup): its mask on new random weights, and a random mask on its rewound weights.
  All three keep the readout dense by default (``prune_readout``).

The recipes hold fields and parts of a build and are neither trained nor computed: each concrete
setup adds its kind, :class:`~genlib.running.experiment.TrainedExperiment` or (magnitude pruning,
several trainings in a row) :class:`~genlib.running.experiment.ComputedExperiment`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from ..core._validate import check_choice, check_int
from ..core.data import TaskData, digits
from ..core.history import History
from ..core.losses import LOSSES
from ..core.models import MLP
from ..core.train import TrainConfig, predict
from ..measures.collapse import model_collapse, nc1_by_layer
from ..measures.pruning import disconnected, iterative_magnitude_pruning, random_masks
from ..measures.scores import el2n, grand
from ..running.experiment import Bounds, ComputedExperiment, Experiment, TrainedExperiment, TrainedRun

STUDENT_SEED_OFFSET = 1000  # students start from other initial weights than their teachers
DIET_SEED_OFFSET = 1000  # networks trained on a diet start from other initial weights than those that scored it
STRATEGIES = ("hardest", "easiest", "random", "skip hardest")
SCORES = ("el2n", "grand")
SHARE = Bounds(0.0, 1.0, high_open=True)  # a share of the labels, of the weights, ...


@dataclass(frozen=True)
class DigitsRecipe(Experiment):
    """What every setup of the chapter shares: the digits (``n_train`` training images per seed, the
    rest for testing), a ReLU MLP, SGD with momentum 0.9 on minibatches, and optionally the step
    schedule of Papyan et al. 2020 (the step size divided by 10 after a third and two thirds)."""

    n_train: int = 1000
    hidden: tuple[int, ...] = (128, 128)
    batch_norm: bool = False
    lr: float = 0.05
    weight_decay: float = 0.0
    batch_size: int = 128
    steps: int = 600
    schedule: bool = False
    eval_every: int = 100
    eval_log_points: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)

    def network(self, seeds: list[int], **kw) -> MLP:
        return MLP(64, self.hidden, 10, seeds, batch_norm=self.batch_norm, **kw)

    def config(self, **kw) -> TrainConfig:
        milestones = tuple(m for m in (self.steps // 3, 2 * self.steps // 3) if m >= 1) if self.schedule else ()
        settings = dict(steps=self.steps, lr=self.lr, weight_decay=self.weight_decay, optimizer="sgd", momentum=0.9,
                        batch_size=self.batch_size, lr_milestones=milestones, eval_every=self.eval_every,
                        eval_log_points=self.eval_log_points)
        return TrainConfig(**(settings | kw))


@dataclass(frozen=True)
class NeuralCollapseSetup(DigitsRecipe, TrainedExperiment):
    """Papyan, Han and Donoho 2020: train far past zero training error and watch the last layer.

    With ``loss="mse"`` and ``mse_sum`` (the default), the squared error is summed over the outputs,
    as in Han et al. 2022's definition (which has a factor 1/2, so this step is their 2x; their
    released code averages over the outputs, with a step size tuned per loss), not averaged over
    them as genlib's "mse" is: that run is SGD on genlib's
    mean with the step size times K = 10 outputs and the weight decay divided by K (the same updates,
    momentum included, since SGD's decay is added to the gradient), so members keep their weight
    decay label. ``mse_sum=False`` trains genlib's mean at the step size as given."""

    FULL = dict(n_train=1300, hidden=(256, 256, 256), steps=7200, weight_decays=(1e-2, 5e-3, 1e-3, 5e-4),
                seeds=tuple(range(5)), eval_every=200)
    AXES = {"weight_decay": "weight_decays"}
    CHOICES = {"loss": LOSSES}

    hidden: tuple[int, ...] = (128, 128, 128)
    batch_norm: bool = True
    steps: int = 1800
    schedule: bool = True
    weight_decays: tuple[float, ...] = (5e-3, 5e-4)
    loss: str = "cross_entropy"
    mse_sum: bool = True
    eval_every: int = 60
    eval_log_points: int = 15

    def build(self):
        seeds = self.member_values("seed")
        data = digits(self.n_train, seeds)
        k = data.num_classes if self.loss == "mse" and self.mse_sum else 1  # sum = K x mean, in the gradient
        config = self.config(lr=self.lr * k, weight_decay=[wd / k for wd in self.member_values("weight_decay")],
                             loss=self.loss)
        return data, self.network(seeds), config

    def extra_metrics(self, data, model):
        return {"nc": lambda m: model_collapse(m, data), "depth": lambda m: nc1_by_layer(m, data)}


@dataclass(frozen=True)
class SmoothingRecipe(DigitsRecipe, TrainedExperiment):
    """Networks trained after Muller, Kornblith and Hinton 2019: few training images (so that the
    test set has errors to rank), no batch norm, the step schedule. ``weight_decays`` and
    ``smoothings`` are those of the label-smoothed networks (:class:`SmoothingSetup`, the teachers
    of :class:`DistillationSetup`). After training, every member's logits on all the digits
    ("logits", (S, 1797, 10)) and its NC1 on its training and test images are kept."""

    FULL = dict(hidden=(256, 256, 256), steps=3000, seeds=tuple(range(5)), smoothings=(0.0, 0.01, 0.03, 0.1, 0.3))
    BOUNDS = {"smoothings": SHARE}

    n_train: int = 300
    hidden: tuple[int, ...] = (128, 128, 128)
    steps: int = 1500
    schedule: bool = True
    eval_every: int = 75
    weight_decays: tuple[float, ...] = (5e-4, 5e-3)
    smoothings: tuple[float, ...] = (0.0, 0.03, 0.1)

    def after_training(self, history: History, run: TrainedRun) -> History:
        model, data = run.model, run.data
        logits = predict(model, data.x.expand(model.members, *data.x.shape))  # (S, N, 10), every digit
        arrays = {"logits": logits.cpu().numpy()}
        for split in ("train", "test"):
            arrays[f"nc1_{split}"] = model_collapse(model, data, split)["nc1"].cpu().numpy()
        return replace(history, arrays=history.arrays | arrays)

    def test_outputs(self, history: History) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (S, test images, 10), labels (S, test images)) of a run of this recipe (or of
        some of its members): each member's kept logits on its own test images, from its seed's split."""
        data = digits(self.n_train, history.labels("seed"))
        idx = data.test_idx
        logits = torch.tensor(history.arrays["logits"])  # (S, every digit, 10)
        return logits[torch.arange(len(idx))[:, None], idx], data.y.gather(1, idx)


@dataclass(frozen=True)
class SmoothingSetup(SmoothingRecipe):
    """Label smoothing eps x weight decay x seeds; the collapse measures recorded through training."""

    AXES = {"weight_decay": "weight_decays", "label_smoothing": "smoothings"}

    def build(self):
        seeds = self.member_values("seed")
        config = self.config(weight_decay=self.member_values("weight_decay"),
                             label_smoothing=self.member_values("label_smoothing"))
        return digits(self.n_train, seeds), self.network(seeds), config

    def extra_metrics(self, data, model):
        return {"nc": lambda m: model_collapse(m, data)}


@dataclass(frozen=True)
class DistillationSetup(SmoothingRecipe):
    """Hinton et al. 2015's distillation from SmoothingSetup's networks: each student (the same
    architecture, other initial weights) fits softmax(teacher logits / T) with its own logits divided
    by T (output scale 1/T; its step size times T^2, which keeps the size of the soft-target gradient,
    Hinton et al.'s T^2, and its weight decay divided by T^2, which keeps the decay). Its teacher is
    the member of the same seed, so of the same training images. Members: (teacher's eps, T) x seeds."""

    FULL = SmoothingRecipe.FULL | dict(teacher_smoothings=(0.0, 0.03, 0.1), temperatures=(1.0, 2.0, 4.0, 8.0))
    AXES = {"teacher_smoothing": "teacher_smoothings", "temperature": "temperatures"}
    BOUNDS = {"temperatures": Bounds(0.0, low_open=True)}

    teacher_smoothings: tuple[float, ...] = (0.0, 0.1)
    teacher_weight_decay: float = 5e-4
    temperatures: tuple[float, ...] = (1.0, 4.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        for eps in self.teacher_smoothings:  # the teachers are the SmoothingSetup's members
            check_choice("teacher_smoothings", eps, self.smoothings)
        check_choice("teacher_weight_decay", self.teacher_weight_decay, self.weight_decays)

    def teachers(self) -> SmoothingSetup:
        """The SmoothingSetup whose networks teach: this one's fields of the recipe."""
        return SmoothingSetup(**{f.name: getattr(self, f.name) for f in fields(SmoothingRecipe)})

    def requires(self) -> dict[str, Experiment]:
        return {"teachers": self.teachers()}

    def build(self, teachers: History):
        teachers = teachers.select(weight_decay=self.teacher_weight_decay)
        members = self.members()
        seeds = [m["seed"] for m in members]
        logits = np.stack([teachers.select(label_smoothing=m["teacher_smoothing"], seed=m["seed"]).arrays["logits"][0]
                           for m in members])  # (S, N, 10)
        temperature = torch.tensor([m["temperature"] for m in members])
        targets = torch.softmax(torch.tensor(logits) / temperature.view(-1, 1, 1), dim=-1)
        data = replace(digits(self.n_train, seeds), soft_targets=targets)
        model = self.network([s + STUDENT_SEED_OFFSET for s in seeds], output_scale=(1 / temperature).tolist())
        # SGD's weight decay is coupled (added to the gradient): divided by T^2, it stays the teacher's
        # once the step size is multiplied by T^2; only the soft-target term is scaled up.
        return data, model, self.config(lr=(self.lr * temperature**2).tolist(),
                                        weight_decay=(self.teacher_weight_decay / temperature**2).tolist())


@dataclass(frozen=True)
class ScoreRecipe(DigitsRecipe):
    """Paul, Ganguli and Dziugaite 2021's setting: one fixed training set (split seed ``split_seed``,
    ``noise`` of its labels moved to another class), scored after ``score_steps`` steps (a few epochs)."""

    FULL = dict(hidden=(256, 256), seeds=tuple(range(10)))
    BOUNDS = {"noise": SHARE}

    noise: float = 0.0
    split_seed: int = 0
    score_steps: int = 20  # 2.5 epochs of 1,000 images in batches of 128

    def data(self, members: int) -> TaskData:
        """The fixed training set (and test set) for ``members`` members."""
        return digits(self.n_train, [self.split_seed] * members, self.noise)


@dataclass(frozen=True)
class ScoreSetup(ScoreRecipe, TrainedExperiment):
    """Train ``score_steps`` steps on the fixed training set from each initial seed, then score every
    training example by EL2N and GraNd. Arrays (S, n_train): "el2n", "grand", and "mislabelled" (1
    where the label was changed)."""

    seeds: tuple[int, ...] = (0, 1, 2, 3)

    def build(self):
        seeds = self.member_values("seed")
        config = self.config(steps=self.score_steps, eval_every=self.score_steps)
        return self.data(len(seeds)), self.network(seeds), config

    def after_training(self, history: History, run: TrainedRun) -> History:
        model, data = run.model, run.data
        bad = torch.zeros(data.y.shape[1], dtype=torch.bool)
        if "corrupted" in data.subsets:
            bad[data.subsets["corrupted"][0]] = True
        mislabelled = bad[data.train_idx.cpu()].float()  # (S, n_train) in training order
        arrays = {"el2n": el2n(model, data), "grand": grand(model, data), "mislabelled": mislabelled}
        return replace(history, arrays=history.arrays | {k: v.cpu().numpy() for k, v in arrays.items()})


@dataclass(frozen=True)
class DietSetup(ScoreRecipe, TrainedExperiment):
    """Train on ``fraction`` of the scored training set, chosen per member by a strategy: the
    examples with the highest mean score ("hardest"), the lowest ("easiest"), a random subset
    ("random", one per seed), or the highest after skipping the top ``skip`` share ("skip hardest").
    Every fraction trains for the same number of steps. Members: strategy x seeds."""

    FULL = ScoreRecipe.FULL | dict(seeds=tuple(range(5)), score_seeds=tuple(range(10)))
    AXES = {"strategy": "strategies"}
    CHOICES = {"strategies": STRATEGIES, "score": SCORES}
    BOUNDS = {"fraction": Bounds(0.0, 1.0, low_open=True), "skip": SHARE}

    fraction: float = 0.3
    strategies: tuple[str, ...] = ("hardest", "random")
    score: str = "el2n"
    skip: float = 0.2
    seeds: tuple[int, ...] = (0, 1, 2)
    score_seeds: tuple[int, ...] = (0, 1, 2, 3)  # the initializations the scores average over

    def scoring(self) -> ScoreSetup:
        """The ScoreSetup whose scores this diet keeps by: this one's fields of the recipe, with
        ``score_seeds`` as its seeds."""
        shared = {f.name: getattr(self, f.name) for f in fields(ScoreRecipe)}
        return ScoreSetup(**(shared | {"seeds": self.score_seeds}))

    def requires(self) -> dict[str, Experiment]:
        return {"scores": self.scoring()}

    def build(self, scores: History):
        mean_scores = scores.arrays[self.score].mean(0)  # (n_train,): over the initializations
        members = self.members()
        data = self.data(len(members))
        data.train_idx = torch.stack([data.train_idx[i][self.subset(mean_scores, m["strategy"], m["seed"])]
                                      for i, m in enumerate(members)])
        data.subsets = {}  # they index the whole training set
        seeds = [m["seed"] + DIET_SEED_OFFSET for m in members]
        return data, self.network(seeds), self.config()

    def subset(self, scores: np.ndarray, strategy: str, seed: int) -> torch.Tensor:
        """Positions in the training set of the examples a member keeps."""
        check_choice("strategies", strategy, STRATEGIES)
        n = len(scores)
        keep = round(self.fraction * n)
        order = torch.from_numpy(np.argsort(-scores, kind="stable"))  # hardest first
        if strategy == "hardest":
            return order[:keep]
        if strategy == "easiest":
            return order[n - keep :]
        if strategy == "skip hardest":
            start = min(round(self.skip * n), n - keep)
            return order[start : start + keep]
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:keep]


@dataclass(frozen=True)
class PruningRecipe(DigitsRecipe):
    """The networks pruned in this chapter: two hidden layers of ``width`` units. ``prune_readout``
    False (the default) keeps the last layer (width x 10) dense and the sparsity is that of the two
    other weight matrices: pruned like them, at 98.4% the readout keeps 20 weights and a class
    can lose all of its own (Tanaka et al. 2020's layer collapse); Frankle and Carbin prune it at half
    the rate."""

    width: int = 128
    steps: int = 500
    eval_every: int = 500
    prune_readout: bool = False

    def network(self, seeds: list[int], **kw) -> MLP:
        return MLP(64, (self.width, self.width), 10, seeds, **kw)

    @staticmethod
    def cut_off(masks) -> dict[str, np.ndarray]:
        """{"dead_units", "dead_classes"}: (S,) counts of :func:`~genlib.measures.pruning.disconnected`."""
        cut = disconnected(list(masks))
        return {"dead_units": cut["units"].cpu().numpy(), "dead_classes": cut["classes"].cpu().numpy()}


@dataclass(frozen=True)
class RandomPruningSetup(PruningRecipe, TrainedExperiment):
    """Liu et al. 2022: every weight matrix (but a dense readout) pruned at random to a sparsity
    before training, then trained as it is. Members: sparsity x seeds. Arrays (S,): "dead_units"
    and "dead_classes", what the masks cut off (:meth:`PruningRecipe.cut_off`)."""

    FULL = dict(seeds=tuple(range(5)), sparsities=(0.0, 0.5, 0.75, 0.875, 0.9375, 0.96875, 0.984375, 0.9921875))
    AXES = {"sparsity": "sparsities"}
    BOUNDS = {"sparsities": SHARE}

    sparsities: tuple[float, ...] = (0.0, 0.5, 0.75, 0.875, 0.9375, 0.96875, 0.984375)

    def build(self):
        seeds = self.member_values("seed")
        model = self.network(seeds)
        model.set_weight_masks(random_masks(model, self.member_values("sparsity"), prune_readout=self.prune_readout))
        return digits(self.n_train, seeds), model, self.config()

    def after_training(self, history: History, run: TrainedRun) -> History:
        return replace(history, arrays=history.arrays | self.cut_off(run.model.weight_masks))


@dataclass(frozen=True)
class MagnitudePruningSetup(PruningRecipe, ComputedExperiment):
    """Frankle and Carbin 2019, with rewinding (Frankle et al. 2020): train; prune half of the
    remaining weights of every layer (but a dense readout), those of smallest magnitude; rewind the rest to their values
    after ``rewind_step`` steps; train again, and repeat (:func:`~genlib.measures.pruning.iterative_magnitude_pruning`).
    Recorded along the axis "sparsity": the dense network, then every round; members are seeds.
    Arrays: every round's masks and the rewound weights (see the function), and "dead_units",
    "dead_classes" (S, rounds), what each round's masks cut off."""

    FULL = dict(seeds=tuple(range(5)), rounds=7)

    rounds: int = 6
    rewind_step: int = 20

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("rounds", self.rounds, low=0)
        check_int("rewind_step", self.rewind_step, low=1, high=self.steps - 1)

    def compute(self) -> History:
        seeds = self.member_values("seed")
        data, model = digits(self.n_train, seeds), self.network(seeds)
        history = iterative_magnitude_pruning(model, data, self.config(), self.rounds, self.rewind_step,
                                              self.members(), prune_readout=self.prune_readout)
        if not self.rounds:
            return history
        layers = len(model.weights)
        cuts = [self.cut_off([torch.from_numpy(history.arrays[f"masks/layer{i}"][:, r]) for i in range(layers)])
                for r in range(self.rounds)]
        arrays = {name: np.stack([c[name] for c in cuts], axis=1) for name in ("dead_units", "dead_classes")}
        return replace(history, arrays=history.arrays | arrays)


CONTROLS = ("reinitialized", "random mask")
CONTROL_SEED_OFFSET = 2000  # the reinitialized tickets' new initial weights


@dataclass(frozen=True)
class TicketControlSetup(PruningRecipe, TrainedExperiment):
    """Frankle and Carbin 2019's controls of the tickets of a :class:`MagnitudePruningSetup` (its
    requirement "tickets", the same fields): after round r of ``control_rounds``, "reinitialized"
    keeps the ticket's mask and draws new initial weights; "random mask" keeps the ticket's rewound
    weights under a random mask of the same per-layer sparsity (the one :class:`RandomPruningSetup`
    draws for that seed). Each trains as a round does: ``steps - rewind_step`` steps from its
    weights, fresh optimizer. Members: control x round x seed (each on its seed's training set)."""

    FULL = dict(seeds=tuple(range(5)), rounds=7, control_rounds=(6, 7))
    AXES = {"control": "controls", "round": "control_rounds"}
    CHOICES = {"controls": CONTROLS}

    rounds: int = 6
    rewind_step: int = 20
    controls: tuple[str, ...] = CONTROLS
    control_rounds: tuple[int, ...] = (5, 6)

    def __post_init__(self) -> None:
        super().__post_init__()
        for r in self.control_rounds:
            check_int("control_rounds", r, low=1, high=self.rounds)

    def tickets(self) -> MagnitudePruningSetup:
        """The MagnitudePruningSetup whose tickets are controlled: this one's fields of it."""
        return MagnitudePruningSetup(**{f.name: getattr(self, f.name) for f in fields(MagnitudePruningSetup)})

    def requires(self) -> dict[str, Experiment]:
        return {"tickets": self.tickets()}

    def build(self, tickets: History):
        members = self.members()
        order = tickets.labels("seed")
        ticket = [order.index(m["seed"]) for m in members]  # the ticket's member of the same seed
        fresh = [m["control"] == "reinitialized" for m in members]
        model = self.network([m["seed"] + CONTROL_SEED_OFFSET * f for m, f in zip(members, fresh)])
        sparsity = [1 - 0.5 ** m["round"] for m in members]
        drawn = random_masks(model, sparsity, prune_readout=self.prune_readout)
        masks = []
        for i, random_mask in enumerate(drawn):
            found = torch.from_numpy(tickets.arrays[f"masks/layer{i}"])  # (S, rounds, fan_in, out)
            rows = [found[t, m["round"] - 1].to(random_mask) if f else random_mask[j]
                    for j, (m, t, f) in enumerate(zip(members, ticket, fresh))]
            masks.append(torch.stack(rows))
        with torch.no_grad():
            for name, p in model.named_parameters():
                rewound = torch.from_numpy(tickets.arrays[f"rewind/{name}"]).to(p)
                for j, (t, f) in enumerate(zip(ticket, fresh)):
                    if not f:
                        p[j].copy_(rewound[t])
        model.set_weight_masks(masks)
        rest = self.steps - self.rewind_step
        return digits(self.n_train, self.member_values("seed")), model, self.config(steps=rest, eval_every=rest)

    def after_training(self, history: History, run: TrainedRun) -> History:
        return replace(history, arrays=history.arrays | self.cut_off(run.model.weight_masks))
