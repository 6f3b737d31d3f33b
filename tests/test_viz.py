"""sdn.viz and the `sdn visualize` / `sdn plot` commands.

Maps are checked where the answer is known: a hand-built model that responds to bright pixels
must put its map on a bright square, wherever the square is. Box mapping is checked against hand
arithmetic and against the pixels the real transform produces. The commands run end to end on
the checkpoint and logs of a real one-epoch training run on generated data.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from sdn.checkpoint import read_checkpoint, save_checkpoint
from sdn.cli.main import main as sdn_main
from sdn.data.datasets import get_validation_set
from sdn.data.detections import HumanDetections
from sdn.data.transforms import LoopPadding, MultiScaleCornerCrop, test_spatial_transform, val_spatial_transform
from sdn.errors import SdnError
from sdn.models import build_model
from sdn.viz.attention import (BoxedClips, actor_attention, box_mask, confident_boxes, dataset_actor_attention,
                               map_boxes)
from sdn.viz.cam import activation_maps, class_activation_maps, grad_cam
from sdn.viz.checkpoints import load_model
from sdn.viz.plots import plot_run, read_log
from sdn.viz.render import TITLE_HEIGHT

SIZE, DURATION = 16, 4


# ----------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def run(synth_dataset, tmp_path_factory) -> tuple[Path, Path]:
    """A generated dataset and a one-epoch baseline run on it (save_1.pth, train.log, val.log)."""
    data, _ = synth_dataset(classes=2, train_per_class=3, val_per_class=2, ooc_per_class=0, frames=8, width=48,
                            height=36)
    result = tmp_path_factory.mktemp("viz") / "r"
    assert sdn_main(["train", "--root_path", str(data), "--video_path", "jpg", "--annotation_path", "kinetics.json",
                     "--result_path", str(result), "--dataset", "kinetics", "--is_mask_adv", "--n_classes", "2",
                     "--model_depth", "10", "--resnet_shortcut", "A", "--sample_size", str(SIZE),
                     "--sample_duration", str(DURATION), "--batch_size", "2", "--val_batch_size", "2",
                     "--n_threads", "0", "--n_epochs", "1", "--checkpoint", "1", "--no_progress",
                     "--no_tensorboard"]) == 0
    return data, result


@pytest.fixture(scope="module")
def finetuned(run, tmp_path_factory) -> Path:
    """The run's checkpoint with its classifier replaced by a 3-class one (as n_finetune_classes would)."""
    checkpoint = read_checkpoint(str(run[1] / "save_1.pth"))
    generator = torch.Generator().manual_seed(0)
    checkpoint["state_dict"]["module.fc.weight"] = torch.randn(3, 512, generator=generator) * 0.05
    checkpoint["state_dict"]["module.fc.bias"] = torch.zeros(3)
    path = tmp_path_factory.mktemp("finetuned") / "save_1.pth"
    save_checkpoint(str(path), checkpoint)  # a new checksum for the changed weights
    return path


# ----------------------------------------------------------------------------------------------
# Activation maps


class BrightSpotModel(nn.Module):
    """Class 0 fires on pixels brighter than 0.5 (feature 0, 2x2-pooled); class 1 reads a constant feature."""

    def __init__(self) -> None:
        super().__init__()
        self.detector = nn.Conv3d(3, 2, kernel_size=1)
        self.pool = nn.AvgPool3d((1, 2, 2))
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.detector.weight.zero_()
            self.detector.weight[0] = 1 / 3
            self.detector.bias.copy_(torch.tensor([-0.5, 1.0]))
            self.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.01]]))
            self.fc.bias.zero_()

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.detector(x)))

    def get_classifier(self) -> nn.Linear:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.feature_maps(x).mean(dim=(2, 3, 4)))


def square_clip(top: int, left: int, step: int = 2) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """A grey [3, T, 16, 16] clip with a white 4x4 square moving right by ``step`` per frame."""
    clip = torch.full((3, DURATION, SIZE, SIZE), 0.2)
    corners = [(top, left + step * t) for t in range(DURATION)]
    for t, (y, x) in enumerate(corners):
        clip[:, t, y:y + 4, x:x + 4] = 1.0
    return clip, corners


def argmax_positions(maps: torch.Tensor) -> list[tuple[int, int]]:
    """(y, x) of each frame's maximum in a [T, H, W] map."""
    flat = maps.flatten(1).argmax(dim=1)
    return [(int(i) // maps.shape[2], int(i) % maps.shape[2]) for i in flat]


@pytest.mark.parametrize("method,layer", [("cam", None), ("gradcam", None), ("gradcam", "detector")])
def test_maps_follow_the_square(method, layer):
    first, first_corners = square_clip(2, 2)
    second, second_corners = square_clip(10, 6)
    result = activation_maps(BrightSpotModel(), torch.stack([first, second]), method, layer)
    assert result.maps.shape == (2, DURATION, SIZE, SIZE)
    assert result.classes.tolist() == [0, 0] == result.predicted.tolist()
    for maps, corners in zip(result.maps, (first_corners, second_corners)):
        for (y, x), (top, left) in zip(argmax_positions(maps), corners):
            assert top <= y < top + 4 and left <= x < left + 4
    assert argmax_positions(result.maps[0]) != argmax_positions(result.maps[1])


def test_maps_have_clip_shape_and_unit_range_on_a_real_backbone():
    torch.manual_seed(0)
    model = build_model("resnet", 10, n_classes=3, resnet_shortcut="A").train()
    clips = torch.randn(2, 3, 8, 64, 64)
    for result in (class_activation_maps(model, clips), grad_cam(model, clips), grad_cam(model, clips, "layer3"),
                   grad_cam(model, clips, "layer2.0.conv1", classes=torch.tensor([2, 1]))):
        assert result.maps.shape == (2, 8, 64, 64)
        assert torch.allclose(result.maps.amin(dim=(1, 2, 3)), torch.zeros(2))
        assert torch.allclose(result.maps.amax(dim=(1, 2, 3)), torch.ones(2))
        assert torch.allclose(result.probabilities.sum(dim=1), torch.ones(2))
    assert model.training, "explaining must not leave the model in eval mode"


def test_chosen_class_and_cam_decomposes_the_logit():
    model = BrightSpotModel()
    clip, _ = square_clip(4, 4)
    assert activation_maps(model, clip[None], "cam", classes=1).classes.tolist() == [1]
    # The CAM is the classifier row times the feature map: its mean is the class logit minus the bias.
    features = model.feature_maps(clip[None])
    raw = torch.einsum("c,bcthw->bthw", model.fc.weight[0], features)
    assert torch.isclose(raw.mean(), model(clip[None])[0, 0])


def test_map_errors_are_clear():
    clips = square_clip(2, 2)[0][None]
    with pytest.raises(SdnError, match="class index 5 is out of range: the classifier has 2 outputs"):
        activation_maps(BrightSpotModel(), clips, classes=5)
    with pytest.raises(SdnError, match="'nope': the model has no such layer"):
        grad_cam(BrightSpotModel(), clips, "nope")
    with pytest.raises(SdnError, match="5-D map"):
        grad_cam(BrightSpotModel(), clips, "fc")
    with pytest.raises(SdnError, match="--layer applies to --method gradcam"):
        activation_maps(BrightSpotModel(), clips, "cam", "detector")


# ----------------------------------------------------------------------------------------------
# Actor attention


def test_actor_attention_is_one_inside_the_box_and_the_area_share_when_uniform():
    concentrated = torch.zeros(2, 10, 20)
    concentrated[:, 2:6, 3:9] = torch.rand(2, 4, 6) + 0.1
    box = np.array([[3.0, 2.0, 9.0, 6.0, 0.9]], dtype=np.float32)
    assert actor_attention(concentrated, [box, box]) == pytest.approx(1.0)
    uniform = np.ones((2, 10, 20))
    assert actor_attention(uniform, [np.array([[0.0, 0.0, 5.0, 10.0]]), np.array([[0.0, 0.0, 5.0, 10.0]])]) == 0.25
    # a frame without a person does not count, even if the map is bright there
    concentrated[1] = 1.0
    assert actor_attention(concentrated, [box, np.zeros((0, 4))]) == pytest.approx(1.0)
    assert math.isnan(actor_attention(uniform, [np.zeros((0, 4))] * 2))
    with pytest.raises(ValueError, match="T box arrays"):
        actor_attention(uniform, [box])


def test_box_mask_counts_pixel_centres_and_unions_boxes():
    mask = box_mask(np.array([[0.4, 0.0, 1.6, 1.0], [1.0, 1.0, 2.0, 3.0]]), 4, 4)
    assert mask.sum() == 4 and mask[0, 0] and mask[0, 1] and mask[1, 1] and mask[2, 1]
    assert confident_boxes(np.array([[0, 0, 1, 1, 0.29], [0, 0, 1, 1, 0.3]], dtype=np.float32)).shape == (1, 5)


def test_map_boxes_through_scale_and_centre_crop_by_hand():
    # 320x240 -> Scale(112): 149x112 (int(112 * 320 / 240)); CenterCrop(112): x1 = round(18.5) = 18, y1 = 0
    boxes = np.array([[100, 60, 200, 180, 0.9], [0, 0, 20, 240, 0.8]], dtype=np.float32)
    mapped = map_boxes(boxes, (320, 240), val_spatial_transform(112))
    assert mapped.tolist() == [[28.5625, 28.0, 75.125, 84.0], [0.0, 0.0, 0.0, 112.0]]
    corner = map_boxes(boxes[:1], (320, 240), test_spatial_transform(112, 1.0, "tl"))
    assert corner.tolist() == [[46.5625, 28.0, 93.125, 84.0]]
    with pytest.raises(SdnError, match="cannot map human boxes through MultiScaleCornerCrop"):
        map_boxes(boxes, (320, 240), MultiScaleCornerCrop([1.0], 112))


def test_mapped_box_matches_the_transformed_pixels():
    frames = torch.zeros(1, 3, 240, 320, dtype=torch.uint8)
    frames[..., 60:180, 100:200] = 255
    out = val_spatial_transform(112)(frames)[0, 0]
    ys, xs = torch.nonzero(out > 127, as_tuple=True)
    x1, y1, x2, y2 = map_boxes(np.array([[100, 60, 200, 180]]), (320, 240), val_spatial_transform(112))[0]
    assert abs(int(xs.min()) - x1) <= 1 and abs(int(xs.max()) + 1 - x2) <= 1
    assert abs(int(ys.min()) - y1) <= 1 and abs(int(ys.max()) + 1 - y2) <= 1


@pytest.mark.slow
def test_dataset_actor_attention_on_the_trained_model(run):
    data, result = run
    loaded = load_model(result / "save_1.pth")
    dataset = get_validation_set(loaded.opt, val_spatial_transform(SIZE), LoopPadding(DURATION))
    detections = HumanDetections.from_path(str(data / "dets"), "validation")
    boxed = BoxedClips(dataset, detections)
    item, sample = boxed[0], dataset.samples[0]
    indices = LoopPadding(DURATION)(list(sample.frame_indices))
    expected = [map_boxes(confident_boxes(detections.boxes(sample.video.class_dir, sample.video.video_id, i)),
                          (48, 36), val_spatial_transform(SIZE)) for i in indices]
    assert len(item["boxes"]) == DURATION
    assert all(np.array_equal(got, want) for got, want in zip(item["boxes"], expected))
    assert any(len(boxes) for boxes in item["boxes"])
    summary = dataset_actor_attention(loaded.model, boxed, loaded.prepare, method="gradcam", layer="layer1",
                                      batch_size=4, progress=False)
    assert len(summary.shares) == len(dataset) and summary.counted >= 1
    assert 0.0 <= summary.mean <= 1.0 and summary.mean == pytest.approx(np.nanmean(summary.shares))
    with pytest.raises(SdnError, match="target 'x'"):
        dataset_actor_attention(loaded.model, boxed, loaded.prepare, target="x")


# ----------------------------------------------------------------------------------------------
# Loading checkpoints


@pytest.mark.slow
def test_load_model_rebuilds_from_the_saved_options(run, finetuned, tmp_path):
    loaded = load_model(run[1] / "save_1.pth")
    assert loaded.opt.arch == "resnet-10" and loaded.n_outputs == 2 and not loaded.model.training
    assert loaded.class_names == ["rise", "fall"] and loaded.resolve_class("fall") == 1 == loaded.resolve_class("1")
    three = load_model(finetuned)
    assert three.n_outputs == 3 and three.class_name(2) == "class 2"
    with pytest.raises(SdnError, match="--class 'jump' is not a class of this model"):
        loaded.resolve_class("jump")
    with pytest.raises(SdnError, match="--class 3 is out of range"):
        three.resolve_class("3")
    bare = read_checkpoint(str(run[1] / "save_1.pth"))
    del bare["config"]
    save_checkpoint(str(tmp_path / "bare.pth"), bare)
    with pytest.raises(SdnError, match="bare.pth: the checkpoint holds no training options"):
        load_model(tmp_path / "bare.pth")


# ----------------------------------------------------------------------------------------------
# sdn visualize


@pytest.mark.slow
def test_visualize_two_checkpoints_side_by_side(run, finetuned, tmp_path, capsys):
    out = tmp_path / "out"
    assert sdn_main(["visualize", str(run[1] / "save_1.pth"), str(finetuned), "--val_clips", "2", "--out", str(out),
                     "--frames", "3", "--cell_size", "112", "--labels", "baseline", "finetuned",
                     "--no_progress"]) == 0
    pngs, gifs = sorted(out.glob("*.png")), sorted(out.glob("*.gif"))
    assert len(pngs) == 2 and [p.stem for p in pngs] == [g.stem for g in gifs]
    rows = 3  # the input frames, then one row per checkpoint
    for png, gif in zip(pngs, gifs):
        assert Image.open(png).size == (3 * 112, rows * (TITLE_HEIGHT + 112))
        animated = Image.open(gif)
        assert animated.n_frames == DURATION and animated.size[1] == rows * (TITLE_HEIGHT + 112)
        assert animated.size[0] >= 112
    assert "wrote 2 PNG strip(s) and GIF(s)" in capsys.readouterr().out


@pytest.mark.slow
def test_visualize_videos_with_gradcam_and_a_named_class(run, tmp_path):
    data, result = run
    out = tmp_path / "out"
    assert sdn_main(["visualize", str(result / "save_1.pth"), "--video", str(data / "jpg" / "val" / "fall"),
                     "--out", str(out), "--method", "gradcam", "--layer", "layer1", "--class", "rise",
                     "--frames", "2", "--cell_size", "128", "--no_progress"]) == 0
    videos = sorted(path.name for path in (data / "jpg" / "val" / "fall").iterdir())
    assert sorted(path.stem for path in out.glob("*.png")) == videos
    for path in out.glob("*.png"):
        width, height = Image.open(path).size
        assert height == 2 * (TITLE_HEIGHT + 128) and width >= 2 * 128  # a long title may widen the strip


@pytest.mark.slow
@pytest.mark.parametrize("extra,message", [
    (["--class", "jump"], "--class 'jump' is not a class of this model"),
    (["--labels", "a", "b"], "--labels gives 2 names for 1 checkpoints"),
    (["--layer", "layer1"], "--layer applies to --method gradcam"),
    (["--method", "gradcam", "--layer", "layer9"], "--layer 'layer9': the model has no such layer"),
    (["--frames", "0"], "--frames must be at least 1"),
])
def test_visualize_bad_options(run, tmp_path, capsys, extra, message):
    data, result = run
    argv = ["visualize", str(result / "save_1.pth"), "--video", str(data / "jpg" / "val" / "fall"),
            "--out", str(tmp_path / "out"), "--no_progress", *extra]
    assert sdn_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sdn: error:") and message in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_visualize_bad_inputs(run, tmp_path, capsys):
    checkpoint = str(run[1] / "save_1.pth")
    assert sdn_main(["visualize", str(tmp_path / "none.pth"), "--val_clips", "1", "--out", str(tmp_path)]) == 2
    assert "none.pth: checkpoint file not found" in capsys.readouterr().err
    assert sdn_main(["visualize", checkpoint, "--video", str(tmp_path / "missing.mp4"), "--out", str(tmp_path)]) == 2
    assert "missing.mp4: no such video file, frame folder or directory" in capsys.readouterr().err
    assert sdn_main(["visualize", checkpoint, "--video", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no video files" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        sdn_main(["visualize", checkpoint, "--out", str(tmp_path)])
    assert exit_info.value.code == 2


# ----------------------------------------------------------------------------------------------
# sdn plot


FULL_TRAIN = ("epoch\tloss total\tloss act\tloss place\tacc act\tacc place\tlr\tloss mask\tacc mask\tmasked share\n"
              "1\t2.0\t1.5\t0.5\t0.3\t0.2\t0.001\t-0.6\t0.4\t0.5\n"
              "2\t1.8\t1.2\t0.6\t0.4\t0.2\t0.001\t-0.6\t0.4\t0.5\n"
              "2\t1.7\t1.1\t0.6\t0.5\t0.2\t0.001\t-0.6\t0.4\t0.5\n"  # a resumed run repeats epoch 2
              "3\t1.5\t1.0\t0.5\t0.6\t0.3\t0.0001\t-0.7\t0.5\t0.5\n")
FULL_VAL = ("epoch\tloss total\tloss act\tloss place\tacc act\tacc place\tloss mask\tacc mask\tmasked share\n"
            "1\t2.1\t1.6\t0.5\t0.3\t0.2\t-0.5\t0.4\t0.5\n2\t1.9\t1.3\t0.6\t0.4\t0.2\t-0.6\t0.4\t0.5\n")


@pytest.mark.slow
def test_plot_the_real_run(run, capsys):
    assert sdn_main(["plot", str(run[1])]) == 0
    path = run[1] / "curves.png"
    assert f"wrote {path}" in capsys.readouterr().out
    assert Image.open(path).size == (3 * 500, 360)  # loss, accuracy, learning rate panels
    log = read_log(run[1] / "val.log")
    assert log.epochs == [1] and list(log.series) == ["loss", "acc"]


def test_plot_full_mode_columns_and_partial_runs(tmp_path):
    (tmp_path / "train.log").write_text(FULL_TRAIN)
    (tmp_path / "val.log").write_text(FULL_VAL)
    log = read_log(tmp_path / "train.log")
    assert log.epochs == [1, 2, 3] and log.series["acc act"] == [0.3, 0.5, 0.6]
    assert Image.open(plot_run(tmp_path, tmp_path / "full.png")).size == (4 * 500, 360)  # + "other" (masked share)
    (tmp_path / "train.log").unlink()
    assert Image.open(plot_run(tmp_path)).size == (3 * 500, 360)  # val only: no learning rate panel


@pytest.mark.parametrize("content,message", [
    (None, "neither train.log nor val.log found"),
    ("", "val.log: empty log file"),
    ("loss\tacc\n1\t2\n", "val.log: not an sdn log"),
    ("epoch\tloss\n", "the logs have no rows yet"),
    ("epoch\tloss\tacc\n1\t0.5\n", "val.log:2: expected 3 tab-separated values (as the header), found 2"),
    ("epoch\tloss\tacc\n1\t0.5\t0.1\n2\tabc\t0.2\n", "val.log:3: column 'loss': 'abc' is not a number"),
])
def test_plot_bad_logs(tmp_path, capsys, content, message):
    if content is not None:
        (tmp_path / "val.log").write_text(content)
    assert sdn_main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_plot_missing_directory(tmp_path):
    with pytest.raises(SdnError, match="no such result directory"):
        plot_run(tmp_path / "absent")
