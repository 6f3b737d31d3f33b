"""ALBAR (Fioresi, Dave and Shah, "ALBAR: Adversarial Learning approach to mitigate Biases in
Action Recognition", ICLR 2025): the network itself is trained to be unable to recognise the
action from a static clip.

Besides the ordinary step on the clip ``x``, the same network sees ``x_s``, one frame of ``x``
repeated over time (no motion, only the static cue). Three terms act on its logits ``f(x_s)``:

* an adversarial negative cross entropy, ``-w_adv * CE(f(x_s), y)``: do *not* predict the label
  from the still image;
* entropy maximisation, ``-w_ent * H(softmax f(x_s))``: predict *nothing* from it (uniform), so
  the network cannot satisfy the first term by confidently picking a wrong class;
* a gradient penalty, ``+w_gp * mean_i ||d sum_k f(x_s)_k / d x_s_i||_2``: keep the output flat
  around static inputs, which the paper found needed for stable training.

The step's loss is the mode's loss plus these terms (``Albar`` in :mod:`sdn.engine.objectives`
wraps any mode). Defaults are the paper's: ``w_adv = 1``, ``w_ent = 4.25``, ``w_gp = 10`` and
the middle frame of the clip (the official configuration takes frame 16 of 32). The gradient
norm is per clip over all its values (the paper's ``||∇||_2``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from sdn.methods.base import Batch, MethodSetup

if TYPE_CHECKING:
    from sdn.config import Options

COLUMNS = ["loss albar", "loss static", "entropy static", "grad penalty", "acc static"]


@dataclass(frozen=True)
class AlbarWeights:
    adversarial: float = 1.0
    entropy: float = 4.25
    gradient_penalty: float = 10.0

    @classmethod
    def from_options(cls, opt: Options) -> "AlbarWeights":
        return cls(opt.albar_adv_weight, opt.albar_entropy_weight, opt.albar_gp_weight)


def static_clips(clips: Tensor, frames: Tensor) -> Tensor:
    """Clip ``i``'s frame ``frames[i]`` repeated over its T frames: ``[B, 3, T, H, W]``, same memory format."""
    rows = torch.arange(clips.shape[0], device=clips.device)
    still = clips[rows, :, frames.to(clips.device)].unsqueeze(2).expand_as(clips)
    layout = torch.channels_last_3d if clips.is_contiguous(memory_format=torch.channels_last_3d) \
        and not clips.is_contiguous() else torch.contiguous_format
    return still.contiguous(memory_format=layout)


def middle_frames(batch_size: int, frames: int) -> Tensor:
    return torch.full((batch_size,), frames // 2, dtype=torch.long)


class StaticFrameChoice:
    """ALBAR's batch transform: which frame each training clip's static clip repeats (``static_frame``).

    Drawn here, from the trainer's per-batch generator, so a resumed run repeats the choice;
    without it (validation) the middle frame is used.
    """

    def __init__(self, choice: str):
        self.choice = choice

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        batch_size, frames = batch["clip"].shape[0], batch["clip"].shape[2]
        chosen = middle_frames(batch_size, frames) if self.choice == "middle" \
            else torch.randint(frames, (batch_size,), generator=generator)
        batch["static_frame"] = chosen.to(batch["clip"].device)
        return batch


def entropy(logits: Tensor) -> Tensor:
    """Mean entropy of softmax(logits), in nats."""
    log_p = F.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1).mean()


def gradient_penalty(logits: Tensor, inputs: Tensor, create_graph: bool) -> Tensor:
    """Mean over clips of the L2 norm of d(sum of the logits)/d(clip); ``inputs`` must require grad."""
    gradients, = torch.autograd.grad(logits.sum(), inputs, create_graph=create_graph)
    return torch.sqrt(gradients.flatten(1).pow(2).sum(dim=1) + 1e-12).mean()


def albar_terms(model, clips: Tensor, labels: Tensor, weights: AlbarWeights, frames: Tensor | None = None,
                create_graph: bool = True) -> tuple[Tensor, dict[str, tuple[Tensor | float, int]]]:
    """ALBAR's added loss on the static clips of ``clips`` (normalised ``[B, 3, T, H, W]``), and its metrics.

    ``frames``: the frame each static clip repeats (default: the middle one). ``create_graph``
    keeps the gradient penalty differentiable (training); validation measures it only.
    """
    batch_size = clips.shape[0]
    frames = middle_frames(batch_size, clips.shape[2]) if frames is None else frames
    still = static_clips(clips.detach(), frames)
    still.requires_grad_(weights.gradient_penalty > 0)
    logits = model(still).action
    cross_entropy = F.cross_entropy(logits, labels)
    spread = entropy(logits)
    penalty = gradient_penalty(logits, still, create_graph) if weights.gradient_penalty > 0 \
        else logits.new_zeros(())
    added = -weights.adversarial * cross_entropy - weights.entropy * spread + weights.gradient_penalty * penalty
    correct = (logits.argmax(dim=1) == labels).float().mean() if batch_size else 0.0
    return added, {  # tensors on the device: the trainer reads an iteration's values at once
        "loss albar": (added.detach(), batch_size),
        "loss static": (cross_entropy.detach(), batch_size),
        "entropy static": (spread.detach(), batch_size),
        "grad penalty": (penalty.detach(), batch_size),
        "acc static": (correct, batch_size),
    }


def build(setup: MethodSetup) -> StaticFrameChoice:
    return StaticFrameChoice(setup.opt.albar_static_frame)

