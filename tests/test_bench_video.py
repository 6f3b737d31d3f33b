"""`sdn bench loader --video` at toy size: the generated videos are what the comparison claims, and the
tables, JSON and targets are complete. No timing is asserted (the machine may be busy)."""

from __future__ import annotations

import json
import math

import av

import sdn.bench.loader as loader
from sdn.bench.loader import VIDEO_FOLDER, VIDEO_SEEKING, VIDEO_SEQUENTIAL, random_windows, write_video_files
from sdn.cli.main import main as sdn_main
from sdn.data.video import VideoFile


def test_bench_videos_are_h264_with_b_frames_and_the_keyframe_interval_asked(tmp_path):
    paths = {0.5: tmp_path / "half.mp4", 1.5: tmp_path / "long.mp4"}
    write_video_files(paths, 64, 48, seconds=3, fps=10, seed=0)
    for interval, path in paths.items():
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264" and (stream.width, stream.height) == (64, 48)
            stamps = [packet.pts for packet in container.demux(stream) if packet.size]
        assert stamps != sorted(stamps)  # B-frames: shown in another order than decoded
        table = VideoFile(path).packet_table()
        assert table.frames == 30
        assert [key.position for key in table.keyframes] == list(range(0, 30, round(interval * 10)))


def test_random_windows_are_stratified_and_the_same_for_every_video():
    windows = random_windows(300, 16, 8)
    starts = [window[0] for window in windows]
    assert all(len(window) == 16 and window == tuple(range(window[0], window[0] + 16)) for window in windows)
    assert all(284 * k // 8 < start <= 284 * (k + 1) // 8 for k, start in enumerate(starts))
    assert random_windows(300, 16, 8) == windows and random_windows(300, 16, 8, seed=1) != windows


def test_video_comparison_through_the_cli(tmp_path, capsys, monkeypatch):
    full = loader.VideoSettings
    monkeypatch.setattr(loader, "VideoSettings", lambda **kwargs: full(
        sizes=((64, 48),), keyframe_seconds=(0.5, 2.0), seconds=3, fps=10, **kwargs))
    out = tmp_path / "results"
    assert sdn_main(["bench", "loader", "--video", "--video_clips", "2", "--clips", "2", "--videos", "2",
                     "--frames", "8", "--width", "64", "--height", "48", "--sample_duration", "4", "--rounds", "1",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "bench.json").read_text())["loader"]["video"]
    assert result["identical_clips"] == result["clips_checked"] == 4
    assert result["counts_equal"] == result["videos_counted"] == 2
    for row in result["videos"]:
        assert set(row["clips_per_s"]) == {VIDEO_SEQUENTIAL, VIDEO_SEEKING, VIDEO_FOLDER}
        assert all(math.isfinite(rate) and rate > 0 for rate in row["clips_per_s"].values())
        assert math.isclose(row["seeking_vs_sequential"],
                            row["clips_per_s"][VIDEO_SEEKING] / row["clips_per_s"][VIDEO_SEQUENTIAL])
    (construction,) = result["construction"]
    assert all(ms > 0 for ms in construction["ms_per_video"].values())
    names = [entry["name"] for entry in result["targets"]]
    assert names[0].startswith("video: frames identical") and result["targets"][0]["met"]
    assert any("first run vs decoding" in name for name in names) and any("second run" in name for name in names)
    assert not any("720p" in name for name in names)  # that target needs the 720p, 2 s video
    assert "(a') video files" in printed and "seeking vs sequential" in printed and "sdn 2nd run ms" in printed
