"""What one training iteration computes, for each of the three SDN modes (as the original code computes it),
and ALBAR's change to it (``--debias albar``, a wrapper around any mode).

An objective turns the batches of one iteration into a sequence of losses. The trainer takes one
optimizer step per loss, in order, so the full mode's two steps (unmasked batch, then masked
batch) happen exactly as in the original: forward A, backward A, step A, forward B, backward B,
step B. Losses are produced lazily (a generator), so the masked forward pass sees the weights
after step A.

Each yielded ``Step`` carries the loss and the numbers to log, as ``{column: (value, count)}``,
so epoch means are weighted by batch size as the original's ``AverageMeter``. Values stay tensors
on the device; the trainer reads all of an iteration's at once (one device-to-host copy, not one
per number, which on a GPU would each wait for the queue to drain). ``columns`` are the
original log columns of the mode; ``extra_columns`` are sdn's additions, written after them.

Every objective also says what it needs (the :class:`Objective` protocol): how many loaders feed
one iteration, whether incomplete batches are dropped (the original dropped them in the
adversarial modes, whose heads' BatchNorm1d cannot take a batch of one), whether a step leaves
parameters unused (DDP must then look for them), and which data its batches must carry
(:meth:`check_data`). The trainer and ``sdn train`` ask the objective instead of matching mode names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sdn.errors import SdnError
from sdn.losses import EntropyLoss, scene_loss, top1_hits
from sdn.methods.albar import COLUMNS as ALBAR_COLUMNS
from sdn.methods.albar import AlbarWeights, albar_terms
from sdn.models import SDNOutput

Model = Callable[[Tensor], SDNOutput]


Metric = tuple["Tensor | float", int]  # (value, count): a 0-d tensor (read later) or a plain number


@dataclass
class Step:
    """One loss to back-propagate, and the values it contributes to the logs."""

    loss: Tensor
    metrics: dict[str, Metric] = field(default_factory=dict)


def _acc(logits: Tensor, target: Tensor) -> Metric:
    n = logits.shape[0]  # float64 division of the counts: the same number as Python's correct / n
    return (top1_hits(logits, target).double() / n if n else 0.0), n


def _val(value: Tensor, n: int) -> Metric:
    return value.detach(), n


def read_metrics(metrics: dict[str, Metric]) -> dict[str, tuple[float, int]]:
    """The values as Python floats, read from the device in one copy (float64 keeps each exactly)."""
    names = [name for name, (value, _) in metrics.items() if isinstance(value, Tensor)]
    if not names:
        return dict(metrics)
    values = torch.stack([metrics[name][0].detach().to(torch.float64).reshape(()) for name in names]).tolist()
    read = dict(metrics)
    for name, value in zip(names, values):
        read[name] = (value, metrics[name][1])
    return read


class ActionLoss(nn.Module):
    """Action cross entropy, or the mixed target a debiasing method left in the batch.

    A method that mixes two clips' labels (ActorCutMix) adds ``label_b`` and ``label_weight`` w:
    the loss is then ``mean(w * CE(label) + (1 - w) * CE(label_b))``, the cross entropy against
    the soft target ``w * onehot(label) + (1 - w) * onehot(label_b)``. Without them it is plain
    ``nn.CrossEntropyLoss``, bit for bit.
    """

    def __init__(self) -> None:
        super().__init__()
        self.cross_entropy = nn.CrossEntropyLoss()

    def forward(self, logits: Tensor, batch: dict) -> Tensor:
        if "label_weight" not in batch:
            return self.cross_entropy(logits, batch["label"])
        weight = batch["label_weight"].to(logits.dtype)
        first = F.cross_entropy(logits, batch["label"], reduction="none")
        second = F.cross_entropy(logits, batch["label_b"], reduction="none")
        return (weight * first + (1 - weight) * second).mean()


SCENE_DATASETS = ("kinetics_adv", "kinetics_adv_msk")  # the --dataset values whose clips carry scene labels


class Objective(Protocol):
    """What one training iteration computes, and what it needs from the run."""

    name: str
    n_loaders: int  # loaders feeding one iteration (one batch each)
    batch_keys: tuple[tuple[str, ...], ...]  # per loader, the batch entries the steps read
    drop_incomplete_batches: bool
    find_unused_parameters: bool  # a step leaves some parameters without a gradient (DDP must be told)
    columns: list[str]
    extra_columns: list[str]
    total_column: str  # the validation value the LR scheduler follows
    accuracy_column: str

    def check_data(self, datasets: Sequence[Any], dataset: str) -> None:
        """Raise :class:`SdnError` up front when the ``--dataset`` cannot feed this objective."""

    def steps(self, model: Model, batches: list[dict], epoch: int) -> Iterator[Step]: ...

    def validation_steps(self, model: Model, batches: list[dict], epoch: int) -> Iterator[Step]: ...


class Baseline:
    """Action cross entropy only (``main_baseline_model``)."""

    name = "baseline"
    n_loaders = 1
    batch_keys = (("clip", "label"),)
    drop_incomplete_batches = False
    find_unused_parameters = False
    columns = ["loss", "acc"]
    extra_columns: list[str] = []
    total_column = "loss"
    accuracy_column = "acc"

    def __init__(self) -> None:
        self.action_loss = ActionLoss()

    def check_data(self, datasets: Sequence[Any], dataset: str) -> None:
        del datasets, dataset  # any dataset has action labels

    def steps(self, model: Model, batches: list[dict], epoch: int) -> Iterator[Step]:
        batch = batches[0]
        out = model(batch["clip"])
        loss = self.action_loss(out.action, batch)
        n = batch["label"].shape[0]
        yield Step(loss, {"loss": _val(loss, n), "acc": _acc(out.action, batch["label"])})

    validation_steps = steps


class SceneAdversarial:
    """Action cross entropy + scene loss through the place head's gradient reversal (``train_adv_epoch``).

    The optional place entropy term is active from ``warm_up_epochs`` on; in training it is
    weighted by ``weight_entropy_loss``, in validation added unweighted (both as the original).
    """

    name = "place_adv"
    n_loaders = 1
    batch_keys = (("clip", "label", "place"),)
    drop_incomplete_batches = True
    find_unused_parameters = False
    columns = ["loss total", "loss act", "loss place", "acc act", "acc place"]
    extra_columns: list[str] = []
    total_column = "loss total"
    accuracy_column = "acc act"

    def __init__(self, *, soft_places: bool = True, place_entropy: str | None = None, entropy_from_epoch: int = 0,
                 entropy_weight: float = 1.0) -> None:
        """``soft_places``: the batches' ``place`` are soft pseudo labels (``--is_place_soft``), else
        class indices. ``place_entropy`` ``"min"``/``"max"`` adds the place-logit entropy term
        (``--is_place_entropy``, ``--is_entropy_max``) from epoch ``entropy_from_epoch``
        (``--warm_up_epochs``) on, weighted by ``entropy_weight`` in training."""
        self.action_loss = ActionLoss()
        self.place_loss = scene_loss(soft_places)
        self.place_entropy = EntropyLoss(maximize=place_entropy == "max") if place_entropy else None
        self.entropy_from_epoch = entropy_from_epoch
        self.entropy_weight = entropy_weight

    @staticmethod
    def options(opt: Any) -> dict[str, Any]:
        """The constructor arguments the original flags give."""
        return dict(soft_places=opt.is_place_soft,
                    place_entropy=("max" if opt.is_entropy_max else "min") if opt.is_place_entropy else None,
                    entropy_from_epoch=opt.warm_up_epochs, entropy_weight=opt.weight_entropy_loss)

    def check_data(self, datasets: Sequence[Any], dataset: str) -> None:
        if dataset not in SCENE_DATASETS:
            raise SdnError(f"--is_place_adv needs scene pseudo labels: use --dataset kinetics_adv (got {dataset})")

    def _scene_step(self, model: Model, batch: dict, epoch: int, entropy_weight: float) -> Step:
        out = model(batch["clip"])
        loss_act = self.action_loss(out.action, batch)
        loss_place = self.place_loss(out.place, batch["place"])
        loss = loss_act + loss_place
        if self.place_entropy is not None and epoch >= self.entropy_from_epoch:
            loss = loss + entropy_weight * self.place_entropy(out.place)
        n = batch["label"].shape[0]
        return Step(loss, {
            "loss total": _val(loss, n),
            "loss act": _val(loss_act, n),
            "loss place": _val(loss_place, n),
            "acc act": _acc(out.action, batch["label"]),
            "acc place": _acc(out.place, batch["place"]),
        })

    def steps(self, model: Model, batches: list[dict], epoch: int) -> Iterator[Step]:
        yield self._scene_step(model, batches[0], epoch, self.entropy_weight)

    def validation_steps(self, model: Model, batches: list[dict], epoch: int) -> Iterator[Step]:
        yield self._scene_step(model, batches[0], epoch, 1.0)


class MaskLoss:
    """The human-mask loss on a masked clip, in one of three named variants.

    * ``original`` (the README's ``--is_mask_entropy``): -H of the separate hm head, which sits behind
      its own gradient reversal layer. The head is pushed towards uniform predictions on masked clips;
      the backbone receives the reversed gradient, i.e. it is pushed to make the hm head *confident*.
      The action classifier gets no gradient. This is what the released code does.
    * ``cross_entropy`` (``--is_mask_cross_entropy``): cross entropy of the hm head against the action
      label, through the reversal: the backbone is pushed to remove action evidence outside the actor.
    * ``paper``: the paper's confusion loss, -H of the ordinary action classifier on masked clips, no
      reversal: the whole network is pushed to be uncertain when the actor is hidden.
    """

    def __init__(self, variant: str) -> None:
        self.variant = variant
        self.entropy_max = EntropyLoss(maximize=True)
        self.cross_entropy = nn.CrossEntropyLoss()

    def logits(self, out: SDNOutput) -> Tensor:
        return out.action if self.variant == "paper" else out.hm

    def __call__(self, out: SDNOutput, label: Tensor) -> Tensor:
        logits = self.logits(out)
        if self.variant == "cross_entropy":
            return self.cross_entropy(logits, label)
        return self.entropy_max(logits)


class FullSDN(SceneAdversarial):
    """Scene-adversarial step on an unmasked batch, then the mask step on a human-masked batch.

    The two batches come from two independently shuffled loaders (``train_adv_msk_epoch``).
    The mask loss and accuracy, which the original only printed, are logged as extra columns.
    """

    name = "full"
    n_loaders = 2
    batch_keys = (("clip", "label", "place"), ("clip", "label", "is_masking"))
    find_unused_parameters = True  # the scene step leaves the hm head unused, the mask step the place head
    extra_columns = ["loss mask", "acc mask", "masked share"]

    def __init__(self, *, mask_loss: str = "original", **scene_options: Any) -> None:
        """``mask_loss``: a :class:`MaskLoss` variant; ``scene_options`` as :class:`SceneAdversarial`."""
        super().__init__(**scene_options)
        self.mask_loss = MaskLoss(mask_loss)

    def check_data(self, datasets: Sequence[Any], dataset: str) -> None:
        if len(datasets) != 2:
            raise SdnError("the full SDN mode needs masked and unmasked clips: use --dataset kinetics_adv_msk "
                           f"(got {dataset})")

    def _mask_step(self, model: Model, batch: dict) -> Step:
        out = model(batch["clip"])
        loss = self.mask_loss(out, batch["label"])
        n = batch["label"].shape[0]
        masked = batch["is_masking"].float().mean() if n else 0.0
        return Step(loss, {
            "loss mask": _val(loss, n),
            "acc mask": _acc(self.mask_loss.logits(out), batch["label"]),
            "masked share": (masked, n),
        })

    def steps(self, model: Model, batches: list[dict], epoch: int) -> Iterator[Step]:
        yield self._scene_step(model, batches[0], epoch, self.entropy_weight)
        yield self._mask_step(model, batches[1])

    def validation_steps(self, model: Model, batches: list[dict], epoch: int) -> Iterator[Step]:
        yield self._scene_step(model, batches[0], epoch, 1.0)
        yield self._mask_step(model, batches[1])


class Albar:
    """ALBAR's static-clip terms added to the first step of any mode (``--debias albar``).

    The mode's first step (the action step; in the full mode the unmasked scene-adversarial one)
    becomes ``mode loss + ALBAR terms`` (:func:`sdn.methods.albar.albar_terms`); later steps are
    unchanged. The mode's columns keep their meaning (its own losses); ALBAR's added loss and its
    parts are logged in extra columns. The static frame is the batch's ``static_frame`` (drawn by
    ALBAR's batch transform in training), else the middle one. Validation measures the same terms
    (the gradient penalty without a graph) but its total, which the LR scheduler follows, stays
    the mode's.
    """

    def __init__(self, inner: Objective, weights: AlbarWeights) -> None:
        self.inner = inner
        self.weights = weights
        self.name, self.n_loaders, self.batch_keys = inner.name, inner.n_loaders, inner.batch_keys
        self.drop_incomplete_batches = inner.drop_incomplete_batches
        self.find_unused_parameters = inner.find_unused_parameters
        self.columns = inner.columns
        self.extra_columns = [*inner.extra_columns, *ALBAR_COLUMNS]
        self.total_column, self.accuracy_column = inner.total_column, inner.accuracy_column
        self.check_data = inner.check_data

    def _with_terms(self, steps: Iterator[Step], model: Model, batch: dict, train: bool) -> Iterator[Step]:
        first = next(steps)
        with torch.enable_grad():
            added, metrics = albar_terms(model, batch["clip"], batch["label"], self.weights,
                                         batch.get("static_frame"), create_graph=train)
        yield Step(first.loss + added if train else first.loss, {**first.metrics, **metrics})
        yield from steps

    def steps(self, model: Model, batches: list[dict], epoch: int) -> Iterator[Step]:
        return self._with_terms(self.inner.steps(model, batches, epoch), model, batches[0], train=True)

    def validation_steps(self, model: Model, batches: list[dict], epoch: int) -> Iterator[Step]:
        return self._with_terms(self.inner.validation_steps(model, batches, epoch), model, batches[0], train=False)


MODES = ("baseline", "place_adv", "full")


def build_objective(mode: str, opt: Any) -> Objective:
    """The objective of ``mode`` configured from the training options, wrapped by ALBAR when ``--debias albar``."""
    if mode == "baseline":
        objective: Objective = Baseline()
    elif mode == "place_adv":
        objective = SceneAdversarial(**SceneAdversarial.options(opt))
    elif mode == "full":
        objective = FullSDN(mask_loss=opt.mask_loss, **SceneAdversarial.options(opt))
    else:
        raise SdnError(f"training mode {mode!r}: must be one of {', '.join(MODES)}")
    return Albar(objective, AlbarWeights.from_options(opt)) if opt.debias == "albar" else objective

