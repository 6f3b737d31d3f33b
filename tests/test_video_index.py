"""The frame index: counts are cached by path, size and mtime; changed, new and unreadable videos are handled;
datasets built from video files count them together and skip, by name, those that cannot be read."""

import json
import os
from pathlib import Path

import pytest

import sdn.data.video_index as video_index
import video_samples
from sdn.data.annotations import read_kinetics, read_ucf_hmdb
from sdn.data.video_index import frame_counts, index_path_for, load_index
from sdn.errors import SdnError


def small_video(path: Path, count: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(video_samples.write_video(path, count=count, gop=6, width=32, height=32))


@pytest.fixture
def videos(tmp_path) -> list[str]:
    return [small_video(tmp_path / "videos" / f"v{i}.mp4", 10 + i) for i in range(3)]


def forbid_counting(monkeypatch):
    def refuse(path):
        raise AssertionError(f"{path} was counted although the index has it")
    monkeypatch.setattr(video_index, "count_frames", refuse)


def test_counts_are_cached_and_a_second_run_counts_nothing(tmp_path, videos, monkeypatch):
    index = str(tmp_path / "annotation.json.frames.json")
    first = frame_counts(videos, index)
    assert first.counts == {path: 10 + i for i, path in enumerate(videos)}
    assert (first.counted, first.cached, first.failures) == (3, 0, {})
    data = json.loads(Path(index).read_text())
    assert data["format"] == "sdn frame index" and data["version"] == 1
    entry = data["videos"][os.path.abspath(videos[0])]
    assert entry == [os.path.getsize(videos[0]), os.stat(videos[0]).st_mtime_ns, 10]

    forbid_counting(monkeypatch)
    before = Path(index).stat().st_mtime_ns
    second = frame_counts(videos, index)
    assert second.counts == first.counts and (second.counted, second.cached) == (0, 3)
    assert Path(index).stat().st_mtime_ns == before  # nothing new: not rewritten


def test_changed_and_new_videos_are_counted_again(tmp_path, videos):
    index = str(tmp_path / "index.json")
    frame_counts(videos, index)
    small_video(Path(videos[1]), 20)  # rewritten in place: another size and mtime
    added = small_video(tmp_path / "videos" / "new.mp4", 7)
    result = frame_counts([*videos, added], index)
    assert result.counts[videos[1]] == 20 and result.counts[added] == 7
    assert (result.counted, result.cached) == (2, 2)
    assert load_index(index)[os.path.abspath(videos[1])][2] == 20


def test_unreadable_videos_are_reported_and_not_cached(tmp_path, videos):
    broken = tmp_path / "videos" / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    missing = str(tmp_path / "videos" / "gone.mp4")
    index = str(tmp_path / "index.json")
    result = frame_counts([*videos, str(broken), missing], index)
    assert set(result.failures) == {str(broken), missing}
    assert "cannot" in result.failures[str(broken)] and "\n" not in result.failures[str(broken)]
    assert len(result.counts) == 3
    assert os.path.abspath(broken) not in load_index(index)  # a fixed video is counted next time


@pytest.mark.parametrize("content", ["{not json", '{"format": "sdn frame index", "version": 99, "videos": {}}',
                                     '["a list"]'])
def test_a_damaged_index_is_reported_and_rebuilt(tmp_path, videos, capsys, content):
    index = tmp_path / "index.json"
    index.write_text(content)
    result = frame_counts(videos, str(index))
    assert result.counted == 3 and str(index) in capsys.readouterr().out
    assert len(load_index(str(index))) == 3


def test_malformed_entries_are_counted_again(tmp_path, videos, capsys):
    index = tmp_path / "index.json"
    frame_counts(videos, str(index))
    data = json.loads(index.read_text())
    data["videos"][os.path.abspath(videos[0])] = [1, 2, -3]
    data["videos"][os.path.abspath(videos[1])] = "eleven"
    index.write_text(json.dumps(data))
    result = frame_counts(videos, str(index))
    assert (result.counted, result.cached) == (2, 1) and "2 malformed entries" in capsys.readouterr().out


def test_an_index_that_cannot_be_written_only_loses_the_cache(tmp_path, videos, capsys):
    result = frame_counts(videos, str(tmp_path / "no such folder" / "index.json"))
    assert len(result.counts) == 3 and "not cached" in capsys.readouterr().out


def test_parallel_counting_with_progress_gives_the_same_counts(tmp_path, videos, monkeypatch, capsys):
    monkeypatch.setattr(video_index, "PARALLEL_FROM", 2)
    monkeypatch.setattr(video_index, "PROGRESS_FROM", 1)
    result = frame_counts(videos, None, workers=2)
    assert result.counts == {path: 10 + i for i, path in enumerate(videos)}
    assert "counting video frames" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Datasets of video files


def kinetics_layout(tmp_path: Path, broken: int = 0) -> tuple[str, str]:
    """A Kinetics-style annotation of 3 video files (``broken`` of them unreadable) under ``root/<label>``."""
    root = tmp_path / "videos"
    database = {}
    for i in range(3):
        key = f"vid{i:08d}_000000_000010"
        path = root / "jump" / f"{key}.mp4"
        if i < broken:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"\x00junk" * 100)
        else:
            small_video(path, 9 + i)
        database[key] = {"subset": "training", "annotations": {"label": "jump"}}
    annotation = tmp_path / "kinetics.json"
    annotation.write_text(json.dumps({"labels": ["jump"], "database": database}))
    return str(annotation), str(root)


def test_datasets_count_video_files_once_and_read_the_index_next_time(tmp_path, monkeypatch):
    annotation, root = kinetics_layout(tmp_path)
    _, entries = read_kinetics(annotation, root, "training")
    assert sorted(entry.n_frames for entry in entries) == [9, 10, 11]
    assert Path(index_path_for(annotation)).is_file()

    forbid_counting(monkeypatch)
    _, again = read_ucf_hmdb(annotation, root, "training")  # the same annotation, another reader
    assert sorted(entry.n_frames for entry in again) == [9, 10, 11]


def test_unreadable_videos_are_named_and_skipped(tmp_path, capsys):
    annotation, root = kinetics_layout(tmp_path, broken=1)
    _, entries = read_kinetics(annotation, root, "training")
    assert sorted(entry.n_frames for entry in entries) == [10, 11]
    out = capsys.readouterr().out
    assert "1 of 3 training videos" in out and "cannot be read" in out and "vid00000000_000000_000010.mp4" in out


def test_a_dataset_of_only_unreadable_videos_is_an_error(tmp_path):
    annotation, root = kinetics_layout(tmp_path, broken=3)
    with pytest.raises(SdnError, match="none of the training videos found can be read") as info:
        read_kinetics(annotation, root, "training")
    assert "\n" not in str(info.value) and "vid0000000" in str(info.value)
