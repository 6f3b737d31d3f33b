"""The synthetic scene-biased dataset: formats of every file, bias statistics, determinism, CLI."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdn.cli import synth as synth_cli
from sdn.data.detections import HumanDetections
from sdn.data.safe_pickle import load_pickled_npy
from sdn.data.scene_labels import SceneLabels
from sdn.data.synth import generate
from sdn.errors import SdnError

SMALL = dict(classes=3, train_per_class=4, val_per_class=2, ooc_per_class=2, frames=8, width=48, height=40, seed=3)


@pytest.fixture(scope="module")
def dataset(synth_dataset) -> tuple[Path, dict]:
    return synth_dataset(**SMALL)


def _load(path: Path):
    return json.loads(path.read_text())


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union


def test_kinetics_layout_and_annotations(dataset):
    root, summary = dataset
    kinetics, ooc = _load(root / "kinetics.json"), _load(root / "kinetics_ooc.json")
    assert kinetics["labels"] == ooc["labels"] == summary["classes"] == ["rise", "fall", "sway"]
    subsets = [entry["subset"] for entry in kinetics["database"].values()]
    assert subsets.count("training") == 12 and subsets.count("validation") == 6
    assert sorted(k for k, e in ooc["database"].items() if e["subset"] == "training") == \
        sorted(k for k, e in kinetics["database"].items() if e["subset"] == "training")
    ooc_val = {k for k, e in ooc["database"].items() if e["subset"] == "validation"}
    assert len(ooc_val) == 6 and not ooc_val & set(kinetics["database"])
    ids = set()
    for key, entry in {**kinetics["database"], **ooc["database"]}.items():
        assert re.fullmatch(r"[A-Za-z0-9_-]{11}_000000_\d{6}", key)
        ids.add(key[:-14])
        assert entry["annotations"]["label"] in kinetics["labels"]
        folder = root / "jpg" / ("train" if entry["subset"] == "training" else "val") / entry["annotations"]["label"] / key
        n_frames = int(float((folder / "n_frames").read_text()))
        images = sorted(p.name for p in folder.glob("image_*.jpg"))
        assert n_frames == len(images) == 8 and images[0] == "image_00001.jpg" and images[-1] == "image_00008.jpg"
    assert len(ids) == 24 and all(len(i) == 11 for i in ids)
    with Image.open(next((root / "jpg" / "train").glob("*/*/image_00001.jpg"))) as image:
        assert image.size == (48, 40) and image.mode == "RGB"


def test_scene_labels_are_probabilities_from_an_imperfect_scene_model(dataset):
    root, summary = dataset
    raw = load_pickled_npy(root / "places" / "places_train.npy")
    entry = next(iter(next(iter(raw.values())).values()))
    assert entry["pred_cls"].dtype == np.int64 and entry["probs"].dtype == np.float32
    assert entry["probs"].shape == (len(entry["pred_cls"]), 3)
    agree = []
    for folder, split in (("places", "training"), ("places_safe", "validation")):
        labels = SceneLabels.from_path(str(root / folder), split)
        assert labels.multiple and labels.num_places == 3
        for video in summary["videos"]:
            if (video["split"] == "training") == (split == "training"):
                soft = labels.target(video["label"], video["youtube_id"], soft=True)
                assert soft.sum() == pytest.approx(1.0, abs=1e-5) and soft.max() < 0.999  # not one-hot
                agree.append(labels.target(video["label"], video["youtube_id"], soft=False) == video["scene"])
    assert np.mean(agree) >= 0.6  # mostly right; that it is sometimes wrong is tested on a larger set


def test_scene_model_disagrees_sometimes_on_a_larger_set(tmp_path):
    summary = generate(tmp_path / "d", classes=4, train_per_class=10, val_per_class=1, ooc_per_class=0,
                       frames=3, width=40, height=32, diving48=False, seed=1)
    assert 0.7 <= summary["statistics"]["scene_model_agreement"] < 1.0


def test_detections_cover_every_frame_and_follow_the_actor(dataset):
    root, summary = dataset
    for folder in ("dets", "dets_safe"):
        ious, kept = [], []
        for split, subset in (("training", "training"), ("validation", "validation"), ("ooc", "validation")):
            dets = HumanDetections.from_path(str(root / folder), subset)
            for video in (v for v in summary["videos"] if v["split"] == split):
                for frame in range(1, 9):
                    boxes = dets.boxes(video["label"], video["youtube_id"], frame)
                    assert boxes.dtype == np.float32 and boxes.shape[1] == 5
                    assert np.all((boxes[:, 4] > 0) & (boxes[:, 4] < 1))
                    if len(boxes) and boxes[0, 4] > 0.5:
                        ious.append(_iou(boxes[0], video["true_boxes"][frame - 1]))
                kept.append(dets.has_enough_detections(video["label"], video["youtube_id"], 8))
                assert kept[-1] == video["enough_detections"]
        assert np.mean(np.array(ious) > 0.5) > 0.9
        assert np.mean(kept) > 0.5
    raw = load_pickled_npy(root / "dets" / "detection_train_merged_rearranged.npy")
    frames = next(iter(next(iter(raw.values())).values()))
    assert sorted(frames) == list(range(1, 9)) and set(frames[1]) == {"human_boxes"}


def test_diving48_layout(dataset):
    root, summary = dataset
    annotations = root / "diving48" / "annotations"
    train, test = _load(annotations / "Diving48_train.json"), _load(annotations / "Diving48_test.json")
    vocab = _load(annotations / "Diving48_vocab.json")
    assert ["_".join(row) for row in vocab] == summary["classes"]
    assert len(train) == 12 and len(test) == 6
    for item in train + test:
        assert set(item) == {"vid_name", "label", "start_frame", "end_frame"}
        assert item["end_frame"] - item["start_frame"] + 1 == 8 and 0 <= item["label"] < 3
        frames = sorted(os.listdir(root / "diving48" / "frames" / item["vid_name"]))
        assert frames == [f"image_{i:05d}.jpg" for i in range(1, 9)]


def test_bias_statistics(tmp_path):
    summary = generate(tmp_path / "d", classes=4, train_per_class=60, val_per_class=1, ooc_per_class=60,
                       frames=2, width=32, height=32, bias=0.8, places=6, diving48=False, seed=5)
    assert SceneLabels.from_path(str(tmp_path / "d" / "places_safe"), "training").num_places == 6
    stats = summary["statistics"]
    assert stats["training_own_scene_fraction"] == pytest.approx(0.8, abs=0.07)
    assert stats["ooc_own_scene_fraction"] == pytest.approx(0.25, abs=0.07)
    ooc_scenes = np.bincount([v["scene"] for v in summary["videos"] if v["split"] == "ooc"], minlength=4)
    assert ooc_scenes.min() >= 40  # roughly uniform over the 4 scenes (60 expected each)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_and_cli_matches_api(tmp_path, dataset, capsys):
    root, _ = dataset
    again = tmp_path / "again"
    generate(again, **SMALL)
    assert _tree(again) == _tree(root)
    argv = ["--out", str(tmp_path / "cli"), "--classes", "3", "--train-per-class", "4", "--val-per-class", "2",
            "--ooc-per-class", "2", "--frames", "8", "--width", "48", "--height", "40", "--seed", "3"]
    assert synth_cli.main(argv) == 0
    assert "wrote 24 videos" in capsys.readouterr().out
    assert _tree(tmp_path / "cli") == _tree(root)
    other = generate(tmp_path / "other", **{**SMALL, "seed": 4})
    assert other["videos"][0]["youtube_id"] != _load(root / "synth.json")["videos"][0]["youtube_id"]


def test_refuses_non_empty_output_and_bad_options(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(SdnError, match="not an empty directory"):
        generate(tmp_path / "full", frames=2)
    assert os.listdir(tmp_path / "full") == ["keep.txt"]
    with pytest.raises(SdnError, match="--classes"):
        generate(tmp_path / "new", classes=9)
    with pytest.raises(SdnError, match="--places"):
        generate(tmp_path / "new", scenes=4, places=3)
    assert not (tmp_path / "new").exists() and [p.name for p in tmp_path.iterdir()] == ["full"]


# ----------------------------------------------------------------------------------------------
# scene groups, exact masks, test splits

GROUPED = dict(classes=2, scenes=8, train_per_class=12, val_per_class=2, ooc_per_class=2, test_per_class=4, frames=6,
               width=48, height=40, bias=0.99, seed=4, diving48=False)


@pytest.fixture(scope="module")
def grouped(synth_dataset) -> tuple[Path, dict]:
    return synth_dataset(**GROUPED)


def _frames(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p), dtype=np.int16) for p in sorted(folder.glob("image_*.jpg"))])


def test_scene_groups_vary_the_scene_within_an_action(grouped):
    from sdn.data.synth import own_scenes

    root, summary = grouped
    assert own_scenes(0, 2, 8) == [0, 2, 4, 6] and own_scenes(1, 2, 8) == [1, 3, 5, 7]
    assert own_scenes(2, 3, 2) == [0]  # fewer scenes than actions: shared, as before
    training = [v for v in summary["videos"] if v["split"] == "training"]
    scenes_of = {c: {v["scene"] for v in training if v["class_index"] == c} for c in (0, 1)}
    assert len(scenes_of[0]) >= 3 and len(scenes_of[1]) >= 3  # the place label varies within an action
    stats = summary["statistics"]
    assert stats["training_own_scene_fraction"] >= 0.9
    # the action alone cannot predict the place: at most about one in four scenes of a group
    assert stats["place_from_action_accuracy"] <= 0.6
    assert stats["scene_model_agreement"] >= 0.6
    patterns = {scene["pattern"] for scene in summary["scenes"]}
    assert len(patterns) == 4  # pattern cycles within a group: scenes differ by texture as well as palette


def test_place_from_action_accuracy_is_the_majority_share():
    from sdn.data.synth import place_from_action_accuracy

    assert place_from_action_accuracy([(0, 1), (0, 1), (0, 2), (1, 3)]) == 0.75
    assert place_from_action_accuracy([]) is None


def test_exact_masks_follow_the_actor(grouped):
    from sdn.data.human_masks import HumanMasks

    root, summary = grouped
    masks = HumanMasks.from_path(root / "masks", "training")
    assert masks.source == "exact"
    video = next(v for v in summary["videos"] if v["split"] == "training")
    mask = masks.video(video["label"], video["youtube_id"])
    assert mask.shape == (6, 40, 48) and mask.any(axis=(1, 2)).all()
    for frame, box in zip(mask, video["true_boxes"]):
        ys, xs = np.nonzero(frame)
        # the mask is the figure plus its one-pixel contour: its extent is the true box, one pixel wider
        assert xs.min() >= box[0] - 2 and xs.max() <= box[2] + 2 and ys.min() >= box[1] - 2 and ys.max() <= box[3] + 2
        assert frame.sum() < 0.5 * (box[2] - box[0] + 3) * (box[3] - box[1] + 3) * 2  # a figure, not a filled box
    assert HumanMasks.from_path(root / "masks", "validation").has(
        *next((v["label"], v["youtube_id"]) for v in summary["videos"] if v["split"] == "ooc"))


def test_test_splits(grouped):
    from sdn.data.synth import own_scenes
    from sdn.data.test_splits import read_split

    root, summary = grouped
    assert set(summary["test_splits"]) == {"iid", "conflicting", "scuba", "scufo", "background_only"}
    splits = {name: read_split(str(root / path)) for name, path in summary["test_splits"].items()}
    for name, split in splits.items():
        assert split.name == name and split.class_names == ["rise", "fall"] and len(split.entries) == 8
    scene_index = {scene["name"]: i for i, scene in enumerate(summary["scenes"])}
    database = _load(root / "splits" / "conflicting" / "split.json")["database"]
    for key, entry in database.items():
        label = summary["classes"].index(entry["annotations"]["label"])
        assert scene_index[entry["background"]] not in own_scenes(label, 2, 8)
    backgrounds = [e["background"] for e in _load(root / "splits" / "scuba" / "split.json")["database"].values()]
    assert not set(backgrounds) & set(scene_index)  # never a training scene
    assert any(b.startswith("heldout") for b in backgrounds) and "sinusoidal stripes" in backgrounds
    for entry in splits["scuba"].entries:
        scuba = _frames(Path(entry.path))
        scufo = _frames(root / "splits" / "scufo" / entry.class_dir / entry.video_id)
        assert scufo.shape == scuba.shape
        assert all(np.array_equal(scufo[0], frame) for frame in scufo)  # one frame, repeated
        assert min(np.abs(scufo[0] - frame).mean() for frame in scuba) < 1.0  # ... taken from the SCUBA clip
        assert np.abs(scuba[0] - scuba[-1]).mean() > 1.0  # the SCUBA clip moves
    for entry in splits["iid"].entries:
        background = _frames(root / "splits" / "background_only" / entry.class_dir / entry.video_id)
        clip = _frames(Path(entry.path))
        assert all(np.array_equal(background[0], frame) for frame in background)  # no actor, nothing moves
        differs = np.abs(clip.astype(int) - background).max(axis=3) > 40
        assert differs.any(axis=(1, 2)).all()  # the actor is what the iid clip adds to its background
        assert differs.mean() < 0.3


def test_test_splits_leave_the_rest_of_the_dataset_unchanged(tmp_path):
    options = dict(GROUPED, train_per_class=2, test_per_class=0)
    generate(tmp_path / "a", **options)
    generate(tmp_path / "b", **{**options, "test_per_class": 2})
    for path in (tmp_path / "a").rglob("*"):
        if path.is_file() and path.name != "synth.json":
            assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes(), path
    assert (tmp_path / "b" / "splits" / "scuba" / "split.json").is_file() and not (tmp_path / "a" / "splits").exists()
