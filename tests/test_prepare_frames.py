"""``sdn prepare frames`` on videos made here with PyAV: counts, layouts and their detection, resuming, failures."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from sdn.cli.main import main as sdn_main
from sdn.data.video import FrameFolder, VideoFile
from sdn.errors import SdnError
from sdn.prepare.frames import detect_layout, extract_all, is_complete, output_size


def write_video(path: Path, n_frames: int, width: int = 64, height: int = 48, codec: str = "libx264",
                seed: int = 0) -> None:
    """A video of ``n_frames`` frames of random 8x8-pixel colour blocks (each frame differs, JPEG keeps them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(n_frames):
            blocks = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
            image = np.ascontiguousarray(blocks.repeat(8, axis=0).repeat(8, axis=1))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture()
def ucf_videos(tmp_path: Path) -> Path:
    src = tmp_path / "videos"
    write_video(src / "Punch" / "v_Punch_g01_c01.avi", 13, codec="mpeg4")
    write_video(src / "Punch" / "v_Punch_g01_c02.mp4", 9, seed=1)
    write_video(src / "Surfing" / "v_Surfing_g02_c01.mp4", 11, seed=2)
    (src / "Surfing" / "notes.txt").write_text("not a video")
    return src


def image_names(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith("image_"))


def test_frames_and_n_frames_match_the_source_frame_count(ucf_videos, tmp_path):
    dst = tmp_path / "jpg"
    summary = extract_all(str(ucf_videos), str(dst), "ucf101", workers=2, progress=False)
    assert (summary.done, summary.skipped, summary.failures) == (3, 0, [])
    for source in sorted(ucf_videos.glob("*/*.*")):
        if source.suffix == ".txt":
            continue
        folder = dst / source.parent.name / source.stem
        expected = VideoFile(source).num_frames()
        assert (folder / "n_frames").read_text() == str(expected)
        assert image_names(folder) == [f"image_{i:05d}.jpg" for i in range(1, expected + 1)]
        assert Image.open(folder / "image_00001.jpg").size == (320, 240)  # height 240 as the original scripts
        assert FrameFolder(folder).read([expected]).shape == (1, 3, 240, 320)
    assert summary.frames == 13 + 9 + 11
    assert not (dst / "Surfing" / "notes").exists()


def test_frames_keep_the_content_of_the_video(tmp_path):
    src = tmp_path / "videos"
    write_video(src / "a.mp4", 4)
    extract_all(str(src), str(tmp_path / "jpg"), "diving48", size=0, quality=95, progress=False)
    stored = FrameFolder(tmp_path / "jpg" / "a").read([1, 2, 3, 4]).float()
    decoded = VideoFile(src / "a.mp4").read([1, 2, 3, 4]).float()
    assert stored.shape == decoded.shape == (4, 3, 48, 64)
    assert (stored - decoded).abs().mean() < 12  # JPEG of the same frames, in the same order
    assert (stored[0] - decoded[1]).abs().mean() > 50  # ... and frames are not shifted


def test_output_size_scales_the_chosen_side():
    assert output_size(340, 256, 240, "height") == (319, 240)
    assert output_size(256, 340, 240, "short") == (240, 319)
    assert output_size(640, 360, 240, "short") == (427, 240)
    assert output_size(64, 48, 0, "height") == (64, 48)


def test_rerun_skips_complete_folders_and_redoes_partial_ones(ucf_videos, tmp_path):
    dst = tmp_path / "jpg"
    extract_all(str(ucf_videos), str(dst), "ucf101", size=48, progress=False)
    done = dst / "Punch" / "v_Punch_g01_c01"
    partial = dst / "Surfing" / "v_Surfing_g02_c01"
    before = {path: path.stat().st_mtime_ns for path in done.iterdir()}
    # an interrupted run: some images, no n_frames (and a stale staging folder)
    (partial / "n_frames").unlink()
    for name in image_names(partial)[5:]:
        (partial / name).unlink()
    (dst / "Surfing" / ".v_Surfing_g02_c01.partial").mkdir()
    # a folder whose n_frames disagrees with its images is incomplete too
    mismatched = dst / "Punch" / "v_Punch_g01_c02"
    (mismatched / "image_00009.jpg").unlink()
    assert not is_complete(str(partial), False) and not is_complete(str(mismatched), False)

    summary = extract_all(str(ucf_videos), str(dst), "ucf101", size=48, progress=False)
    assert (summary.done, summary.skipped, summary.failures) == (2, 1, [])
    assert {path: path.stat().st_mtime_ns for path in done.iterdir()} == before  # untouched
    assert (partial / "n_frames").read_text() == "11" and len(image_names(partial)) == 11
    assert len(image_names(mismatched)) == 9
    assert sorted(os.listdir(dst / "Surfing")) == ["v_Surfing_g02_c01"]  # no staging folder left

    summary = extract_all(str(ucf_videos), str(dst), "ucf101", size=48, progress=False)
    assert (summary.done, summary.skipped) == (0, 3)


def test_a_corrupt_video_is_listed_and_the_others_are_converted(ucf_videos, tmp_path, capsys):
    (ucf_videos / "Punch" / "v_Punch_g09_c09.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    (ucf_videos / "Surfing" / "v_Surfing_g09_c09.avi").write_bytes(b"")
    dst = tmp_path / "jpg"
    code = sdn_main(["prepare", "frames", str(ucf_videos), str(dst), "--layout", "ucf101", "--size", "48",
                     "--workers", "2", "--no_progress"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "3 videos converted" in out and "2 failed" in out
    assert "v_Punch_g09_c09.mp4: cannot decode video" in err and "v_Surfing_g09_c09.avi" in err
    assert not (dst / "Punch" / "v_Punch_g09_c09").exists()
    assert all(is_complete(str(dst / c / v), False) for c, v in [("Punch", "v_Punch_g01_c01"),
                                                                   ("Punch", "v_Punch_g01_c02"),
                                                                   ("Surfing", "v_Surfing_g02_c01")])


def test_activitynet_folders_get_v_prefix_and_fps(tmp_path):
    src = tmp_path / "videos"
    write_video(src / "abcdefghijk.mp4", 10)
    write_video(src / "v_lmnopqrstuv.mp4", 5, seed=1)
    extract_all(str(src), str(tmp_path / "jpg"), "activitynet", size=48, progress=False)
    for name, frames in (("v_abcdefghijk", 10), ("v_lmnopqrstuv", 5)):
        folder = tmp_path / "jpg" / name
        assert (folder / "n_frames").read_text() == str(frames)
        assert float((folder / "fps").read_text()) == pytest.approx(25.0, abs=0.01)


def test_two_videos_with_one_folder_name_are_reported(tmp_path, capsys):
    src = tmp_path / "videos"
    write_video(src / "clip.mp4", 3)
    write_video(src / "clip.mkv", 3, codec="libx264")
    summary = extract_all(str(src), str(tmp_path / "jpg"), "diving48", size=48, progress=False)
    assert summary.done == 1 and len(summary.failures) == 1
    assert "same frame folder" in summary.failures[0].reason


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert sdn_main(["prepare", "frames", str(tmp_path / "none"), str(tmp_path / "jpg"), "--layout", "kinetics"]) == 2
    assert "source video directory does not exist" in capsys.readouterr().err
    (tmp_path / "empty" / "class").mkdir(parents=True)
    assert sdn_main(["prepare", "frames", str(tmp_path / "empty"), str(tmp_path / "jpg"), "--layout", "kinetics"]) == 2
    assert "no video files" in capsys.readouterr().err
    assert sdn_main(["prepare", "nonsense"]) == 2


# ----------------------------------------------------------------------------------------------
# The layout when --layout is not given


def test_class_folders_are_detected_and_said(ucf_videos, tmp_path, capsys):
    (ucf_videos / "empty_class").mkdir()  # a class folder without videos does not make it mixed
    assert detect_layout(str(ucf_videos))[0] == "kinetics"
    dst = tmp_path / "jpg"
    assert sdn_main(["prepare", "frames", str(ucf_videos), str(dst), "--size", "48", "--no_progress"]) == 0
    out = capsys.readouterr().out
    assert "layout: class folders" in out and "detected: 2 class folders with videos" in out
    assert is_complete(str(dst / "Punch" / "v_Punch_g01_c01"), False)
    assert is_complete(str(dst / "Surfing" / "v_Surfing_g02_c01"), False)


def test_a_flat_folder_is_detected_as_diving48(tmp_path, capsys):
    src = tmp_path / "videos"
    write_video(src / "-mmq0PT-u8k_00000.mp4", 3)
    write_video(src / "-mmq0PT-u8k_00001.mp4", 4, seed=1)
    (src / "no_videos").mkdir()  # a stray folder without videos is ignored
    dst = tmp_path / "jpg"
    assert sdn_main(["prepare", "frames", str(src), str(dst), "--size", "48", "--no_progress"]) == 0
    out = capsys.readouterr().out
    assert "layout: flat" in out and "diving48" in out and "detected: 2 videos directly in SRC" in out
    assert (dst / "-mmq0PT-u8k_00001" / "n_frames").read_text() == "4"
    assert not (dst / "-mmq0PT-u8k_00001" / "fps").exists()


@pytest.mark.parametrize("contents", ["empty", "class_folder_without_videos", "mixed"])
def test_a_folder_of_no_layout_is_a_one_line_error(tmp_path, capsys, contents):
    src = tmp_path / "videos"
    src.mkdir()
    if contents == "class_folder_without_videos":
        (src / "Punch").mkdir()
        (src / "Punch" / "notes.txt").write_text("not a video")
    if contents == "mixed":
        write_video(src / "a.mp4", 2)
        write_video(src / "Punch" / "b.mp4", 2)
    assert sdn_main(["prepare", "frames", str(src), str(tmp_path / "jpg"), "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{src}: cannot tell the layout" in err
    assert ("it holds videos (1) and subfolders with videos (1)" in err) == (contents == "mixed")
    assert not (tmp_path / "jpg").exists()
    with pytest.raises(SdnError, match="does not exist"):
        detect_layout(str(tmp_path / "none"))


def test_an_explicit_layout_wins_over_detection(tmp_path, capsys):
    src = tmp_path / "videos"
    write_video(src / "abcdefghijk.mp4", 3)
    write_video(src / "Punch" / "b.mp4", 2, seed=1)  # mixed: detection would refuse
    dst = tmp_path / "jpg"
    assert sdn_main(["prepare", "frames", str(src), str(dst), "--layout", "activitynet", "--size", "48",
                     "--no_progress"]) == 0
    assert "layout:" not in capsys.readouterr().out  # nothing detected, nothing said
    assert sorted(os.listdir(dst)) == ["v_abcdefghijk"] and (dst / "v_abcdefghijk" / "fps").exists()
    assert sdn_main(["prepare", "frames", str(src), str(tmp_path / "jpg2"), "--layout", "hmdb51", "--size", "48",
                     "--no_progress"]) == 0
    assert os.listdir(tmp_path / "jpg2") == ["Punch"]
