"""``sdn prepare scuba`` on videos made here, whose actor (and so whose mask) is known exactly.

Each video is a textured scene with a textured rectangle (the actor) moving across it, stored as
JPEG frame folders (or video files) in the UCF-101 layout. The tests check what the issue asks:
inside the mask the actor's pixels, outside it the background's (to the byte: each written JPEG
is compared with the JPEG of the expected composite, computed here from the decoded source frames);
SCUFO is one SCUBA frame repeated; the output is deterministic for any number of workers; an
interrupted run resumes without taking a half-written clip as finished.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import encode_jpeg

from sdn.cli.main import main as sdn_main
from sdn.data.annotations import VideoEntry
from sdn.data.detections import save_detections_npz
from sdn.data.human_masks import save_human_masks
from sdn.data.test_splits import read_split
from sdn.data.video import FrameFolder, VideoFile
from sdn.prepare import scuba
from test_prepare_frames import write_video

CLASSES = ["Punch", "Surfing"]
WIDTH, HEIGHT, N_FRAMES = 40, 32, 6
ACTOR = (10, 14)  # height, width of the actor rectangle


def sdn(*args) -> int:
    return sdn_main([str(arg) for arg in args])


def actor_mask(n_frames: int, height: int, width: int, shift: int) -> np.ndarray:
    """The actor's pixels: a rectangle moving 3 pixels right per frame."""
    mask = np.zeros((n_frames, height, width), dtype=bool)
    for t in range(n_frames):
        top, left = 8 + shift, 2 + 3 * t + shift
        mask[t, top:top + ACTOR[0], left:left + ACTOR[1]] = True
    return mask


def render(mask: np.ndarray, seed: int) -> np.ndarray:
    """uint8 [T, H, W, 3]: a gradient scene with noise, the actor a red-green texture on top."""
    rng = np.random.default_rng(seed)
    n_frames, height, width = mask.shape
    y, x = np.mgrid[0:height, 0:width]
    scene = np.stack([40 + 4 * x, 60 + 5 * y, np.full_like(x, 90 + 20 * seed)], axis=-1)
    frames = np.repeat(scene[None], n_frames, axis=0) + rng.integers(0, 30, (n_frames, height, width, 3))
    actor = np.stack([np.full_like(x, 230), 100 + 4 * ((x + y) % 8), np.full_like(x, 20)], axis=-1)
    frames = np.where(mask[..., None], actor[None], frames)
    return np.clip(frames, 0, 255).astype(np.uint8)


def write_frames(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for t, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(folder / f"image_{t:05d}.jpg", quality=95)
    (folder / "n_frames").write_text(str(len(frames)))


def make_dataset(root: Path, per_class: int = 2) -> dict[tuple[str, str], np.ndarray]:
    """UCF-style frame folders + annotation (validation and one training video per class); the true masks."""
    database, masks = {}, {}
    for c, label in enumerate(CLASSES):
        for k in range(per_class + 1):
            key = f"v_{label}_g0{k}_c01"
            subset = "training" if k == per_class else "validation"
            mask = actor_mask(N_FRAMES + k, HEIGHT, WIDTH, shift=c + k)
            write_frames(root / "jpg" / label / key, render(mask, seed=3 * c + k))
            database[key] = {"subset": subset, "annotations": {"label": label}}
            if subset == "validation":
                masks[(label, key)] = mask
    (root / "ucf101_01.json").write_text(json.dumps({"labels": CLASSES, "database": database}))
    (root / "masks").mkdir()
    save_human_masks(root / "masks" / "masks_val.npz", masks, "exact")
    return masks


def make_backgrounds(folder: Path, count: int = 4) -> list[np.ndarray]:
    """Images of exactly the frame size (scaling to cover the frame leaves them unchanged)."""
    folder.mkdir(parents=True)
    images = []
    for i in range(count):
        rng = np.random.default_rng(100 + i)
        blocks = rng.integers(0, 256, (HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8)
        image = np.ascontiguousarray(blocks.repeat(8, axis=0).repeat(8, axis=1))
        Image.fromarray(image).save(folder / f"place_{i:03d}.png")
        images.append(image)
    return images


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("scuba")
    masks = make_dataset(root)
    make_backgrounds(root / "places")
    return root, masks


def scuba_args(root: Path, out, *extra) -> list:
    return ["prepare", "scuba", "--dataset", "ucf101", "--video_path", root / "jpg", "--annotation_path",
            root / "ucf101_01.json", "--human_masks_path", root / "masks", "--backgrounds", root / "places",
            "--n_images", 2, "--n_stripes", 1, "--out", out, "--no_progress", *extra]


@pytest.fixture(scope="module")
def made(dataset) -> Path:
    root, _ = dataset
    assert sdn(*scuba_args(root, root / "out", "--workers", 0)) == 0
    return root / "out"


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (hidden ones too) with its bytes."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def stripes_expected(spec: str, height: int, width: int) -> np.ndarray:
    """The stripe image a spec names, computed here from the formula the documentation gives."""
    fields = dict(part.split("=") for part in spec[len("stripes:"):].split(","))
    colour = np.array([int(c) for c in fields.pop("colour").split("/")], dtype=np.uint8)
    p = {name: float(value) for name, value in fields.items()}
    side = min(height, width)
    y = np.arange(height, dtype=np.float64)[:, None] + 0.5 - height / 2
    x = np.arange(width, dtype=np.float64)[None, :] + 0.5 - width / 2
    a = math.radians(p["angle"])
    u, v = x * math.cos(a) + y * math.sin(a), -x * math.sin(a) + y * math.cos(a)
    bend = p["amplitude"] * side * np.sin(2 * math.pi * u / (p["wavelength"] * side) + p["phase"])
    on = np.mod((v - bend) / (p["period"] * side), 1.0) < p["width"]
    return np.where(on[..., None], 255 - colour, colour).astype(np.uint8)


def expected_background(spec: str, places: Path) -> np.ndarray:
    if spec.startswith("image:"):
        return np.asarray(Image.open(places / spec[len("image:"):]).convert("RGB"))
    return stripes_expected(spec, HEIGHT, WIDTH)


def jpeg(frame: np.ndarray) -> bytes:
    return encode_jpeg(torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1), quality=90).numpy().tobytes()


# ----------------------------------------------------------------------------------------------
# Pieces


def test_composite_is_the_actor_inside_the_mask_and_the_background_outside():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 7, 5, 3), dtype=np.uint8)  # odd sizes
    background = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    mask = rng.random((3, 7, 5)) < 0.4
    out = scuba.composite(frames, scuba.actor_select(mask), background)
    np.testing.assert_array_equal(out[mask], frames[mask])
    np.testing.assert_array_equal(out[~mask], np.broadcast_to(background, frames.shape)[~mask])
    assert out.dtype == np.uint8 and out.shape == frames.shape


def test_smooth_mask_is_the_union_over_neighbouring_frames():
    mask = np.zeros((5, 1, 3), dtype=bool)
    mask[2, 0, 1] = True
    np.testing.assert_array_equal(scuba.smooth_mask(mask, 1)[:, 0, 1], [False, True, True, True, False])
    np.testing.assert_array_equal(scuba.smooth_mask(mask, 9)[:, 0, 1], [True] * 5)
    np.testing.assert_array_equal(scuba.smooth_mask(mask, 0), mask)


def test_box_mask_fills_boxes_at_or_above_the_threshold_as_the_human_masking_does():
    boxes = [np.array([[1.7, 0.2, 3.9, 1.5, 0.9], [0, 0, 4, 4, 0.1]], np.float32), np.zeros((0, 5), np.float32)]
    mask = scuba.box_mask(boxes, 4, 6, 0.3)
    expected = np.zeros((2, 4, 6), dtype=bool)
    expected[0, 0:2, 1:4] = True  # int() of each corner, both ends included (PIL's polygon fill)
    np.testing.assert_array_equal(mask, expected)


def test_stripe_specs_remake_their_image_exactly():
    rng = np.random.default_rng(5)
    for _ in range(5):
        stripes = scuba.Stripes.draw(rng)
        assert scuba.parse_stripes(stripes.spec()) == stripes
        image = scuba.render_stripes(stripes, 30, 44)
        np.testing.assert_array_equal(image, stripes_expected(stripes.spec(), 30, 44))
        colour = np.array(stripes.colour, np.uint8)
        assert {tuple(c) for c in image.reshape(-1, 3)} <= {tuple(colour), tuple(255 - colour)}
    with pytest.raises(scuba.SdnError, match="malformed stripe background"):
        scuba.parse_stripes("stripes:angle=3")


def test_keys_stay_unique_when_two_classes_hold_the_same_video_id():
    entries = [VideoEntry("a", "vid", 0, "walk", 3), VideoEntry("b", "vid", 1, "run", 3),
               VideoEntry("c", "other", 1, "run", 3)]
    bases = scuba.key_bases(entries)
    assert len(set(bases)) == 3 and bases[2] == "other" and all(b.startswith("vid_") for b in bases[:2])


def test_clip_frames_take_the_middle_of_long_videos():
    assert scuba.clip_frames(5, 0) == (1, 2, 3, 4, 5)
    assert scuba.clip_frames(10, 4) == (4, 5, 6, 7)
    assert scuba.clip_frames(3, 4) == (1, 2, 3)


# ----------------------------------------------------------------------------------------------
# The command


def test_scuba_is_the_actor_on_each_background_to_the_byte(dataset, made):
    root, masks = dataset
    split = read_split(str(made / "scuba"))
    assert split.name == "scuba" and split.class_names == CLASSES
    database = json.loads((made / "scuba" / "split.json").read_text())["database"]
    assert len(database) == len(masks) * 3  # 2 images + 1 stripe image per video
    assert "exact masks" in split.description and "SCUBA" in split.description
    for key, value in database.items():
        label = value["annotations"]["label"]
        source_key = key.split("__")[0]
        assert value["source"] == f"{label}/{source_key}"
        mask = masks[(label, source_key)]
        source = FrameFolder(root / "jpg" / label / source_key).read(list(range(1, len(mask) + 1)))
        source = source.permute(0, 2, 3, 1).numpy()
        background = expected_background(value["background"], root / "places")
        tag = key.split("__")[1]
        assert tag.startswith("stripes") == value["background"].startswith("stripes:")
        clip = made / "scuba" / label / key
        assert (clip / "n_frames").read_text() == str(len(mask))
        for t in range(len(mask)):
            expected = np.where(mask[t][..., None], source[t], background)
            assert (clip / f"image_{t + 1:05d}.jpg").read_bytes() == jpeg(expected), (key, t)
        if tag.startswith("stripes"):
            continue  # 3-pixel stripes do not survive JPEG at 40x32; the bytes above are the check
        # and as a reader sees it: the actor's colours inside, the background's outside (JPEG-close)
        decoded = FrameFolder(clip).read([1])[0].permute(1, 2, 0).numpy().astype(int)
        to_actor, to_background = np.abs(decoded - source[0]).mean(axis=-1), np.abs(decoded - background).mean(axis=-1)
        assert to_actor[mask[0]].mean() < 0.5 * to_background[mask[0]].mean()
        assert to_background[~mask[0]].mean() < 0.5 * to_actor[~mask[0]].mean()


def test_images_are_drawn_without_repeats_and_seeded(dataset, made):
    database = json.loads((made / "scuba" / "split.json").read_text())["database"]
    per_video: dict[str, list[str]] = {}
    for key, value in database.items():
        per_video.setdefault(key.split("__")[0], []).append(value["background"])
    for backgrounds in per_video.values():
        images = [b for b in backgrounds if b.startswith("image:")]
        assert len(images) == 2 and len(set(images)) == 2
    assert len({tuple(b) for b in per_video.values()}) > 1  # videos do not all get the same backgrounds


def test_scufo_is_one_scuba_frame_repeated_under_the_same_key(made):
    scuba_db = json.loads((made / "scuba" / "split.json").read_text())["database"]
    scufo = json.loads((made / "scufo" / "split.json").read_text())
    assert scufo["split"]["name"] == "scufo" and set(scufo["database"]) == set(scuba_db)
    stills = []
    for key, value in scufo["database"].items():
        assert value == scuba_db[key]
        label = value["annotations"]["label"]
        twin, clip = made / "scufo" / label / key, made / "scuba" / label / key
        count = int((clip / "n_frames").read_text())
        assert (twin / "n_frames").read_text() == str(count)
        frames = [(twin / f"image_{t:05d}.jpg").read_bytes() for t in range(1, count + 1)]
        assert len(set(frames)) == 1 and not (twin / f"image_{count + 1:05d}.jpg").exists()
        matches = [t for t in range(1, count + 1) if (clip / f"image_{t:05d}.jpg").read_bytes() == frames[0]]
        assert matches
        stills.append(matches[0])
    assert len(set(stills)) > 1  # the repeated frame is drawn, not always the first


def test_the_output_is_the_same_for_any_number_of_workers(dataset, made, tmp_path):
    root, _ = dataset
    assert sdn(*scuba_args(root, tmp_path / "parallel", "--workers", 2)) == 0
    assert tree(tmp_path / "parallel") == tree(made)
    assert sdn(*scuba_args(root, tmp_path / "seed1", "--workers", 0, "--seed", 1)) == 0
    assert (tmp_path / "seed1" / "scuba" / "split.json").read_bytes() != (made / "scuba" / "split.json").read_bytes()


def test_an_interrupted_run_resumes_and_never_takes_a_half_written_clip(dataset, made, tmp_path, monkeypatch, capsys):
    root, _ = dataset
    out = tmp_path / "out"
    real, calls = scuba.write_video, []

    def interrupted(job, config, masks):
        calls.append(job.index)
        if len(calls) == 3:  # half-way through the third video: one staging folder with some frames in it
            scuba._fresh(scuba._staging(scuba.clip_dir(config.out, "scuba", job, job.clips[0])))
            raise KeyboardInterrupt
        return real(job, config, masks)

    monkeypatch.setattr(scuba, "write_video", interrupted)
    assert sdn(*scuba_args(root, out, "--workers", 0)) == 130
    monkeypatch.setattr(scuba, "write_video", real)
    assert not (out / "scuba" / "split.json").exists()
    stale = list((out / "scuba").glob("*/.*.partial"))
    assert len(stale) == 1
    (stale[0] / "image_00001.jpg").write_bytes(b"half")
    finished = sorted(p for p in (out / "scuba").glob("*/*") if not p.name.startswith("."))
    assert len(finished) == 2 * 3
    stamp = {p: p.stat().st_mtime_ns for p in finished}
    capsys.readouterr()
    assert sdn(*scuba_args(root, out, "--workers", 0)) == 0
    assert "2 videos now (39 frames), 2 from an earlier run" in capsys.readouterr().out
    assert all(p.stat().st_mtime_ns == stamp[p] for p in finished)  # finished clips were not redone
    assert tree(out) == tree(made)  # and the staging folder is gone
    # a clip removed by hand is the only one made again
    victim = next((out / "scufo").glob("*/*"))
    for path in victim.iterdir():
        path.unlink()
    victim.rmdir()
    assert sdn(*scuba_args(root, out, "--workers", 0)) == 0
    assert "1 videos now (0 frames)" in capsys.readouterr().out  # only the SCUFO twin was missing
    assert tree(out) == tree(made)


def test_other_settings_are_refused_and_overwrite_starts_afresh(dataset, made, tmp_path, capsys):
    root, _ = dataset
    out = tmp_path / "out"
    assert sdn(*scuba_args(root, out, "--workers", 0, "--n_stripes", 2)) == 0
    capsys.readouterr()
    assert sdn(*scuba_args(root, out, "--workers", 0)) == 2
    assert "holds SCUBA/SCUFO clips made with other settings (differing: n_stripes)" in capsys.readouterr().err
    assert sdn(*scuba_args(root, out, "--workers", 0, "--overwrite")) == 0
    assert tree(out) == tree(made)


def test_boxes_stand_in_for_masks_and_say_so(dataset, tmp_path, capsys):
    root, masks = dataset
    detections: dict = {}
    for (label, key), mask in masks.items():
        frames = {}
        for t, frame in enumerate(mask, start=1):
            rows, cols = np.nonzero(frame)
            frames[t] = {"human_boxes": np.array([[cols.min(), rows.min(), cols.max(), rows.max(), 0.9],
                                                  [0, 0, WIDTH, HEIGHT, 0.2]], np.float32)}  # below 0.3: unused
        detections.setdefault(label, {})[key] = frames
    (tmp_path / "dets").mkdir()
    save_detections_npz(tmp_path / "dets" / "detection_val.npz", detections)
    out = tmp_path / "out"
    args = ["prepare", "scuba", "--dataset", "ucf101", "--video_path", root / "jpg", "--annotation_path",
            root / "ucf101_01.json", "--human_dets_path", tmp_path / "dets", "--n_stripes", 1, "--out", out,
            "--workers", 0, "--no_progress"]
    assert sdn(*args) == 0
    printed = capsys.readouterr().out
    assert printed.count("actor masks are human detection BOXES") == 2  # at the start and in the summary
    for split in scuba.SPLITS:
        assert "human detection BOXES" in read_split(str(out / split)).description
    database = json.loads((out / "scuba" / "split.json").read_text())["database"]
    assert len(database) == len(masks)  # stripes only: no --backgrounds
    for key, value in database.items():
        label, source_key = value["annotations"]["label"], key.split("__")[0]
        source = FrameFolder(root / "jpg" / label / source_key).read([2])[0].permute(1, 2, 0).numpy()
        expected = np.where(masks[(label, source_key)][1][..., None], source,
                            stripes_expected(value["background"], HEIGHT, WIDTH))
        assert (out / "scuba" / label / key / "image_00002.jpg").read_bytes() == jpeg(expected)


def test_video_files_are_read_as_well(tmp_path):
    database, masks = {}, {}
    for k, label in enumerate(CLASSES):
        key = f"v_{label}_g01_c01"
        write_video(tmp_path / "videos" / label / f"{key}.mp4", 5, 48, 32, seed=k)
        database[key] = {"subset": "validation", "annotations": {"label": label}}
        masks[(label, key)] = actor_mask(5, 32, 48, shift=k)
    (tmp_path / "ucf.json").write_text(json.dumps({"labels": CLASSES, "database": database}))
    (tmp_path / "masks").mkdir()
    save_human_masks(tmp_path / "masks" / "masks_val.npz", masks, "segmentation")
    assert sdn("prepare", "scuba", "--dataset", "ucf101", "--video_path", tmp_path / "videos", "--annotation_path",
               tmp_path / "ucf.json", "--human_masks_path", tmp_path / "masks", "--n_stripes", 1, "--max_frames", 3,
               "--out", tmp_path / "out", "--workers", 0, "--no_progress") == 0
    split = read_split(str(tmp_path / "out" / "scuba"))
    assert "person segmentation masks" in split.description and len(split.entries) == 2
    for entry in split.entries:
        source_key = entry.video_id.split("__")[0]
        assert entry.n_frames == 3
        database = json.loads((tmp_path / "out" / "scuba" / "split.json").read_text())["database"]
        assert database[entry.video_id]["source"] == f"{entry.class_dir}/{source_key}.mp4"
        source = VideoFile(tmp_path / "videos" / entry.class_dir / f"{source_key}.mp4").read([2, 3, 4])
        background = stripes_expected(database[entry.video_id]["background"], 32, 48)
        mask = masks[(entry.class_dir, source_key)][1:4]  # the middle 3 of 5 frames
        for t in range(3):
            expected = np.where(mask[t][..., None], source[t].permute(1, 2, 0).numpy(), background)
            assert (Path(entry.path) / f"image_{t + 1:05d}.jpg").read_bytes() == jpeg(expected)


def test_videos_without_an_actor_are_skipped_and_bad_ones_listed(dataset, tmp_path, capsys):
    root, masks = dataset
    (label, empty), (_, other) = list(masks)[:2]
    changed = dict(masks)
    changed[(label, empty)] = np.zeros_like(masks[(label, empty)])  # nobody in it
    changed[(label, other)] = masks[(label, other)][:, :-1]  # a mask one row short of the frames
    del changed[list(masks)[2]]  # and a video without a mask
    (tmp_path / "masks").mkdir()
    save_human_masks(tmp_path / "masks" / "masks_val.npz", changed, "exact")
    out = tmp_path / "out"
    assert sdn("prepare", "scuba", "--dataset", "ucf101", "--video_path", root / "jpg", "--annotation_path",
               root / "ucf101_01.json", "--human_masks_path", tmp_path / "masks", "--n_stripes", 1, "--out", out,
               "--workers", 0, "--no_progress") == 1
    captured = capsys.readouterr()
    assert "1 videos now" in captured.out
    assert "1 skipped (an actor of at least 0.01 of the frame in fewer than 0.5 of their frames)" in captured.out
    assert "2 failed" in captured.out
    assert f"its frames are {WIDTH}x{HEIGHT} but its actor mask is {WIDTH}x{HEIGHT - 1}" in captured.err
    assert "no human mask for class" in captured.err
    assert len(read_split(str(out / "scuba")).entries) == 1
    assert not list(out.rglob("*.partial"))


def test_bad_requests_are_one_line_errors(dataset, tmp_path, capsys):
    root, _ = dataset
    base = ["prepare", "scuba", "--dataset", "ucf101", "--video_path", root / "jpg", "--annotation_path",
            root / "ucf101_01.json", "--human_masks_path", root / "masks", "--out", tmp_path / "out", "--no_progress"]
    assert sdn(*base, "--n_images", 2) == 2
    assert "--n_images 2 needs --backgrounds DIR" in capsys.readouterr().err
    assert sdn(*base, "--backgrounds", root / "places", "--n_images", 9) == 2
    assert "places: 4 images, fewer than --n_images 9" in capsys.readouterr().err
    assert sdn(*base, "--n_stripes", 0) == 2
    assert "no backgrounds" in capsys.readouterr().err
    assert sdn(*base[:-5], "--human_masks_path", tmp_path, "--out", tmp_path / "out") == 2
    assert "no human mask file for 'validation'" in capsys.readouterr().err
    (tmp_path / "out" / "scuba").mkdir(parents=True)
    assert sdn(*base) == 2
    assert "not made by sdn prepare scuba" in capsys.readouterr().err
    assert not os.listdir(tmp_path / "out" / "scuba")


def test_the_bench_part_times_the_step_beside_decoding():
    from sdn.bench import scuba as bench

    threads = torch.get_num_threads()
    result = bench.run(bench.ScubaSettings(videos=2, frames=4, width=48, height=32, n_images=1, n_stripes=1,
                                           rounds=1))
    paths = result["paths"]
    assert list(paths) == [bench.DECODE_PATH, bench.COMPOSITE_PATH, bench.SCUBA_PATH]
    assert paths[bench.DECODE_PATH]["frames"] == 8 and paths[bench.SCUBA_PATH]["frames"] == 16  # 2 backgrounds
    assert paths[bench.DECODE_PATH]["of_decode_only"] == 1.0
    assert all(row["frames_per_s"] > 0 and len(row["rounds"]["wall_s"]) == 1 for row in paths.values())
    [goal] = result["targets"]
    assert goal["threshold"] == 0.5 and goal["value"] == paths[bench.SCUBA_PATH]["of_decode_only"]
    text = bench.render(result)
    assert all(name in text for name in paths) and bench.panel(result).labels == list(paths)
    assert torch.get_num_threads() == threads  # one thread while timing, restored after


def test_sdn_bench_has_a_scuba_part(tmp_path, capsys):
    assert sdn("bench", "scuba", "--videos", 1, "--frames", 3, "--width", 48, "--height", 32, "--sample_duration", 2,
               "--rounds", 1, "--out", tmp_path) == 0
    results = json.loads((tmp_path / "bench.json").read_text())
    assert results["parts"] == ["scuba"] and set(results["scuba"]["paths"]) == {"decode only", "composite only",
                                                                                 "sdn prepare scuba"}
    assert results["targets"][0]["name"].startswith("scuba: written frames/s per core")
    assert "sdn prepare scuba, 1 thread" in capsys.readouterr().out
