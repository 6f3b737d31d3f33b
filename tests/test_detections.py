"""Human detections: lookups, the 0.3/0.7 video filter, repeat-to-length, formats."""

from __future__ import annotations

import random

import numpy as np
import pytest

from sdn.data.detections import (HumanDetections, repeat_to_length, save_detections_npy,
                                 save_detections_npz)
from sdn.data.safe_pickle import save_npz, save_pickled_npy
from sdn.errors import SdnError


def _boxes(*rows) -> dict:
    return {"human_boxes": np.array(rows, dtype=np.float32).reshape(-1, 5)}


def _detections() -> dict:
    """Two videos of 10 frames; 'kept_video' has 7 confident frames, 'weak_video' 6."""
    kept, weak = {}, {}
    for frame in range(1, 11):
        kept[frame] = _boxes([1, 2, 30, 40, 0.9]) if frame <= 7 else _boxes([1, 2, 3, 4, 0.3])
        weak[frame] = _boxes([5, 5, 9, 9, 0.31], [0, 0, 1, 1, 0.1]) if frame <= 6 else _boxes()
    weak[np.int64(11)] = {"human_boxes": np.zeros((0,), np.float32)}  # a 1-D empty array
    return {"dancing": {"kept_video_": kept}, "running": {"weak_video_": weak}}


@pytest.fixture(params=["npy", "npz"])
def dets(request, tmp_path) -> HumanDetections:
    if request.param == "npy":
        save_detections_npy(tmp_path / "detection_train_merged_rearranged.npy", _detections())
    else:
        save_detections_npz(tmp_path / "detection_train.npz", _detections())
    return HumanDetections.from_path(str(tmp_path), "training")


def test_boxes_lookup(dets):
    boxes = dets.boxes("dancing", "kept_video_", 3)
    assert boxes.dtype == np.float32 and boxes.tolist() == [[1, 2, 30, 40, pytest.approx(0.9)]]
    assert dets.boxes("running", "weak_video_", 2).shape == (2, 5)
    assert dets.boxes("running", "weak_video_", 8).shape == (0, 5)
    assert dets.boxes("running", "weak_video_", 11).shape == (0, 5)  # 1-D empty accepted


def test_missing_entries_name_file_class_video_and_frame(dets):
    with pytest.raises(SdnError, match=r"detection_train.*class 'dancing', video 'kept_video_' .*frame 12"):
        dets.boxes("dancing", "kept_video_", 12)
    with pytest.raises(SdnError, match=r"class 'dancing', video 'nothere____'"):
        dets.boxes("dancing", "nothere____", 1)
    with pytest.raises(SdnError, match=r"class 'jumping'"):
        dets.has_enough_detections("jumping", "kept_video_", 10)


def test_video_filter_is_strict_on_score_and_inclusive_on_ratio(dets):
    assert dets.has_enough_detections("dancing", "kept_video_", 10)  # 7/10 >= 0.7 (0.3 scores do not count)
    assert not dets.has_enough_detections("dancing", "kept_video_", 11)  # 7/11 < 0.7
    assert not dets.has_enough_detections("running", "weak_video_", 10)  # 6/10
    assert dets.has_enough_detections("running", "weak_video_", 8)  # 6/8: divided by the n_frames value
    assert dets.has_enough_detections("running", "weak_video_", 6, score_th=0.3, ratio_th=1.0)


def test_safe_file_wins_and_missing_files_are_reported(tmp_path):
    save_detections_npy(tmp_path / "detection_val_merged_rearranged.npy", {"a": {"v": {1: _boxes([0, 0, 1, 1, 0.5])}}})
    save_detections_npz(tmp_path / "detection_val.npz", {"a": {"v": {1: _boxes([0, 0, 2, 2, 0.5])}}})
    dets = HumanDetections.from_path(str(tmp_path), "validation")
    assert dets.path.endswith("detection_val.npz") and dets.boxes("a", "v", 1)[0, 2] == 2
    with pytest.raises(SdnError, match="detection_train_merged_rearranged.npy"):
        HumanDetections.from_path(str(tmp_path), "training")


@pytest.mark.parametrize("value, message", [
    (np.array([[0, 0, 1, np.nan, 0.5]], np.float32), "NaN"),
    (np.array([0, 0, 1, 1, 0.5], np.float32), r"shape \[5\]"),
    (np.array([[0, 0, 1, 0.5]], np.float32), r"shape \[1, 4\]"),
    ("boxes", "numeric array"),
])
def test_invalid_boxes_are_reported(tmp_path, value, message):
    data = {"c": {"good_video_": {1: _boxes([0, 0, 1, 1, 0.9])}, "bad_video__": {1: _boxes(), 2: {"human_boxes": value}}}}
    save_pickled_npy(tmp_path / "detection_train_merged_rearranged.npy", data)
    with pytest.raises(SdnError, match=message) as error:
        HumanDetections.from_path(str(tmp_path), "training")
    assert "class 'c', video 'bad_video__', frame 2" in str(error.value)


def test_wider_rows_keep_the_last_column_as_score(tmp_path):
    data = {"c": {"v": {1: {"human_boxes": np.array([[1, 2, 3, 4, 99, 0.8]], np.float64)}}}}
    dets = HumanDetections.from_dict(data)
    assert dets.boxes("c", "v", 1).tolist() == [[1, 2, 3, 4, pytest.approx(0.8)]]


def test_npz_and_npy_agree_on_every_frame(tmp_path):
    rng = np.random.default_rng(0)
    data = {f"class {c}": {f"vid_{c}_{v:05d}": {f: _boxes(*rng.uniform(0, 50, (int(rng.integers(0, 4)), 5)))
                                                   for f in rng.permutation(np.arange(1, 9))}
                           for v in range(3)} for c in range(2)}
    save_detections_npy(tmp_path / "detection_train_merged_rearranged.npy", data)
    save_detections_npz(tmp_path / "detection_val.npz", data)
    a = HumanDetections.from_path(str(tmp_path), "training")
    b = HumanDetections.from_path(str(tmp_path), "validation")
    for class_dir, videos in data.items():
        for video_id, frames in videos.items():
            for frame, value in frames.items():
                assert np.array_equal(a.boxes(class_dir, video_id, frame), value["human_boxes"])
                assert np.array_equal(b.boxes(class_dir, video_id, frame), value["human_boxes"])
            assert a.has_enough_detections(class_dir, video_id, 8) == b.has_enough_detections(class_dir, video_id, 8)


@pytest.mark.parametrize("rng", [np.random.default_rng(0), random.Random(0)])
def test_repeat_to_length_keeps_order_then_shuffled_copies(rng):
    kept = list(range(3))
    result = repeat_to_length(kept, 10, rng)
    assert len(result) == 10 and result[:3] == kept
    for start in (3, 6):  # ceil(10/3) - 1 = 3 shuffled copies, the last truncated
        assert sorted(result[start:start + 3]) == kept
    assert set(result[9:]) <= set(kept)
    assert repeat_to_length([7, 8], 2, rng) == [7, 8]  # nothing filtered: unchanged (the original crashed)
    assert repeat_to_length([7, 8], 4, rng)[:2] == [7, 8]
    with pytest.raises(SdnError, match="0 of 5"):
        repeat_to_length([], 5, rng)


def test_inconsistent_or_foreign_npz_is_rejected(tmp_path):
    save_detections_npz(tmp_path / "detection_train.npz", _detections())
    with np.load(tmp_path / "detection_train.npz") as npz:
        arrays = dict(npz)
    arrays["frame_indices"] = arrays["frame_indices"][::-1].copy()  # not increasing within a video
    save_npz(tmp_path / "detection_train.npz", arrays)
    with pytest.raises(SdnError, match="strictly increasing"):
        HumanDetections.from_path(str(tmp_path), "training")
    arrays["format"] = np.array("sdn-scene-labels")
    save_npz(tmp_path / "detection_train.npz", arrays)
    with pytest.raises(SdnError, match="expected format 'sdn-human-detections'"):
        HumanDetections.from_path(str(tmp_path), "training")
    (tmp_path / "detection_train.npz").write_bytes(b"garbage")
    with pytest.raises(SdnError, match="detection_train.npz"):
        HumanDetections.from_path(str(tmp_path), "training")
