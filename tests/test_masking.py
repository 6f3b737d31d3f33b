"""Human and background masking must paint exactly the pixels the original's PIL code painted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from sdn.data.masking import box_slices, is_masking, mask_background, mask_humans, mean_colour

H, W = 24, 32


def _pil_polygon_mask(box, height=H, width=W) -> np.ndarray:
    """The original's polygon for one box, drawn by Pillow on an L image."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    image = Image.new("L", (width, height), 0)
    ImageDraw.Draw(image).polygon([(x1, y1), (x1, y2), (x2, y2), (x2, y1)], fill=255)
    return np.array(image) > 0


def _slices_mask(box, height=H, width=W) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    region = box_slices(np.asarray(box), height, width)
    if region is not None:
        mask[region] = True
    return mask


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Fractional, integer, near-integer, inverted and out-of-frame float32 boxes."""
    boxes = rng.uniform(-12, 45, size=(n, 4))
    kind = rng.integers(0, 4, n)
    boxes[kind == 1] = np.round(boxes[kind == 1])
    boxes[kind == 2] = np.round(boxes[kind == 2]) - 1e-4
    boxes[kind == 3] = np.round(boxes[kind == 3] * 2) / 2
    return boxes.astype(np.float32)


def test_box_coverage_equals_pil_polygon_on_random_boxes():
    rng = np.random.default_rng(0)
    boxes = _random_boxes(rng, 1500)
    boxes = np.concatenate([boxes, np.array([[3, 3, 3, 3], [-0.9, -0.5, 2.2, 1.7], [-5, -5, -1, -1],
                                             [40, 2, 31.5, 9], [1e9, -1e9, 5, 5]], np.float32)])
    mismatches = [box for box in boxes if not np.array_equal(_slices_mask(box), _pil_polygon_mask(box))]
    assert mismatches == []
    # the sample really contains the hard cases
    assert np.any(boxes[:, 2] < boxes[:, 0]) and np.any(boxes < 0) and np.any(boxes[:, 2] > W)


def _pil_mask_humans(frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The original maskout_human on one HWC frame."""
    image = Image.fromarray(frame)
    colour = tuple(int(c) for c in np.round(np.mean(np.asarray(image), axis=(0, 1))).astype(np.int32))
    for box in boxes:
        if box[-1] >= 0.3:
            poly = [(box[0], box[1]), (box[0], box[3]), (box[2], box[3]), (box[2], box[1])]
            ImageDraw.Draw(image).polygon([(float(x), float(y)) for x, y in poly], fill=colour)
    return np.asarray(image)


def _pil_mask_background(frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The original gen_mask + Image.composite on one HWC frame."""
    image = Image.fromarray(frame)
    mask = Image.new("L", image.size, 255)
    for box in boxes:
        if box[-1] >= 0.3:
            poly = [(float(box[0]), float(box[1])), (float(box[0]), float(box[3])),
                    (float(box[2]), float(box[3])), (float(box[2]), float(box[1]))]
            ImageDraw.Draw(mask).polygon(poly, fill=0)
    return np.asarray(Image.composite(Image.new("L", image.size, 0), image, mask).convert("RGB"))


def _clip_and_boxes(rng: np.random.Generator, t: int = 6):
    frames = torch.from_numpy(rng.integers(0, 256, size=(t, 3, H, W), dtype=np.uint8))
    boxes = []
    for i in range(t):
        n = int(rng.integers(0, 4)) if i else 0  # the first frame has no box
        coords = _random_boxes(rng, n)
        scores = rng.choice(np.array([0.1, 0.29, 0.3, 0.31, 0.9], np.float32), n)
        boxes.append(np.concatenate([coords, scores[:, None]], axis=1).astype(np.float32))
    return frames, boxes


def test_mask_humans_equals_original_pil_code():
    rng = np.random.default_rng(1)
    for _ in range(20):
        frames, boxes = _clip_and_boxes(rng)
        out, n_masked = mask_humans(frames, boxes, apply=True)
        expected_count = 0
        for t in range(frames.shape[0]):
            hwc = frames[t].permute(1, 2, 0).numpy()
            assert np.array_equal(out[t].permute(1, 2, 0).numpy(), _pil_mask_humans(hwc, boxes[t]))
            expected_count += bool(np.any(boxes[t][:, -1] >= np.float32(0.3)))
        assert n_masked == expected_count


def test_mask_humans_leaves_input_and_unapplied_clips_alone():
    rng = np.random.default_rng(2)
    frames, boxes = _clip_and_boxes(rng)
    before = frames.clone()
    out, n_masked = mask_humans(frames, boxes, apply=False)
    assert n_masked == 0 and torch.equal(out, before)
    mask_humans(frames, boxes, apply=True)
    assert torch.equal(frames, before)


def test_mean_colour_rounds_half_to_even():
    frame = torch.zeros(3, 1, 2, dtype=torch.uint8)
    frame[0] = torch.tensor([[0, 1]])  # mean 0.5 -> 0
    frame[1] = torch.tensor([[1, 2]])  # mean 1.5 -> 2
    frame[2] = torch.tensor([[2, 3]])  # mean 2.5 -> 2
    assert mean_colour(frame).flatten().tolist() == [0, 2, 2]


def test_a_box_outside_the_frame_still_counts_as_masked():
    frames = torch.full((2, 3, H, W), 7, dtype=torch.uint8)
    boxes = [np.array([[-20, -20, -5, -5, 0.9]], np.float32), np.zeros((0,), np.float32)]
    out, n_masked = mask_humans(frames, boxes, apply=True)
    assert n_masked == 1 and torch.equal(out, frames)


def test_mask_background_equals_original_pil_code():
    rng = np.random.default_rng(3)
    for _ in range(20):
        frames, boxes = _clip_and_boxes(rng)
        out = mask_background(frames, boxes, apply=True)
        for t in range(frames.shape[0]):
            hwc = frames[t].permute(1, 2, 0).numpy()
            expected = hwc if len(boxes[t]) == 0 else _pil_mask_background(hwc, boxes[t])
            assert np.array_equal(out[t].permute(1, 2, 0).numpy(), expected)


def test_mask_background_blacks_out_frames_whose_boxes_are_all_weak():
    frames = torch.full((3, 3, H, W), 200, dtype=torch.uint8)
    boxes = [np.array([[2, 2, 10, 10, 0.29]], np.float32),   # weak only -> all black
             np.zeros((0, 5), np.float32),                      # no box -> unchanged
             np.array([[2, 3, 10, 12, 0.3]], np.float32)]       # kept box -> only it survives
    out = mask_background(frames, boxes, apply=True)
    assert int(out[0].sum()) == 0
    assert torch.equal(out[1], frames[1])
    assert bool((out[2][:, 3:13, 2:11] == 200).all()) and int(out[2].sum()) == 200 * 3 * 10 * 9
    assert torch.equal(mask_background(frames, boxes, apply=False), frames)


@pytest.mark.parametrize("n_masked, n_frames, expected", [(8, 16, True), (7, 16, False), (16, 16, True), (0, 4, False)])
def test_is_masking_threshold_is_inclusive(n_masked, n_frames, expected):
    assert is_masking(n_masked, n_frames) is expected
