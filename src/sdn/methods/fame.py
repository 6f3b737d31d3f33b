"""FAME, Foreground-bAckground MErging (Ding et al., "Motion-aware Contrastive Video
Representation Learning via Foreground-background Merging", CVPR 2022).

The moving foreground of a clip is found without a detector and pasted onto the background of
another clip of the batch: ``x'_i = m_i x_i + (1 - m_i) x_{π(i)}`` for a random permutation π.
The label is the foreground clip's; the scene target (SDN) is the background clip's.

The foreground, as FAME finds it:

1. motion: the mean over time of the absolute frame differences (summed over RGB, on 0..1
   pixels), Gaussian-blurred and scaled to [0, 1] per clip;
2. colour: the clip's mean frame in HSV, quantised into 10 x 10 x 10 colour bins (hue and
   saturation as a point on the colour wheel, and value); the 50% most moving pixels give a
   foreground colour histogram, the 10% least moving a background one (+1 per bin);
3. each pixel's foreground likelihood ``p_fg / (p_fg + p_bg)`` of its colour, blurred and scaled
   again; the top ``--fame_fg_ratio`` (0.5, FAME's β) of pixels form the mask, the same for all
   frames.

The blur kernel is ``int(0.1 * S) // 2 * 2 + 1`` pixels wide with σ = width / 3, as FAME's code.
FAME's own use is self-supervised (every clip merged); the StillMix paper (ICCV 2023) reran it
as a supervised augmentation, changing each clip with a probability it tuned per dataset
(0.25-0.5); the default here is 0.5, its HMDB-51 value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from sdn.methods.base import Batch, MethodSetup, draw_applied, float_clips, per_clip, take_background_scene

COLOUR_BINS = 10  # per axis of the quantised HSV space
FOREGROUND_SEEDS = 0.5  # share of most moving pixels that seed the foreground colours
BACKGROUND_SEEDS = 0.1  # share of least moving pixels that seed the background colours
EPS = 1e-8


def _gaussian_blur(maps: Tensor, size: int) -> Tensor:
    """Blur ``[B, H, W]`` maps with a ``size`` x ``size`` Gaussian (σ = size / 3), reflecting at borders."""
    if size <= 1:
        return maps
    sigma = size / 3
    offsets = torch.arange(size, dtype=maps.dtype, device=maps.device) - (size - 1) / 2
    kernel = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    x = F.pad(maps.unsqueeze(1), (size // 2,) * 4, mode="reflect")  # size is about a tenth of the frame
    x = F.conv2d(x, kernel.view(1, 1, 1, size))
    x = F.conv2d(x, kernel.view(1, 1, size, 1))
    return x.squeeze(1)


def _scale_each(maps: Tensor) -> Tensor:
    """Each ``[H, W]`` map scaled to [0, 1] (min subtracted, divided by the max)."""
    flat = maps.flatten(1)
    flat = flat - flat.min(dim=1, keepdim=True).values
    flat = flat / (flat.max(dim=1, keepdim=True).values + EPS)
    return flat.view_as(maps)


def colour_bins(images: Tensor) -> Tensor:
    """The HSV colour bin of every pixel of ``[B, 3, H, W]`` RGB images in [0, 1] -> long ``[B, H*W]``.

    Hue and saturation become a point on the colour wheel (so red at hue 0 and hue 1 share bins),
    value is the third axis; each axis is rounded to ``COLOUR_BINS`` levels.
    """
    top, _ = images.max(dim=1)
    bottom, _ = images.min(dim=1)
    spread = top - bottom
    saturation = spread / (top + EPS)
    r, g, b = images.unbind(dim=1)
    safe = spread + EPS
    hue = torch.where(top == r, ((g - b) / safe) % 6, torch.where(top == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = torch.where(spread > 0, hue / 6, torch.zeros_like(hue))  # a fraction of a turn
    x = (saturation * torch.cos(2 * math.pi * hue) + 1) / 2
    y = (saturation * torch.sin(2 * math.pi * hue) + 1) / 2
    levels = COLOUR_BINS - 1
    bx, by, bv = (torch.round(axis * levels).long() for axis in (x, y, top))
    return (bx + by * COLOUR_BINS + bv * COLOUR_BINS ** 2).flatten(1)


def _histograms(bins: Tensor, index: Tensor) -> Tensor:
    """Per-clip counts of the colour bins at the pixels ``index`` -> float ``[B, bins]``."""
    counts = torch.zeros(bins.shape[0], COLOUR_BINS ** 3, device=bins.device)
    return counts.scatter_add_(1, bins.gather(1, index), torch.ones_like(index, dtype=counts.dtype))


def foreground_masks(clips: Tensor, fg_ratio: float) -> Tensor:
    """FAME's foreground of float clips ``[B, 3, T, H, W]`` (0..255) -> float 0/1 masks ``[B, H, W]``."""
    batch, _, _, height, width = clips.shape
    pixels = height * width
    x = clips / 255.0
    blur = int(0.1 * min(height, width)) // 2 * 2 + 1
    motion = (x[:, :, :-1] - x[:, :, 1:]).abs().sum(dim=1).mean(dim=1)  # [B, H, W]
    motion = _scale_each(_gaussian_blur(motion, blur)).flatten(1)
    bins = colour_bins(x.mean(dim=2))
    fg_hist = _histograms(bins, motion.topk(max(1, int(FOREGROUND_SEEDS * pixels)), dim=1).indices)
    bg_hist = _histograms(bins, motion.topk(max(1, int(BACKGROUND_SEEDS * pixels)), dim=1, largest=False).indices) + 1
    fg_prob = (fg_hist / (fg_hist.sum(dim=1, keepdim=True) + EPS)).gather(1, bins)
    bg_prob = (bg_hist / (bg_hist.sum(dim=1, keepdim=True) + EPS)).gather(1, bins)
    likelihood = (fg_prob / (fg_prob + bg_prob)).view(batch, height, width)
    likelihood = _scale_each(_gaussian_blur(likelihood, blur)).flatten(1)
    keep = likelihood.topk(int(fg_ratio * pixels), dim=1).indices
    mask = torch.zeros_like(likelihood).scatter_(1, keep, 1.0)
    return mask.view(batch, height, width)


@dataclass
class FameDraw:
    """Each clip's background clip, and which clips are changed."""

    background: Tensor  # long [B]
    changed: Tensor  # bool [B]


class Fame:
    def __init__(self, fg_ratio: float, prob: float):
        self.fg_ratio, self.prob = fg_ratio, prob

    def draw(self, batch_size: int, generator: torch.Generator) -> FameDraw:
        background = torch.randperm(batch_size, generator=generator)
        return FameDraw(background, draw_applied(self.prob, batch_size, generator))

    def apply(self, clips: Tensor, draw: FameDraw) -> tuple[Tensor, Tensor]:
        """The merged clips and the foreground masks ``[B, H, W]`` used."""
        masks = foreground_masks(clips, self.fg_ratio)
        keep = masks[:, None, None]  # [B, 1, 1, H, W]: the same pixels in every frame
        merged = keep * clips + (1 - keep) * clips[draw.background.to(clips.device)]
        return torch.where(per_clip(draw.changed, clips).bool(), merged, clips), masks

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        clips = float_clips(batch)
        draw = self.draw(clips.shape[0], generator)
        if draw.changed.any():
            batch["clip"], _ = self.apply(clips, draw)
            take_background_scene(batch, draw.background, draw.changed)
        return batch


def build(setup: MethodSetup) -> Fame:
    return Fame(setup.opt.fame_fg_ratio, setup.opt.fame_prob)

