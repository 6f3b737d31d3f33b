"""Human detection bookkeeping with known boxes: person filter, threshold, frame indices, interpolation."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sdn.data.annotations import VideoEntry
from sdn.prepare.common import evenly_spaced
from sdn.prepare.detect_humans import (detect_videos, greedy_match, interpolate, keyframes, load_detector,
                                       person_boxes)
from sdn.errors import SdnError

F32 = np.float32


def boxes(*rows) -> np.ndarray:
    return np.array(rows, dtype=F32).reshape(-1, 5)


def test_person_boxes_keep_label_1_at_or_above_the_threshold():
    output = {"boxes": torch.tensor([[1., 2., 3., 4.], [5., 6., 7., 8.], [9., 10., 11., 12.], [0., 0., 1., 1.]]),
              "labels": torch.tensor([1, 3, 1, 1]), "scores": torch.tensor([0.9, 0.95, 0.5, 0.49])}
    kept = person_boxes(output, 0.5)
    assert kept.dtype == F32
    np.testing.assert_array_equal(kept, boxes([1, 2, 3, 4, 0.9], [9, 10, 11, 12, 0.5]))
    assert person_boxes({"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                         "scores": torch.zeros(0)}, 0.5).shape == (0, 5)


def test_keyframes_and_evenly_spaced_frames():
    assert keyframes(10, 1) == list(range(1, 11))
    assert keyframes(10, 3) == [1, 4, 7, 10]
    assert keyframes(11, 3) == [1, 4, 7, 10, 11]
    assert keyframes(1, 4) == [1]
    assert evenly_spaced(300, 5) == [1, 76, 151, 225, 300]
    assert evenly_spaced(3, 5) == [1, 2, 3]
    assert evenly_spaced(10, 1) == [1]


def test_interpolation_of_a_hand_case_is_exact():
    detected = {
        1: boxes([0, 0, 8, 8, 0.5], [100, 100, 110, 120, 1.0]),
        5: boxes([104, 96, 118, 120, 0.75], [4, 4, 12, 16, 0.25], [50, 50, 60, 60, 0.5]),
        6: boxes(),
    }
    frames = interpolate(detected, 6, 0.3)
    assert sorted(frames) == [1, 2, 3, 4, 5, 6]
    # IoU of [0,0,8,8] and [4,4,12,16]: 16 / (64 + 96 - 16) = 0.11; of [100,100,110,120] and
    # [104,96,118,120]: 120 / (200 + 336 - 120) = 0.29; below 0.3 nothing pairs, every box is held
    held_1, held_5 = detected[1], detected[5]
    np.testing.assert_array_equal(frames[2], held_1)
    np.testing.assert_array_equal(frames[3], held_1)  # midpoint: t - a == b - t belongs to a
    np.testing.assert_array_equal(frames[4], held_5)
    np.testing.assert_array_equal(frames[5], held_5)
    assert frames[6].shape == (0, 5)
    # with a looser match both boxes of frame 1 pair up and move linearly
    frames = interpolate(detected, 6, 0.1)
    assert greedy_match(detected[1], detected[5], 0.1) == [(0, 1), (1, 0)]
    np.testing.assert_array_equal(frames[2], boxes([1, 1, 9, 10, 0.4375], [101, 99, 112, 120, 0.9375]))
    np.testing.assert_array_equal(frames[3], boxes([2, 2, 10, 12, 0.375], [102, 98, 114, 120, 0.875]))
    np.testing.assert_array_equal(frames[4], boxes([3, 3, 11, 14, 0.3125], [103, 97, 116, 120, 0.8125],
                                                   [50, 50, 60, 60, 0.5]))
    # nothing to interpolate between a keyframe and an empty one: boxes are held over the first half
    frames = interpolate({1: boxes([0, 0, 4, 4, 1]), 4: boxes()}, 4, 0.3)
    assert [len(frames[t]) for t in (1, 2, 3, 4)] == [1, 1, 0, 0]


def test_greedy_matching_takes_the_best_pair_first():
    a = boxes([0, 0, 10, 10, 1], [2, 0, 12, 10, 1])
    b = boxes([2, 0, 12, 10, 1], [20, 20, 30, 30, 1])
    # box 0 of a overlaps b0 (IoU 0.67) but a1 fits it exactly: a1-b0 goes first, a0 stays alone
    assert greedy_match(a, b, 0.3) == [(1, 0)]
    assert greedy_match(a, boxes(), 0.3) == [] and greedy_match(boxes(), b, 0.3) == []


class FakeDetector:
    """Puts a person at (g, g) for a frame of grey level g, plus a car and a weak person that must be dropped."""

    def __init__(self):
        self.calls = []

    def __call__(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        outputs = []
        for image in images:
            g = round(float(image.mean()) * 255)
            height, width = image.shape[1:]
            self.calls.append((g, width, height))
            outputs.append({"boxes": torch.tensor([[g, g, g + 100.0, g + 200.0], [0, 0, 5, 5], [1, 1, 2, 2]]),
                            "labels": torch.tensor([1, 3, 1]), "scores": torch.tensor([0.8, 0.99, 0.05])})
        return outputs


def grey_video(folder: Path, levels: list[int], size=(40, 30)) -> None:
    folder.mkdir(parents=True)
    for i, level in enumerate(levels, start=1):
        Image.new("RGB", size, (level,) * 3).save(folder / f"image_{i:05d}.jpg", quality=100)


def test_detect_videos_maps_keyframes_to_frame_numbers_and_interpolates(tmp_path):
    grey_video(tmp_path / "v1", [10, 0, 0, 40, 0, 0, 70])  # with --every 3 only keyframes 1, 4, 7 are looked at
    grey_video(tmp_path / "v2", [20, 0, 50])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "image_00001.jpg").write_bytes(b"not a jpeg")
    entries = [VideoEntry(str(tmp_path / "v1"), "vid1", 0, "walk", 7),
               VideoEntry(str(tmp_path / "broken"), "vid3", 0, "walk", 1),
               VideoEntry(str(tmp_path / "v2"), "vid2", 1, "run", 3)]
    saved = {}
    detector = FakeDetector()
    args = argparse.Namespace(every=3, batch_size=2, workers=0, score_threshold=0.5, match_iou=0.3)
    failures = detect_videos(detector, torch.device("cpu"), args, entries,
                             lambda entry, value: saved.setdefault((entry.class_dir, entry.video_id), value), False)
    assert [f.path for f in failures] == [str(tmp_path / "broken" / "image_00001.jpg")]
    assert failures[0].reason.startswith("not a readable JPEG")
    assert sorted(g for g, _, _ in detector.calls) == [10, 20, 40, 50, 70]  # v2's keyframes: 1 and its last, 3
    assert {(w, h) for _, w, h in detector.calls} == {(40, 30)}
    v1 = saved[("walk", "vid1")]
    assert sorted(v1) == list(range(1, 8)) and all(set(f) == {"human_boxes"} for f in v1.values())
    for t, g in [(1, 10), (2, 20), (3, 30), (4, 40), (5, 50), (6, 60), (7, 70)]:
        np.testing.assert_allclose(v1[t]["human_boxes"], boxes([g, g, g + 100, g + 200, 0.8]), rtol=0, atol=1e-4)
    v2 = saved[("run", "vid2")]
    np.testing.assert_allclose(v2[2]["human_boxes"], boxes([35, 35, 135, 235, 0.8]), atol=1e-4)


def test_missing_detector_weights_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(SdnError, match=r"no weights for fasterrcnn_resnet50_fpn: pass --weights PATH, or put "
                                       r"fasterrcnn_resnet50_fpn_coco-258fb6c6\.pth"):
        load_detector("fasterrcnn_resnet50_fpn", None, 0.1, None)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(SdnError, match=r"wrong\.pth: weights do not fit a fasterrcnn_mobilenet_v3_large_320_fpn"):
        load_detector("fasterrcnn_mobilenet_v3_large_320_fpn", str(tmp_path / "wrong.pth"), 0.1, None)
