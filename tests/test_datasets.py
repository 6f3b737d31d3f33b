"""Clip datasets and the ``--dataset`` factories on a synth dataset.

One small synthetic dataset (``sdn.data.synth``: 2 classes, 3 training and 2 validation videos
per class, 12 frames of 48x36) is generated once per session (tests/conftest.py); tests that need another layout build it
next to it from the same frames (symlinks, video files).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader

from sdn.config import build_parser, resolve
from sdn.data.annotations import read_kinetics
from sdn.data.datasets import ClipDataset, class_names_for, get_test_set, get_training_set, get_validation_set
from sdn.data.detections import HumanDetections
from sdn.data.scene_labels import SceneLabels
from sdn.data.transforms import (Compose, LoopPadding, TemporalRandomCrop, test_spatial_transform,
                                 train_spatial_transform, val_spatial_transform)
from sdn.data.video import FrameFolder
from sdn.errors import SdnError

SIZE, DURATION, FRAMES = 16, 4, 12
CLASSES = ["rise", "fall"]


@pytest.fixture(scope="module")
def synth(synth_dataset) -> tuple[Path, dict]:
    return synth_dataset(classes=2, train_per_class=3, val_per_class=2, ooc_per_class=0, frames=FRAMES, width=48,
                         height=36)


def options(root: Path, *args: str):
    """Resolved options as ``sdn train`` would build them, pointing at the synth dataset."""
    base = ["--root_path", "", "--video_path", str(root / "jpg"), "--annotation_path", str(root / "kinetics.json"),
            "--place_pred_path", str(root / "places"), "--human_dets_path", str(root / "dets"),
            "--n_classes", "2", "--sample_size", str(SIZE), "--sample_duration", str(DURATION)]
    return resolve(build_parser().parse_args(base + list(args)))


def train_set(opt):
    return get_training_set(opt, train_spatial_transform(opt.train_crop, opt.scales, opt.sample_size),
                            TemporalRandomCrop(opt.sample_duration))


def val_set(opt, spatial=None):
    return get_validation_set(opt, spatial or val_spatial_transform(opt.sample_size), LoopPadding(opt.sample_duration))


def test_set(opt):
    return get_test_set(opt, test_spatial_transform(opt.sample_size, opt.scale_in_test, opt.crop_position_in_test),
                        LoopPadding(opt.sample_duration))


test_set.__test__ = False  # a helper, not a test


def videos(summary: dict, split: str) -> list[dict]:
    return [v for v in summary["videos"] if v["split"] == split]


def assert_same_items(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], (torch.Tensor, np.ndarray)):
            assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), key
        else:
            assert a[key] == b[key], key


def stored_frames(sample) -> torch.Tensor:
    """The clip's frames as stored (uint8 [T, 3, H, W]), read independently of the dataset."""
    return FrameFolder(sample.video.path).read(list(sample.frame_indices))


# ---------------------------------------------------------------------------------------------
# kinetics: roots, samples, items


def test_kinetics_reads_train_and_val_below_video_path(synth):
    root, summary = synth
    opt = options(root)
    train = train_set(opt)
    assert isinstance(train, ClipDataset) and train.class_names == CLASSES and len(train) == 6
    expected = {(v["label"], v["youtube_id"]) for v in videos(summary, "training")}
    assert {(s.video.class_dir, s.video.video_id) for s in train.samples} == expected
    for sample in train.samples:
        assert sample.video.path == str(root / "jpg" / "train" / sample.video.class_dir / (sample.video.video_id
                                                                                          + "_000000_000010"))
        assert sample.frame_indices == tuple(range(1, FRAMES + 1))  # training: the whole video
        assert sample.video.label == CLASSES.index(sample.video.class_dir)

    val = val_set(opt)
    # 12 frames, n_val_samples 3, T 4: step ceil((12 - 1 - 4) / 2) = 4 -> windows 1..4, 5..8, 9..12
    assert len(val) == 4 * 3
    assert {(s.video.class_dir, s.video.video_id) for s in val.samples} == \
        {(v["label"], v["youtube_id"]) for v in videos(summary, "validation")}
    assert all(s.video.path.startswith(str(root / "jpg" / "val") + os.sep) for s in val.samples)
    assert [s.frame_indices for s in val.samples[:3]] == [(1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12)]


def test_items_have_the_documented_keys_types_and_shapes(synth):
    root, _ = synth
    opt = options(root)
    for dataset in (train_set(opt), val_set(opt)):
        for index in (0, len(dataset) - 1):
            item = dataset[index]
            assert set(item) == {"clip", "label"}
            assert item["clip"].dtype == torch.uint8 and item["clip"].shape == (3, DURATION, SIZE, SIZE)
            assert item["clip"].is_contiguous()
            assert isinstance(item["label"], int) and item["label"] == dataset.samples[index].video.label


def test_validation_clip_is_the_scaled_centre_crop_of_the_stored_frames(synth):
    root, _ = synth
    opt = options(root)
    identity = val_set(opt, Compose([]))
    item = identity[4]
    assert torch.equal(item["clip"], stored_frames(identity.samples[4]).permute(1, 0, 2, 3))
    assert val_set(opt)[4]["clip"].shape == (3, DURATION, SIZE, SIZE)


def test_items_depend_only_on_seed_epoch_and_index(synth):
    root, _ = synth
    opt = options(root)
    first, second = train_set(opt), train_set(opt)
    epoch0 = [first[i] for i in range(len(first))]
    for i in reversed(range(len(second))):  # another order, another object: same items
        assert_same_items(second[i], epoch0[i])

    first.set_epoch(1)
    epoch1 = [first[i] for i in range(len(first))]
    assert any(not torch.equal(a["clip"], b["clip"]) for a, b in zip(epoch0, epoch1))
    assert [a["label"] for a in epoch0] == [b["label"] for b in epoch1]
    first.set_epoch(0)
    assert_same_items(first[2], epoch0[2])

    other_seed = train_set(options(root, "--manual_seed", "7"))
    assert any(not torch.equal(other_seed[i]["clip"], epoch0[i]["clip"]) for i in range(len(other_seed)))


def test_data_loader_workers_do_not_change_items(synth):
    root, _ = synth
    opt = options(root, "--dataset", "kinetics_adv", "--is_place_soft", "--num_places_classes", "2")
    dataset = train_set(opt)
    dataset.set_epoch(3)
    batches = {}
    for workers in (0, 2):
        loader = DataLoader(dataset, batch_size=4, shuffle=False, num_workers=workers)
        batches[workers] = list(loader)
    assert len(batches[0]) == 2
    for a, b in zip(batches[0], batches[2]):
        assert torch.equal(a["clip"], b["clip"]) and torch.equal(a["label"], b["label"])
        assert torch.equal(a["place"], b["place"])
    batch = batches[0][0]
    assert batch["clip"].dtype == torch.uint8 and batch["clip"].shape == (4, 3, DURATION, SIZE, SIZE)
    assert batch["label"].dtype == torch.int64 and batch["place"].dtype == torch.float32
    assert batch["place"].shape == (4, 2)
    assert torch.equal(batch["clip"][1], dataset[1]["clip"])


def test_ucf101_reads_video_path_itself_with_the_key_as_video_id(synth):
    root, summary = synth
    opt = options(root, "--dataset", "ucf101", "--video_path", str(root / "jpg" / "train"))
    train = train_set(opt)
    assert {s.video.video_id for s in train.samples} == {v["key"] for v in videos(summary, "training")}
    assert train[0]["clip"].shape == (3, DURATION, SIZE, SIZE)


# ---------------------------------------------------------------------------------------------
# kinetics_adv: scene targets


def test_kinetics_adv_soft_places(synth):
    root, _ = synth
    opt = options(root, "--dataset", "kinetics_adv", "--is_place_soft", "--num_places_classes", "2")
    labels = {"training": SceneLabels.from_path(str(root / "places"), "training"),
              "validation": SceneLabels.from_path(str(root / "places"), "validation")}
    for subset, dataset in (("training", train_set(opt)), ("validation", val_set(opt))):
        for index in range(len(dataset)):
            item = dataset[index]
            video = dataset.samples[index].video
            assert set(item) == {"clip", "label", "place"}
            assert isinstance(item["place"], np.ndarray) and item["place"].dtype == np.float32
            assert item["place"].shape == (2,) and item["place"].sum() == pytest.approx(1.0, abs=1e-5)
            assert np.array_equal(item["place"], labels[subset].target(video.class_dir, video.video_id, soft=True))


def test_kinetics_adv_hard_places(synth):
    root, _ = synth
    opt = options(root, "--dataset", "kinetics_adv", "--num_places_classes", "2")
    labels = SceneLabels.from_path(str(root / "places"), "training")
    dataset = train_set(opt)
    places = []
    for index in range(len(dataset)):
        video = dataset.samples[index].video
        place = dataset[index]["place"]
        assert isinstance(place, int) and place == labels.target(video.class_dir, video.video_id, soft=False)
        places.append(place)
    assert set(places) <= {0, 1}
    batch = next(iter(DataLoader(dataset, batch_size=6)))
    assert batch["place"].dtype == torch.int64 and batch["place"].tolist() == places


def test_kinetics_adv_rejects_a_wrong_number_of_places(synth):
    root, _ = synth
    opt = options(root, "--dataset", "kinetics_adv", "--num_places_classes", "365")
    with pytest.raises(SdnError) as info:
        train_set(opt)
    message = str(info.value)
    assert message.startswith(str(root / "places")) and "2 places" in message and "365" in message
    with pytest.raises(SdnError, match="--num_places_classes"):
        val_set(opt)


# ---------------------------------------------------------------------------------------------
# kinetics_adv_msk: the human-masked second dataset


def _pil_mask_humans(frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The original's drawing: mean colour of the frame, polygon per box scoring >= 0.3."""
    image = Image.fromarray(frame)
    colour = tuple(int(c) for c in np.round(frame.reshape(-1, 3).mean(axis=0)))
    draw = ImageDraw.Draw(image)
    for x1, y1, x2, y2, score in boxes:
        if score >= np.float32(0.3):
            draw.polygon([(x1, y1), (x1, y2), (x2, y2), (x2, y1)], fill=colour)
    return np.array(image)


def _pil_mask_background(frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The original's compositing: black everywhere but inside boxes scoring >= 0.3."""
    image = Image.fromarray(frame)
    mask = Image.new("L", image.size, 255)
    draw = ImageDraw.Draw(mask)
    for x1, y1, x2, y2, score in boxes:
        if score >= np.float32(0.3):
            draw.polygon([(x1, y1), (x1, y2), (x2, y2), (x2, y1)], fill=0)
    image.paste(Image.new("L", image.size, 0), (0, 0), mask)
    return np.array(image)


def test_kinetics_adv_msk_gives_a_pair_with_the_unfiltered_length(synth, capsys):
    root, summary = synth
    opt = options(root, "--dataset", "kinetics_adv_msk", "--is_place_soft", "--num_places_classes", "2")
    enough = {v["youtube_id"]: v["enough_detections"] for v in summary["videos"]}
    kept_videos = sum(enough[v["youtube_id"]] for v in videos(summary, "training"))
    assert 0 < kept_videos < 6, "the synth dataset should have a training video the filter removes"

    pair = train_set(opt)
    assert isinstance(pair, list) and len(pair) == 2
    main, masked = pair
    assert "filtering the videos without sufficient detections: " \
        f"[{kept_videos}/6]" in capsys.readouterr().out
    assert len(main) == 6 and len(masked) == len(main)
    assert all(enough[s.video.video_id] for s in masked.samples)
    assert len({s.video.video_id for s in masked.samples}) == kept_videos  # the kept ones, one repeated
    assert masked.class_names == main.class_names == CLASSES
    assert set(main[0]) == {"clip", "label", "place"}
    for index in range(len(masked)):
        item = masked[index]
        assert set(item) == {"clip", "label", "is_masking"}
        assert isinstance(item["is_masking"], bool)
        assert item["clip"].dtype == torch.uint8 and item["clip"].shape == (3, DURATION, SIZE, SIZE)
        assert item["label"] == masked.samples[index].video.label

    main_val, masked_val = val_set(opt)
    kept_val = sum(enough[v["youtube_id"]] for v in videos(summary, "validation"))
    assert len(main_val) == len(masked_val) == 12
    assert f"[{kept_val * 3}/12]" in capsys.readouterr().out
    batch = next(iter(DataLoader(masked_val, batch_size=12)))
    assert batch["is_masking"].dtype == torch.bool and batch["is_masking"].shape == (12,)


def test_human_masking_changes_clips_only_inside_actor_boxes(synth):
    root, _ = synth
    opt = options(root, "--dataset", "kinetics_adv_msk", "--num_places_classes", "2", "--mask_ratio", "1.0")
    main, masked = val_set(opt, Compose([]))  # no resizing: compare in stored-frame pixels
    dets = HumanDetections.from_path(str(root / "dets"), "validation")
    changed = 0
    for index in range(len(masked)):
        sample, item = masked.samples[index], masked[index]
        raw = stored_frames(sample)
        clip = item["clip"].permute(1, 0, 2, 3)
        boxes = [dets.boxes(sample.video.class_dir, sample.video.video_id, i) for i in sample.frame_indices]
        n_drawn = 0
        for t in range(len(raw)):
            expected = _pil_mask_humans(raw[t].permute(1, 2, 0).numpy(), boxes[t])
            assert np.array_equal(clip[t].permute(1, 2, 0).numpy(), expected)
            n_drawn += bool(np.any(boxes[t][:, 4] >= np.float32(0.3)))
        assert item["is_masking"] == (n_drawn / len(raw) >= 0.5)
        unmasked = main[main.samples.index(sample)]["clip"].permute(1, 0, 2, 3)
        assert torch.equal(unmasked, raw)  # the first dataset is never masked
        changed += not torch.equal(unmasked, clip)
    assert changed >= len(masked) // 2
    assert any(masked[i]["is_masking"] for i in range(len(masked)))

    never = val_set(options(root, "--dataset", "kinetics_adv_msk", "--num_places_classes", "2",
                            "--mask_ratio", "0"), Compose([]))[1]
    for index in range(len(never)):
        item = never[index]
        assert item["is_masking"] is False
        assert torch.equal(item["clip"].permute(1, 0, 2, 3), stored_frames(never.samples[index]))


def test_masked_training_items_are_deterministic(synth):
    root, _ = synth
    opt = options(root, "--dataset", "kinetics_adv_msk", "--num_places_classes", "2")
    a, b = train_set(opt)[1], train_set(opt)[1]
    assert [s.video.video_id for s in a.samples] == [s.video.video_id for s in b.samples]
    for index in range(len(a)):
        assert_same_items(a[index], b[index])


# ---------------------------------------------------------------------------------------------
# kinetics_bkgmsk: background masking


def test_kinetics_bkgmsk_blacks_out_the_background(synth):
    root, summary = synth
    opt = options(root, "--dataset", "kinetics_bkgmsk", "--mask_ratio", "1.0")
    dataset = val_set(opt, Compose([]))
    assert len(dataset) == 12  # no detection filtering
    dets = HumanDetections.from_path(str(root / "dets"), "validation")
    black = 0
    for index in range(len(dataset)):
        sample, item = dataset.samples[index], dataset[index]
        assert set(item) == {"clip", "label"}
        raw = stored_frames(sample)
        clip = item["clip"].permute(1, 0, 2, 3)
        for t, frame_index in enumerate(sample.frame_indices):
            boxes = dets.boxes(sample.video.class_dir, sample.video.video_id, frame_index)
            hwc = raw[t].permute(1, 2, 0).numpy()
            expected = hwc if len(boxes) == 0 else _pil_mask_background(hwc, boxes)
            assert np.array_equal(clip[t].permute(1, 2, 0).numpy(), expected)
        black += int((clip.sum(dim=1) == 0).sum())
    assert black > len(dataset) * DURATION * 36 * 48 // 4  # most pixels are background

    train = train_set(options(root, "--dataset", "kinetics_bkgmsk"))
    assert len(train) == 6 and set(train[0]) == {"clip", "label"}
    unmasked = val_set(options(root, "--dataset", "kinetics_bkgmsk", "--mask_ratio", "0"), Compose([]))
    assert torch.equal(unmasked[0]["clip"].permute(1, 0, 2, 3), stored_frames(unmasked.samples[0]))


# ---------------------------------------------------------------------------------------------
# diving48


def test_diving48_sets(synth):
    root, summary = synth
    annotations, frames = root / "diving48" / "annotations", root / "diving48" / "frames"
    opt = options(root, "--dataset", "diving48", "--annotation_path", str(annotations), "--video_path", str(frames))
    assert class_names_for(opt) == CLASSES

    train = train_set(opt)
    by_name = {v["diving48_vid_name"]: v for v in summary["videos"] if "diving48_vid_name" in v}
    assert len(train) == 6 and train.class_names == CLASSES
    for index, sample in enumerate(train.samples):
        video = by_name[sample.video.video_id]
        assert video["split"] == "training" and sample.video.path == str(frames / sample.video.video_id)
        assert sample.video.n_frames == FRAMES and sample.video.label == video["class_index"]
        assert sample.video.class_dir == CLASSES[video["class_index"]]
    item = train[0]
    assert set(item) == {"clip", "label"} and item["clip"].shape == (3, DURATION, SIZE, SIZE)

    val = val_set(opt)  # Diving48_test.json
    assert len(val) == 4 * 3 and all(by_name[s.video.video_id]["split"] == "validation" for s in val.samples)

    test = test_set(opt)  # --test_subset val: the test json again, read from --video_path itself
    assert len(test) == 4 * 3 and {s.video.path for s in test.samples} == {s.video.path for s in val.samples}
    assert test[0]["video_id"] == test.samples[0].video.video_id


# ---------------------------------------------------------------------------------------------
# test sets


def test_kinetics_test_set_falls_back_to_the_val_folder(synth):
    root, summary = synth
    for dataset_name in ("kinetics", "kinetics_adv", "kinetics_adv_msk"):
        opt = options(root, "--dataset", dataset_name, "--num_places_classes", "2")
        test = test_set(opt)
        assert isinstance(test, ClipDataset) and len(test) == 4 * 3
        assert all(s.video.path.startswith(str(root / "jpg" / "val") + os.sep) for s in test.samples)
        # test windows: step T, consecutive
        assert [s.frame_indices for s in test.samples[:3]] == [(1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12)]
        item = test[5]
        assert set(item) == {"clip", "label", "video_id"}
        assert item["video_id"] == test.samples[5].video.video_id
        assert item["video_id"] in {v["youtube_id"] for v in videos(summary, "validation")}
        assert item["clip"].dtype == torch.uint8 and item["clip"].shape == (3, DURATION, SIZE, SIZE)
    batch = next(iter(DataLoader(test, batch_size=3)))
    assert batch["video_id"] == [test.samples[0].video.video_id] * 3


def test_kinetics_test_set_reads_label_folders_directly_below_video_path(synth, tmp_path):
    root, _ = synth
    flat = tmp_path / "flat"
    flat.mkdir()
    for label in CLASSES:
        (flat / label).symlink_to(root / "jpg" / "val" / label, target_is_directory=True)
    test = test_set(options(root, "--video_path", str(flat)))
    assert len(test) == 12 and all(s.video.path.startswith(str(flat) + os.sep) for s in test.samples)


def test_kinetics_testing_subset_reads_the_test_folder(synth, tmp_path):
    root, summary = synth
    annotation = json.loads((root / "kinetics.json").read_text())
    (tmp_path / "videos" / "test").mkdir(parents=True)
    for video in videos(summary, "validation")[:3]:
        annotation["database"][video["key"]] = {"subset": "testing", "annotations": {}}
        shutil.copytree(root / video["frame_dir"], tmp_path / "videos" / "test" / video["key"])
    (tmp_path / "k.json").write_text(json.dumps(annotation))
    opt = options(root, "--test_subset", "test", "--video_path", str(tmp_path / "videos"),
                  "--annotation_path", str(tmp_path / "k.json"))
    test = test_set(opt)
    assert len(test) == 3 * 3
    assert {s.video.label for s in test.samples} == {-1}
    item = test[0]
    assert item["label"] == -1 and item["video_id"] == videos(summary, "validation")[0]["youtube_id"]


# ---------------------------------------------------------------------------------------------
# frame folders and video files


CODECS = [  # (extension, codec, pixel format, options, exact)
    (".mkv", "ffv1", "bgr0", {}, True),
    (".mp4", "libx264rgb", "rgb24", {"crf": "0"}, True),
    (".avi", "mjpeg", "yuvj444p", {"qmin": "1", "qmax": "1"}, False),  # best JPEG quality
]


def _write_video(path: Path, frames: torch.Tensor, codec: str, pix_fmt: str, options: dict) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = frames.shape[3], frames.shape[2], pix_fmt
        for frame in frames:
            array = np.ascontiguousarray(frame.permute(1, 2, 0).numpy())
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())


@pytest.mark.parametrize("extension, codec, pix_fmt, codec_options, exact", CODECS, ids=[c[1] for c in CODECS])
def test_video_files_give_the_same_clips_as_frame_folders(synth, tmp_path, extension, codec, pix_fmt,
                                                          codec_options, exact):
    if codec not in av.codecs_available:
        pytest.skip(f"PyAV has no {codec} encoder")
    root, summary = synth
    files = tmp_path / "videos"
    for video in videos(summary, "training"):
        folder = root / video["frame_dir"]
        target = files / "train" / video["label"] / (video["key"] + extension)
        target.parent.mkdir(parents=True, exist_ok=True)
        # the decoded JPEGs, so that a lossless codec stores exactly what the folder gives
        _write_video(target, FrameFolder(folder).read(range(1, FRAMES + 1)), codec, pix_fmt, codec_options)

    _, entries = read_kinetics(str(root / "kinetics.json"), str(files / "train"), "training")
    assert len(entries) == 6 and all(e.path.endswith(extension) and e.n_frames == FRAMES for e in entries)

    from_folders = train_set(options(root))
    from_files = train_set(options(root, "--video_path", str(files)))
    assert [s.video.video_id for s in from_files.samples] == [s.video.video_id for s in from_folders.samples]
    assert [s.frame_indices for s in from_files.samples] == [s.frame_indices for s in from_folders.samples]
    for index in range(len(from_files)):
        a, b = from_folders[index], from_files[index]
        assert a["label"] == b["label"] and a["clip"].shape == b["clip"].shape
        if exact:
            assert torch.equal(a["clip"], b["clip"])
        else:
            difference = (a["clip"].float() - b["clip"].float()).abs()
            assert difference.mean() < 2.0 and difference.max() < 64  # JPEG re-encoding loss (about 0.8 here)


# ---------------------------------------------------------------------------------------------
# class names and ClipDataset checks


def test_class_names_for_every_format(synth, tmp_path):
    root, _ = synth
    assert class_names_for(options(root)) == CLASSES
    assert class_names_for(options(root, "--dataset", "kinetics_adv_msk")) == CLASSES
    annotation = tmp_path / "activitynet.json"
    annotation.write_text(json.dumps({"taxonomy": [
        {"nodeId": 1, "nodeName": "Root", "parentId": None}, {"nodeId": 2, "nodeName": "Bowling", "parentId": 1},
        {"nodeId": 3, "nodeName": "Group", "parentId": 1}, {"nodeId": 4, "nodeName": "Curling", "parentId": 3}],
        "database": {}}))
    assert class_names_for(options(root, "--dataset", "activitynet", "--annotation_path", str(annotation))) == \
        ["Bowling", "Curling"]
    with pytest.raises(SdnError, match="annotation file not found"):
        class_names_for(options(root, "--annotation_path", str(tmp_path / "missing.json")))


def test_clip_dataset_checks_its_arguments(synth):
    root, _ = synth
    samples = train_set(options(root)).samples
    spatial, temporal = val_spatial_transform(SIZE), LoopPadding(DURATION)
    with pytest.raises(ValueError, match="mask_mode"):
        ClipDataset(samples, CLASSES, spatial, temporal, mask_mode="face")
    with pytest.raises(ValueError, match="needs detections"):
        ClipDataset(samples, CLASSES, spatial, temporal, mask_mode="human")
    probs = np.array([0.25, 0.75], np.float32)
    labels = SceneLabels.from_dict({"rise": {"someOtherId": {"pred_cls": 1, "probs": probs}}})
    with pytest.raises(SdnError, match="no scene label for class") as info:
        ClipDataset(samples, CLASSES, spatial, temporal, scene_labels=labels)
    assert samples[0].video.video_id in str(info.value)
