"""The whole preparation chain on videos made here: raw videos -> frames -> annotations -> scene labels
-> human detections -> one epoch of full SDN training, plus what each model step writes.

The models are torchvision's, randomly initialised and saved in the public file layouts: a
Places365-style ResNet-18 checkpoint (``{'epoch', 'arch', 'state_dict' with module. keys,
'best_prec1'}``) and a Faster R-CNN state dict whose person logit is biased so that it finds
"people" everywhere (random weights would find none above the 0.3 the training filter needs).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from sdn.checkpoint import add_prefix
from sdn.cli.main import main as sdn_main
from sdn.config import build_parser, resolve
from sdn.data.datasets import get_training_set
from sdn.data.detections import HumanDetections
from sdn.data.safe_pickle import load_pickled_npy
from sdn.data.scene_labels import SceneLabels
from sdn.data.transforms import TemporalRandomCrop, train_spatial_transform
from sdn.data.video import FrameFolder
from sdn.errors import SdnError
from sdn.prepare import formats, scene_labels
from sdn.prepare.common import evenly_spaced
from sdn.prepare.scene_labels import load_scene_model
from test_prepare_frames import write_video

CLASSES = ["abseiling", "air drumming"]  # a space, as real Kinetics class folders
VIDEOS = {"train": 2, "val": 1}  # per class
N_FRAMES = 10
WIDTH, HEIGHT = 64, 48


def sdn(*args) -> int:
    return sdn_main([str(arg) for arg in args])


def make_videos_and_csvs(root: Path) -> dict[str, list[tuple[str, str]]]:
    videos: dict[str, list[tuple[str, str]]] = {}
    for split, per_class in VIDEOS.items():
        rows = []
        for c, label in enumerate(CLASSES):
            for k in range(per_class):
                youtube_id = f"{split[0]}{c}{k}".ljust(11, "Q")
                write_video(root / "videos" / split / label / f"{youtube_id}_000010_000020.mp4", N_FRAMES + k,
                            WIDTH, HEIGHT, seed=len(rows) + 10 * c)
                rows.append((label, youtube_id))
        (root / f"{split}.csv").write_text("label,youtube_id,time_start,time_end,split\n" + "".join(
            f"{label},{youtube_id},10,20,{split}\n" for label, youtube_id in rows))
        videos[split] = rows
    return videos


def save_models(root: Path) -> None:
    torch.manual_seed(0)
    places = torchvision.models.resnet18(num_classes=365)
    torch.save({"epoch": 90, "arch": "resnet18", "state_dict": add_prefix(places.state_dict()), "best_prec1": 54.7},
               root / "resnet18_places365.pth.tar")
    detector = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None)
    with torch.no_grad():
        detector.roi_heads.box_predictor.cls_score.bias[1] = 20.0
    torch.save(detector.state_dict(), root / "detector.pth")


def scene_args(root: Path, out: str, *extra) -> list:
    return ["prepare", "scene-labels", "--checkpoint", root / "resnet18_places365.pth.tar", "--video_path",
            root / "jpg", "--annotation_path", root / "kinetics.json", "--out", root / out, "--workers", 0,
            "--no_progress", *extra]


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("prepare")
    videos = make_videos_and_csvs(root)
    save_models(root)
    for split in VIDEOS:
        assert sdn("prepare", "frames", root / "videos" / split, root / "jpg" / split, "--layout", "kinetics",
                   "--size", HEIGHT, "--no_progress") == 0
    assert sdn("prepare", "annotations", "kinetics", "--train", root / "train.csv", "--val", root / "val.csv",
               "--out", root / "kinetics.json") == 0
    assert sdn(*scene_args(root, "places", "--original", root / "places_npy", "--categories",
                           root / "categories.txt")) == 2  # the categories file does not exist yet
    (root / "categories.txt").write_text("".join(f"/{chr(97 + i % 26)}/scene_{i} {i}\n" for i in range(365)))
    assert sdn(*scene_args(root, "places", "--original", root / "places_npy", "--categories",
                           root / "categories.txt")) == 0
    assert sdn("prepare", "detect-humans", "--model", "fasterrcnn_mobilenet_v3_large_320_fpn", "--weights",
               root / "detector.pth", "--every", 3, "--min_size", 96, "--score_threshold", 0.5, "--video_path",
               root / "jpg", "--annotation_path", root / "kinetics.json", "--out", root / "dets", "--original",
               root / "dets", "--workers", 1, "--no_progress") == 0
    return root, videos


def options(root: Path, dataset: str, *extra: str):
    return resolve(build_parser().parse_args([
        "--root_path", "", "--video_path", str(root / "jpg"), "--annotation_path", str(root / "kinetics.json"),
        "--dataset", dataset, "--n_classes", "2", "--sample_size", "16", "--sample_duration", "4",
        "--place_pred_path", str(root / "places"), "--human_dets_path", str(root / "dets"),
        "--num_places_classes", "365", *extra]))


def training_set(opt):
    return get_training_set(opt, train_spatial_transform(opt.train_crop, opt.scales, opt.sample_size),
                            TemporalRandomCrop(opt.sample_duration))


def test_scene_labels_have_the_original_structure_and_sum_to_one(chain):
    root, videos = chain
    for split, subset_file in (("train", "places_train"), ("val", "places_val")):
        original = load_pickled_npy(root / "places_npy" / f"{subset_file}.npy")
        kind, safe = formats.load(root / "places" / f"{subset_file}.npz")
        assert kind == formats.SCENE_LABELS
        expected = {label: sorted(y for l, y in videos[split] if l == label) for label in CLASSES}
        assert {label: sorted(ids) for label, ids in original.items()} == expected
        for label, ids in original.items():
            for youtube_id, value in ids.items():
                assert set(value) == {"pred_cls", "probs"}
                probs, pred_cls = value["probs"], value["pred_cls"]
                assert probs.shape == (5, 365) and probs.dtype == np.float32
                assert pred_cls.shape == (5,) and pred_cls.dtype == np.int64
                np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
                np.testing.assert_array_equal(pred_cls, probs.argmax(axis=1))
                np.testing.assert_array_equal(safe[label][youtube_id]["probs"], probs)


def test_scene_labels_are_the_classifier_outputs_on_the_sampled_frames(chain):
    root, videos = chain
    label, youtube_id = videos["val"][1]
    folder = root / "jpg" / "val" / label / f"{youtube_id}_000010_000020"
    frames = scene_labels.preprocess(FrameFolder(folder).read(evenly_spaced(N_FRAMES, 5)), "square")
    expected = scene_labels.classify(load_scene_model(str(root / "resnet18_places365.pth.tar")), frames,
                                     torch.device("cpu"))
    stored = load_pickled_npy(root / "places_npy" / "places_val.npy")[label][youtube_id]["probs"]
    np.testing.assert_allclose(stored, expected, atol=1e-5)


def test_scene_labels_load_in_training(chain):
    root, _ = chain
    labels = SceneLabels.from_path(str(root / "places"), "training")
    assert labels.multiple and labels.num_places == 365 and len(labels) == 4
    dataset = training_set(options(root, "kinetics_adv", "--is_place_soft"))
    item = dataset[0]
    assert item["clip"].shape == (3, 4, 16, 16) and item["place"].shape == (365,)
    assert item["place"].sum() == pytest.approx(1.0, abs=1e-5)
    assert SceneLabels.from_path(str(root / "places_npy"), "validation").num_places == 365


def test_detections_have_the_original_structure(chain):
    root, videos = chain
    for split in ("train", "val"):
        original = load_pickled_npy(root / "dets" / f"detection_{split}_merged_rearranged.npy")
        assert {label: sorted(ids) for label, ids in original.items()} == \
            {label: sorted(y for l, y in videos[split] if l == label) for label in CLASSES}
        for label, ids in original.items():
            for youtube_id, frames in ids.items():
                k = int(youtube_id[2])
                assert sorted(frames) == list(range(1, N_FRAMES + k + 1))  # 1-based, every stored frame
                for entry in frames.values():
                    boxes = entry["human_boxes"]
                    assert set(entry) == {"human_boxes"} and boxes.dtype == np.float32 and boxes.shape[1] == 5
                    assert len(boxes) > 0 and np.all(boxes[:, 4] >= 0.5)
                    # stored-frame pixels (64x48), not the detector's internal 96-pixel scale
                    assert np.all(boxes[:, [0, 2]] <= WIDTH + 1e-3) and np.all(boxes[:, [1, 3]] <= HEIGHT + 1e-3)
                    assert np.all(boxes[:, :4] >= 0)
        safe = HumanDetections.from_path(str(root / "dets"), f"{split}ing" if split == "train" else "validation")
        label, youtube_id = videos[split][0]
        np.testing.assert_array_equal(safe.boxes(label, youtube_id, 2), original[label][youtube_id][2]["human_boxes"])


def test_detections_load_in_the_masked_dataset(chain, capsys):
    root, _ = chain
    unmasked, masked = training_set(options(root, "kinetics_adv_msk", "--is_place_soft", "--mask_ratio", "1.0"))
    assert "after filtering the videos without sufficient detections: [4/4]" in capsys.readouterr().out
    item = masked[0]
    assert item["is_masking"] is True and item["clip"].shape == (3, 4, 16, 16)


@pytest.mark.slow
def test_chain_trains_one_epoch_of_full_sdn(chain, tmp_path):
    root, _ = chain
    run = tmp_path / "full"
    assert sdn("train", "--root_path", "", "--video_path", root / "jpg", "--annotation_path", root / "kinetics.json",
               "--result_path", run, "--dataset", "kinetics_adv_msk", "--n_classes", 2, "--n_finetune_classes", 2,
               "--model", "resnet", "--model_depth", 10, "--resnet_shortcut", "A", "--sample_size", 16,
               "--sample_duration", 4, "--batch_size", 4, "--val_batch_size", 4, "--n_threads", 0, "--n_epochs", 1,
               "--checkpoint", 1, "--place_pred_path", root / "places", "--is_place_adv", "--is_place_soft",
               "--is_mask_entropy", "--mask_ratio", 1.0, "--num_places_classes", 365, "--human_dets_path",
               root / "dets", "--no_progress", "--no_tensorboard") == 0
    rows = (run / "train.log").read_text().splitlines()
    assert rows[0].split("\t")[-3:] == ["loss mask", "acc mask", "masked share"] and len(rows) == 2
    assert float(rows[1].split("\t")[-1]) == 1.0  # every clip was human-masked
    assert (run / "save_1.pth").is_file()


def test_rerun_skips_finished_subsets(chain, capsys):
    root, _ = chain
    target = root / "places" / "places_train.npz"
    before = target.stat().st_mtime_ns
    assert sdn(*scene_args(root, "places")) == 0
    assert "is complete; skipped" in capsys.readouterr().out
    assert target.stat().st_mtime_ns == before


@pytest.mark.slow
def test_an_interrupted_run_resumes_where_it_stopped(chain, monkeypatch, capsys):
    root, _ = chain
    real, calls = scene_labels.classify, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(scene_labels, "classify", interrupted)
    resumable = scene_args(root, "resumed", "--batch_size", 5, "--subsets", "training")  # one video per batch
    assert sdn(*resumable) == 130
    assert len(list((root / "resumed" / ".places_train.npz.partial").glob("*.npz"))) == 2
    monkeypatch.setattr(scene_labels, "classify", real)
    capsys.readouterr()
    assert sdn(*resumable) == 0
    assert "scene labels of 4 videos (2 now, 2 from an earlier run)" in capsys.readouterr().out
    assert not (root / "resumed" / ".places_train.npz.partial").exists()
    _, resumed = formats.load(root / "resumed" / "places_train.npz")
    _, whole = formats.load(root / "places" / "places_train.npz")
    for label in CLASSES:
        for youtube_id, value in whole[label].items():
            np.testing.assert_allclose(resumed[label][youtube_id]["probs"], value["probs"], atol=1e-6)


def test_a_corrupt_frame_is_listed_and_retried_on_the_next_run(chain, tmp_path, capsys):
    root, videos = chain
    label, youtube_id = videos["val"][0]
    frame = root / "jpg" / "val" / label / f"{youtube_id}_000010_000020" / "image_00001.jpg"
    good = frame.read_bytes()
    out = tmp_path / "places"
    try:
        frame.write_bytes(b"broken")
        assert sdn(*scene_args(root, out, "--subsets", "validation")) == 1
        captured = capsys.readouterr()
        assert "1 failed" in captured.out and f"{frame}: not a readable JPEG" in captured.err
        assert len(load_pickled_npy_or_npz(out / "places_val.npz")) == 1  # the other class's video
    finally:
        frame.write_bytes(good)
    assert sdn(*scene_args(root, out, "--subsets", "validation")) == 0
    assert "(1 now, 1 from an earlier run), 0 failed" in capsys.readouterr().out


def load_pickled_npy_or_npz(path: Path) -> dict:
    return formats.load(path)[1]


def test_convert_round_trips(chain, tmp_path):
    root, _ = chain
    assert sdn("prepare", "convert", root / "places_npy", tmp_path / "safe") == 0
    assert sdn("prepare", "convert", tmp_path / "safe", tmp_path / "back", "--to", "npy") == 0
    for name in ("places_train", "places_val"):
        assert_same(load_pickled_npy(root / "places_npy" / f"{name}.npy"),
                    load_pickled_npy(tmp_path / "back" / f"{name}.npy"))
    dets = tmp_path / "dets"
    dets.mkdir()
    os.link(root / "dets" / "detection_train_merged_rearranged.npy", dets / "detection_train_merged_rearranged.npy")
    assert sdn("prepare", "convert", dets, tmp_path / "dets_safe") == 0
    assert sorted(os.listdir(tmp_path / "dets_safe")) == ["detection_train.npz"]  # the loader's name
    assert sdn("prepare", "convert", tmp_path / "dets_safe" / "detection_train.npz", tmp_path / "dets_back",
               "--to", "npy") == 0
    assert_same(load_pickled_npy(dets / "detection_train_merged_rearranged.npy"),
                load_pickled_npy(tmp_path / "dets_back" / "detection_train_merged_rearranged.npy"))
    assert sdn("prepare", "convert", tmp_path / "dets_safe" / "detection_train.npz", tmp_path / "x") == 2  # already npz


def assert_same(a, b) -> None:
    """Equal nested dicts with arrays of equal values and dtypes (and keys of equal types)."""
    assert isinstance(b, type(a)) or isinstance(a, type(b))
    if isinstance(a, dict):
        assert list(a) == list(b) and [type(k) for k in a] == [type(k) for k in b]
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def test_scene_model_checkpoints(tmp_path):
    torch.manual_seed(1)
    model = torchvision.models.resnet50(num_classes=365)
    torch.save(model.state_dict(), tmp_path / "plain.pth")  # a bare state dict, no module. prefix
    loaded = load_scene_model(str(tmp_path / "plain.pth"))
    assert isinstance(loaded, torchvision.models.ResNet) and loaded.fc.out_features == 365
    assert torch.equal(loaded.layer4[2].conv3.weight, model.layer4[2].conv3.weight)
    torch.save({"state_dict": {"module.features.0.weight": torch.zeros(1)}}, tmp_path / "vgg.pth")
    with pytest.raises(SdnError, match=r"vgg\.pth: not a torchvision ResNet state dict"):
        load_scene_model(str(tmp_path / "vgg.pth"))
