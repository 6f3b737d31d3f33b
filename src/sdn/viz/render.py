"""Activation maps drawn over their frames: a PNG strip and an animated GIF.

Both show the same rows — the input frames, then one row per model — so two checkpoints can be
compared on exactly the same pixels (the SDN paper's figure). Each row has a title band saying
what it shows (model, explained class, probability). Frames are drawn in square cells of
``cell`` pixels, so small training clips stay legible and the image size is predictable:
the strip is ``frames * cell`` wide (or as wide as its longest title) and
``rows * (TITLE_HEIGHT + cell)`` high; every GIF frame is one cell wide (or as wide as the
longest title) and as high as the strip.
"""

from __future__ import annotations

import functools
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from sdn.io import atomic_write_bytes

TITLE_HEIGHT = 14
TITLE_MARGIN = 2
TITLE_BACKGROUND = (255, 255, 255)
TITLE_COLOUR = (0, 0, 0)


@dataclass(frozen=True)
class Row:
    """One row of the figure: a title and the frames ``uint8 [T, H, W, 3]``."""

    title: str
    frames: np.ndarray


def clip_to_rgb(clip: torch.Tensor) -> np.ndarray:
    """A dataset clip ``uint8 [3, T, H, W]`` as ``uint8 [T, H, W, 3]`` frames for drawing."""
    if clip.dtype != torch.uint8 or clip.dim() != 4 or clip.shape[0] != 3:
        raise ValueError(f"expected a uint8 clip [3, T, H, W], got {clip.dtype} {tuple(clip.shape)}")
    return clip.permute(1, 2, 3, 0).contiguous().cpu().numpy()


def overlay(frames: np.ndarray, maps: torch.Tensor | np.ndarray, alpha: float = 0.5,
            colormap: str = "jet") -> np.ndarray:
    """Blend ``maps`` ``[T, H, W]`` in [0, 1], coloured with ``colormap``, over ``frames`` ``uint8 [T, H, W, 3]``."""
    values = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    if values.shape != frames.shape[:3]:
        raise ValueError(f"map shape {values.shape} does not match the frames {frames.shape[:3]}")
    colours = matplotlib.colormaps[colormap](np.clip(values, 0.0, 1.0))[..., :3] * 255.0
    blended = (1.0 - alpha) * frames.astype(np.float32) + alpha * colours
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def spread(total: int, count: int) -> list[int]:
    """``count`` positions spread evenly over ``range(total)``, ends included (all of them when there are fewer)."""
    if count >= total:
        return list(range(total))
    return [int(round(i * (total - 1) / max(count - 1, 1))) for i in range(count)]


def _cell(frame: np.ndarray, cell: int) -> Image.Image:
    image = Image.fromarray(frame)
    return image if image.size == (cell, cell) else image.resize((cell, cell), Image.Resampling.BILINEAR)


@functools.lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def title_width(text: str) -> int:
    """Pixels a title needs, margins included."""
    return int(math.ceil(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(text, font=_font()))) + 2 * TITLE_MARGIN


def _title_band(text: str, width: int) -> Image.Image:
    band = Image.new("RGB", (width, TITLE_HEIGHT), TITLE_BACKGROUND)
    ImageDraw.Draw(band).text((TITLE_MARGIN, 1), text, fill=TITLE_COLOUR, font=_font())
    return band


def _grid(rows: Sequence[Row], positions: Sequence[int], cell: int) -> Image.Image:
    """Rows of cells (one column per position), each under its title band; wide enough for every title."""
    width = max(len(positions) * cell, *(title_width(row.title) for row in rows))
    image = Image.new("RGB", (width, len(rows) * (TITLE_HEIGHT + cell)), TITLE_BACKGROUND)
    for r, row in enumerate(rows):
        top = r * (TITLE_HEIGHT + cell)
        image.paste(_title_band(row.title, width), (0, top))
        for c, position in enumerate(positions):
            image.paste(_cell(row.frames[position], cell), (c * cell, top + TITLE_HEIGHT))
    return image


def strip(rows: Sequence[Row], frame_count: int, cell: int) -> Image.Image:
    """The PNG figure: ``frame_count`` evenly spaced frames of every row."""
    return _grid(rows, spread(len(rows[0].frames), frame_count), cell)


def animation(rows: Sequence[Row], cell: int) -> list[Image.Image]:
    """The GIF frames: every clip frame, all rows stacked, titles on each."""
    return [_grid(rows, [t], cell) for t in range(len(rows[0].frames))]


def save_png(image: Image.Image, path: str | os.PathLike) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def save_gif(images: Sequence[Image.Image], path: str | os.PathLike, fps: float) -> None:
    """An endlessly looping GIF at ``fps`` frames per second."""
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=list(images[1:]),
                   duration=int(round(1000 / fps)), loop=0)
    atomic_write_bytes(path, buffer.getvalue())
