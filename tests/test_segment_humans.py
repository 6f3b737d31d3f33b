"""``sdn prepare segment-humans``: the real Mask R-CNN code path on frames made here.

The model is torchvision's ``maskrcnn_resnet50_fpn`` built with random weights and saved in its
state-dict layout (nothing is downloaded); its person logit and person mask logit are biased so
that it "finds" people, with full masks inside their boxes (random weights would find none). The
tests check what the step adds to that model: the person filter, frame-size masks, keyframes and
the nearest-keyframe fill, the file format and keys, resuming and the failure list.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from sdn.cli.main import main as sdn_main
from sdn.data.annotations import VideoEntry
from sdn.data.human_masks import HumanMasks
from sdn.data.test_splits import read_split
from sdn.data.video import FrameFolder
from sdn.errors import SdnError
from sdn.prepare import segment_humans
from sdn.prepare.detect_humans import load_detector
from sdn.prepare.segment_humans import nearest_keyframe_masks, person_mask, segment_videos
from test_prepare_scuba import actor_mask, render, write_frames

CLASSES = ["Punch", "Surfing"]
HEIGHT, WIDTH = 32, 40
LENGTHS = {"validation": 5, "training": 3}


def sdn(*args) -> int:
    return sdn_main([str(arg) for arg in args])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """One validation and one training video per class, and the biased random Mask R-CNN weights."""
    root = tmp_path_factory.mktemp("segment")
    database = {}
    for c, label in enumerate(CLASSES):
        for subset, n_frames in LENGTHS.items():
            key = f"v_{label}_{subset[:3]}"
            write_frames(root / "jpg" / label / key, render(actor_mask(n_frames, HEIGHT, WIDTH, c), seed=c))
            database[key] = {"subset": subset, "annotations": {"label": label}}
    (root / "ucf.json").write_text(json.dumps({"labels": CLASSES, "database": database}))
    torch.manual_seed(0)
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[1] = 20.0
        model.roi_heads.mask_predictor.mask_fcn_logits.bias[1] = 20.0
    torch.save(model.state_dict(), root / "maskrcnn.pth")
    return root


def segment_args(root: Path, out, *extra) -> list:
    return ["prepare", "segment-humans", "--weights", root / "maskrcnn.pth", "--min_size", 32, "--max_detections", 1,
            "--every", 2, "--device", "cpu", "--dataset", "ucf101", "--video_path", root / "jpg", "--annotation_path",
            root / "ucf.json", "--out", root / out, "--workers", 0, "--no_progress", *extra]


@pytest.fixture(scope="module")
def segmented(data) -> Path:
    assert sdn(*segment_args(data, "masks")) == 0
    return data / "masks"


# ----------------------------------------------------------------------------------------------
# Pieces


def test_person_mask_is_the_union_of_people_at_or_above_the_threshold():
    masks = torch.zeros(4, 1, 3, 4)
    masks[0, 0, 0, 0] = 0.9  # a person
    masks[1, 0, 1, 1] = 0.9  # not a person
    masks[2, 0, 2, 2] = 0.9  # a person below the score threshold
    masks[3, 0, 2, 3] = 0.5  # a person, exactly at the mask threshold
    masks[3, 0, 0, 3] = 0.49
    output = {"labels": torch.tensor([1, 3, 1, 1]), "scores": torch.tensor([0.8, 0.99, 0.4, 0.5]), "masks": masks}
    expected = np.zeros((3, 4), dtype=bool)
    expected[0, 0] = expected[2, 3] = True
    np.testing.assert_array_equal(person_mask(output, 0.5, 0.5, 3, 4), expected)
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0), "masks": torch.zeros(0, 1, 3, 4)}
    assert not person_mask(empty, 0.5, 0.5, 3, 4).any() and person_mask(empty, 0.5, 0.5, 3, 4).shape == (3, 4)


def test_frames_between_keyframes_take_the_nearest_keyframes_mask():
    found = {t: np.full((1, 2), t, dtype=np.int64) for t in (1, 4, 7, 8)}  # keyframes(8, 3)
    filled = nearest_keyframe_masks(found, 8, "video")
    assert filled[:, 0, 0].tolist() == [1, 1, 4, 4, 4, 7, 7, 8]
    ties = nearest_keyframe_masks({1: np.zeros((1, 1)), 3: np.ones((1, 1))}, 3, "video")
    assert ties[:, 0, 0].tolist() == [0, 0, 1]  # frame 2 is as near to 1 as to 3: the earlier wins
    with pytest.raises(SdnError, match="video: frames have different sizes"):
        nearest_keyframe_masks({1: np.zeros((2, 2)), 2: np.zeros((2, 3))}, 2, "video")


class FakeModel:
    """A person covering the left ``grey / 10`` columns of each frame: which frames were looked at shows."""

    def __init__(self):
        self.calls = []

    def __call__(self, images):
        outputs = []
        for image in images:
            grey = round(float(image[0, 0, 0]) * 255)
            self.calls.append(grey)
            masks = torch.zeros(1, 1, *image.shape[1:])
            masks[0, 0, :, : grey // 10] = 1.0
            outputs.append({"labels": torch.tensor([1]), "scores": torch.tensor([0.9]), "masks": masks})
        return outputs


def test_segment_videos_fills_every_frame_from_the_keyframes(tmp_path):
    from test_prepare_boxes import grey_video

    grey_video(tmp_path / "v1", [10, 0, 30, 0, 50])  # --every 2: keyframes 1, 3, 5
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "image_00001.jpg").write_bytes(b"not a jpeg")
    entries = [VideoEntry(str(tmp_path / "v1"), "vid1", 0, "walk", 5),
               VideoEntry(str(tmp_path / "broken"), "vid2", 0, "walk", 1)]
    saved, model = {}, FakeModel()
    args = argparse.Namespace(every=2, batch_size=2, workers=0, score_threshold=0.5, mask_threshold=0.5)
    failures = segment_videos(model, torch.device("cpu"), args, entries,
                              lambda entry, value: saved.setdefault(entry.video_id, value), False)
    assert [f.path for f in failures] == [str(tmp_path / "broken" / "image_00001.jpg")]
    assert sorted(model.calls) == [10, 30, 50]
    mask = saved["vid1"]
    assert mask.shape == (5, 30, 40) and mask.dtype == bool
    assert [int(m[0].sum()) for m in mask] == [1, 1, 3, 3, 5]  # frame 2 -> 1 (tie), frame 4 -> 3 (tie)


def test_weights_of_another_model_are_a_clear_error(tmp_path):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(SdnError, match=r"wrong\.pth: weights do not fit a maskrcnn_resnet50_fpn"):
        load_detector("maskrcnn_resnet50_fpn", str(tmp_path / "wrong.pth"), 0.5, 32)


# ----------------------------------------------------------------------------------------------
# The command


@pytest.mark.slow
def test_masks_are_written_per_split_in_the_human_masks_format(data, segmented):
    for subset, n_frames in LENGTHS.items():
        masks = HumanMasks.from_path(str(segmented), subset)
        assert masks.source == "segmentation" and len(masks) == len(CLASSES)
        for label in CLASSES:
            key = f"v_{label}_{subset[:3]}"  # keyed by (class directory, video id), as the detections
            assert masks.shape(label, key) == (n_frames, HEIGHT, WIDTH)  # the stored frames' pixels
            video = masks.video(label, key)
            assert video[0].any()  # the biased model finds a "person"
            for t in range(1, n_frames - 1, 2):  # keyframes 1, 3, 5 (and the last): frame t + 1 copies frame t
                np.testing.assert_array_equal(video[t], video[t - 1])


@pytest.mark.slow
def test_the_stored_mask_is_the_models_mask_of_the_stored_frame(data, segmented):
    model = load_detector("maskrcnn_resnet50_fpn", str(data / "maskrcnn.pth"), 0.5, 32, {"box_detections_per_img": 1})
    frames = FrameFolder(data / "jpg" / "Surfing" / "v_Surfing_val").read([3])
    expected = segment_humans.segment(model, frames, torch.device("cpu"), 0.5, 0.5)[0]
    stored = HumanMasks.from_path(str(segmented), "validation").frames("Surfing", "v_Surfing_val", [3])[0]
    np.testing.assert_array_equal(stored, expected)


@pytest.mark.slow
def test_a_rerun_skips_and_the_masks_feed_sdn_prepare_scuba(data, segmented, capsys):
    before = (segmented / "masks_val.npz").read_bytes()
    assert sdn(*segment_args(data, "masks")) == 0
    assert "is complete; skipped" in capsys.readouterr().out
    assert (segmented / "masks_val.npz").read_bytes() == before
    assert sdn("prepare", "scuba", "--dataset", "ucf101", "--video_path", data / "jpg", "--annotation_path",
               data / "ucf.json", "--human_masks_path", segmented, "--n_stripes", 1, "--min_frames", 0,
               "--out", data / "scuba", "--workers", 0, "--no_progress") == 0
    assert "person segmentation masks" in read_split(str(data / "scuba" / "scuba")).description


@pytest.mark.slow
def test_an_interrupted_run_resumes_where_it_stopped(data, segmented, monkeypatch, capsys):
    real, calls = segment_humans.segment, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 2:  # --batch_size 8 holds a whole video: the second video
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(segment_humans, "segment", interrupted)
    args = segment_args(data, "resumed", "--subsets", "validation")
    assert sdn(*args) == 130
    assert len(list((data / "resumed" / ".masks_val.npz.partial").glob("*.npz"))) == 1
    assert not (data / "resumed" / "masks_val.npz").exists()
    monkeypatch.setattr(segment_humans, "segment", real)
    capsys.readouterr()
    assert sdn(*args) == 0
    assert "human masks of 2 videos (1 now, 1 from an earlier run), 0 failed" in capsys.readouterr().out
    assert not (data / "resumed" / ".masks_val.npz.partial").exists()
    assert (data / "resumed" / "masks_val.npz").read_bytes() == (segmented / "masks_val.npz").read_bytes()


def test_bad_options_are_one_line_errors(data, capsys):
    assert sdn(*segment_args(data, "x", "--every", 0)) == 2
    assert "--every must be at least 1" in capsys.readouterr().err
    assert sdn(*segment_args(data, "x", "--mask_threshold", 2)) == 2
    assert "--mask_threshold must be between 0 and 1" in capsys.readouterr().err
