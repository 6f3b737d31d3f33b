"""ActorCutMix (Zou et al., "Learning Representational Invariances for Data-Efficient Action
Recognition", arXiv 2021 / CVIU 2023): paste the actor onto another training clip's background.

The actor of clip ``i`` (its per-pixel mask) is kept and everything outside the mask is taken
from clip ``B-1-i`` of the same batch (the batch reversed, as the paper's code pairs clips):
``x'_i = m_i x_i + (1 - m_i) x_{B-1-i}``. The clip now shows the same action in another scene, so
the scene stops predicting the label.

What the paper's code does, and sdn follows:

* the whole batch is mixed with probability 0.5 (one draw per batch);
* a clip whose mask is empty or covers everything is left as it is (there is no actor to move,
  or no background to change), as is the middle clip of an odd batch (its partner is itself);
* the label is mixed by the actor's share ``r`` of the clip's pixels (over all its frames):
  ``w = 1 - (1 - r)^4`` on the actor's label, ``1 - w`` on the background clip's label. A small
  actor on a large borrowed background still carries most of the label, but not all of it;
* with boxes (human detections) the mask is every box scoring at least 0.4.

The mask comes from ``--human_masks_path`` (pixel masks) when given, else from the boxes of
``--human_dets_path``; the dataset crops and flips it with its clip (``actor_mask``).
Boxes leak a rectangle of the actor's own scene into the new one; pixel masks do not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sdn.methods.base import Batch, MethodSetup, float_clips, mix_labels, per_clip, take_background_scene


@dataclass
class ActorCutMixDraw:
    """Whether the batch is mixed, each clip's partner, and which clips are changed."""

    mixed: bool
    partner: Tensor  # long [B]
    changed: Tensor  # bool [B]
    weight: Tensor  # float [B]: the actor clip's share of the label (1 where unchanged)


class ActorCutMix:
    def __init__(self, prob: float):
        self.prob = prob

    def draw(self, masks: Tensor, generator: torch.Generator) -> ActorCutMixDraw:
        """``masks``: bool ``[B, T, H, W]`` actor masks of the batch."""
        batch_size = masks.shape[0]
        mixed = bool(torch.rand((), generator=generator) < self.prob)
        partner = torch.arange(batch_size - 1, -1, -1)
        share = masks.flatten(1).to(torch.float32).mean(dim=1).cpu()
        changed = (share > 0) & (share < 1) & (partner != torch.arange(batch_size)) & mixed
        weight = torch.where(changed, 1 - (1 - share) ** 4, torch.ones_like(share))
        return ActorCutMixDraw(mixed, partner, changed, weight)

    @staticmethod
    def apply(clips: Tensor, masks: Tensor, draw: ActorCutMixDraw) -> Tensor:
        """Actor pixels from each clip, the rest from its partner, for the changed clips."""
        keep = masks.unsqueeze(1).to(clips.dtype)  # [B, 1, T, H, W]
        pasted = keep * clips + (1 - keep) * clips[draw.partner.to(clips.device)]
        return torch.where(per_clip(draw.changed, clips).bool(), pasted, clips)

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        masks = batch.pop("actor_mask")
        draw = self.draw(masks, generator)
        if draw.changed.any():
            batch["clip"] = self.apply(float_clips(batch), masks, draw)
            mix_labels(batch, draw.partner, draw.weight)
            take_background_scene(batch, draw.partner, draw.changed)
        return batch


def build(setup: MethodSetup) -> ActorCutMix:
    return ActorCutMix(setup.opt.actorcutmix_prob)

