"""Human masking and background masking of uint8 frames ``[T, 3, H, W]``.

The original drew each box with ``ImageDraw.polygon([(x1,y1), (x1,y2), (x2,y2), (x2,y1)])``
on the stored JPEG frames. For such an axis-aligned polygon PIL fills exactly the pixel
rectangle between the corner coordinates truncated toward zero (``int(x)``), both ends
included, in either corner order, clipped to the image (checked pixel-exactly against Pillow
13 on random fractional, inverted and out-of-frame boxes). We reproduce that with slicing.

``apply`` is the per-clip decision the caller makes (the original's single draw
``u < mask_ratio`` per clip); frames without boxes are never changed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def box_slices(box: np.ndarray, height: int, width: int) -> tuple[slice, slice] | None:
    """Rows and columns PIL fills for one box ``(x1, y1, x2, y2, ...)``, or None when off-frame."""
    # Clamping to [-1, size] first changes nothing on the frame (int() of anything <= -1 is <= -1)
    # and keeps huge coordinates out of integer conversion.
    x1, x2 = (int(min(max(float(v), -1.0), float(width))) for v in (box[0], box[2]))
    y1, y2 = (int(min(max(float(v), -1.0), float(height))) for v in (box[1], box[3]))
    left, right = min(x1, x2), max(x1, x2)
    top, bottom = min(y1, y2), max(y1, y2)
    if right < 0 or bottom < 0 or left >= width or top >= height:
        return None
    return slice(max(top, 0), bottom + 1), slice(max(left, 0), right + 1)


def _drawn_boxes(boxes: np.ndarray, score_th: float) -> np.ndarray:
    """Boxes whose score (last column) is ``>= score_th``, compared in float32 like the original."""
    boxes = np.asarray(boxes, dtype=np.float32)
    if boxes.size == 0:
        return np.zeros((0, 5), dtype=np.float32)
    return boxes[boxes[:, -1] >= np.float32(score_th)]


def _check_lengths(frames: torch.Tensor, boxes_per_frame: Sequence[np.ndarray]) -> None:
    if frames.dim() != 4 or frames.shape[1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames [T, 3, H, W], got {frames.dtype} {list(frames.shape)}")
    if len(boxes_per_frame) != frames.shape[0]:
        raise ValueError(f"{len(boxes_per_frame)} box arrays for {frames.shape[0]} frames")


def mean_colour(frame: torch.Tensor) -> torch.Tensor:
    """Per-channel mean of a ``[3, H, W]`` uint8 frame, rounded half to even (``np.round``, as the original).

    The sum is exact in int64 and divided once in float64, which is what NumPy's float64 mean of
    the uint8 image gave.
    """
    sums = frame.sum(dim=(1, 2), dtype=torch.int64).numpy()
    means = np.round(sums / float(frame.shape[1] * frame.shape[2]))
    return torch.from_numpy(means.astype(np.uint8)).view(3, 1, 1)


def mask_humans(frames: torch.Tensor, boxes_per_frame: Sequence[np.ndarray], apply: bool,
                score_th: float = 0.3) -> tuple[torch.Tensor, int]:
    """Fill every box scoring ``>= score_th`` with the frame's mean colour (taken before drawing).

    Returns the (new) frames and the number of frames in which at least one box was drawn (a box
    counts even when it lies outside the frame, as in the original). The input is not modified.
    """
    _check_lengths(frames, boxes_per_frame)
    if not apply:
        return frames, 0
    out = frames.clone()
    height, width = frames.shape[2], frames.shape[3]
    n_masked = 0
    for t, boxes in enumerate(boxes_per_frame):
        drawn = _drawn_boxes(boxes, score_th)
        if len(drawn) == 0:
            continue
        n_masked += 1
        colour = mean_colour(frames[t])
        for box in drawn:
            region = box_slices(box, height, width)
            if region is not None:
                out[t, :, region[0], region[1]] = colour
    return out, n_masked


def is_masking(n_masked: int, n_frames: int, mask_th: float = 0.5) -> bool:
    """The clip counts as human-masked when ``n_masked / n_frames >= mask_th`` (0.5 in the original)."""
    if n_frames <= 0:
        raise ValueError("is_masking needs at least one frame")
    return n_masked / n_frames >= mask_th


def mask_background(frames: torch.Tensor, boxes_per_frame: Sequence[np.ndarray], apply: bool,
                    score_th: float = 0.3) -> torch.Tensor:
    """Black out everything but the boxes scoring ``>= score_th`` in frames that have boxes.

    A frame whose boxes all score below the threshold becomes entirely black (as the original);
    frames without any box are unchanged. The input is not modified.
    """
    _check_lengths(frames, boxes_per_frame)
    if not apply:
        return frames
    out = frames.clone()
    height, width = frames.shape[2], frames.shape[3]
    for t, boxes in enumerate(boxes_per_frame):
        if np.size(boxes) == 0:
            continue
        keep = torch.zeros((height, width), dtype=torch.bool)
        for box in _drawn_boxes(boxes, score_th):
            region = box_slices(box, height, width)
            if region is not None:
                keep[region] = True
        out[t] = frames[t] * keep
    return out
