"""BE, Background Erasing (Wang et al., "Removing the Background by Adding the Background", CVPR 2021).

A randomly chosen frame of the same clip is added to every frame: ``x' = (1 - λ) x + λ x[t]``.
The added frame is static, so whatever the clip's background says is now also said by a
motionless image; a network that wants the label must look at what changes. The label is kept.

BE was proposed for self-supervised pre-training, with a consistency loss. Used as a
supervised augmentation (as the StillMix paper, ICCV 2023, reran it as a baseline), only the
clip transform remains. Defaults: λ = 0.3 · U(0, 1), BE's range (the StillMix rerun draws
0.3 · Beta(1, 1), the same distribution); each clip is changed with probability 0.5 (the
StillMix reruns tune it per dataset and pre-training between 0.25 and 0.75; 0.5 is the middle).
Here each clip draws its own λ and frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sdn.methods.base import Batch, MethodSetup, draw_applied, float_clips, per_clip


@dataclass
class BeDraw:
    """The random choices for one batch: the weight and the frame of each clip (λ 0 = unchanged)."""

    weight: Tensor  # float [B]
    frame: Tensor  # long [B]


class BackgroundErasing:
    def __init__(self, max_weight: float, prob: float):
        self.max_weight, self.prob = max_weight, prob

    def draw(self, batch_size: int, frames: int, generator: torch.Generator) -> BeDraw:
        weight = self.max_weight * torch.rand(batch_size, generator=generator)
        frame = torch.randint(frames, (batch_size,), generator=generator)
        applied = draw_applied(self.prob, batch_size, generator)
        return BeDraw(torch.where(applied, weight, torch.zeros_like(weight)), frame)

    @staticmethod
    def apply(clips: Tensor, draw: BeDraw) -> Tensor:
        """``(1 - λ_i) x_i + λ_i x_i[:, t_i]`` for float clips ``[B, 3, T, H, W]``."""
        rows = torch.arange(clips.shape[0], device=clips.device)
        still = clips[rows, :, draw.frame.to(clips.device)].unsqueeze(2)  # [B, 3, 1, H, W]
        weight = per_clip(draw.weight, clips)
        return (1 - weight) * clips + weight * still

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        clips = float_clips(batch)
        batch["clip"] = self.apply(clips, self.draw(clips.shape[0], clips.shape[2], generator))
        return batch


def build(setup: MethodSetup) -> BackgroundErasing:
    return BackgroundErasing(setup.opt.be_max_weight, setup.opt.be_prob)

