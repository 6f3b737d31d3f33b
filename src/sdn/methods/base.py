"""What the debiasing methods share: the transform interface, the build setup, and batch helpers.

A method is one registry entry (:mod:`sdn.methods.registry`: its flags and option checks) and an
implementation module whose ``build(setup)`` returns a *batch transform*, a function of one
training batch: BE, ActorCutMix, FAME and StillMix change the clips; ALBAR only draws its static
frames, and changes what a step computes (an objective wrapper in :mod:`sdn.engine.objectives`).

Batch transforms run on the device, after the batch was moved there and before it is normalised
(``Trainer`` calls them between ``.to(device)`` and ``ClipNormalize``). Why there and not in the
dataset: three of the four mix *two clips of the same batch*, which a per-sample dataset cannot
see; doing all four in one place keeps one code path, uses the GPU for the pixel work, and
leaves the datasets' uint8 traffic unchanged. Clips arrive as uint8 ``[B, 3, T, S, S]`` and
leave as float32 on the same 0..255 scale; normalisation is affine per channel, so mixing before
it is the same as mixing after it.

Randomness comes from a ``torch.Generator`` the trainer seeds per (seed, epoch, batch, rank), so
a resumed run mixes exactly as an uninterrupted one, and each DDP rank draws its own numbers.

Targets: a transform that mixes two clips' labels writes ``label_b`` (the second label) and
``label_weight`` (the weight of ``label``); the objectives then use
``w * CE(label) + (1 - w) * CE(label_b)``. A transform that moves a clip onto another clip's
background gives it that clip's scene target (``place``), which SDN's scene head then sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

import torch
from torch import Tensor
from torch.utils.data import Dataset

from sdn.distributed import SINGLE, Context

Batch = dict[str, Any]

if TYPE_CHECKING:
    from sdn.config import Options


class BatchTransform(Protocol):
    """A training-batch transform: ``batch`` on the device (clip uint8 or float, 0..255 scale)."""

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch: ...


@dataclass
class MethodSetup:
    """What building a method may need beyond the options (StillMix trains a reference network)."""

    opt: Options
    device: torch.device
    train_dataset: Dataset | None
    normalize: Callable[[Tensor], Tensor]
    n_classes: int
    context: Context = SINGLE


# ----------------------------------------------------------------------------------------------
# Batch helpers


def float_clips(batch: Batch) -> Tensor:
    """The batch's clips as float32 ``[B, 3, T, H, W]`` on the 0..255 scale (a new tensor)."""
    return batch["clip"].to(torch.float32)


def draw_applied(prob: float, count: int, generator: torch.Generator) -> Tensor:
    """Which of ``count`` clips a per-clip method changes (bool, CPU)."""
    return torch.rand(count, generator=generator) < prob


def per_clip(values: Tensor, like: Tensor) -> Tensor:
    """``[B]`` values shaped to broadcast over clips ``[B, ...]``, on their device and dtype."""
    return values.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.dim() - 1)))


def take_background_scene(batch: Batch, source: Tensor, applied: Tensor) -> None:
    """Clips in ``applied`` now show clip ``source[i]``'s background: take its scene target too."""
    if "place" not in batch:
        return
    place = batch["place"]
    index = torch.where(applied, source, torch.arange(len(source))).to(place.device)
    batch["place"] = place[index]


def mix_labels(batch: Batch, partner: Tensor, weight: Tensor) -> None:
    """Soft target ``weight * label + (1 - weight) * label[partner]`` (weight 1 keeps the label)."""
    label = batch["label"]
    batch["label_b"] = label[partner.to(label.device)]
    batch["label_weight"] = weight.to(device=label.device, dtype=torch.float32)
