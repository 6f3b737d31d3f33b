"""Annotation readers and clip windows, for every dataset format of the original.

Every test writes its own tiny dataset under ``tmp_path``: annotation JSON files, frame folders
(an ``n_frames`` file and, where the reader looks at them, a few small JPEGs) and video files.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from sdn.data.annotations import (ClipSample, VideoEntry, count_clips, diving48_class_names, kinetics_video_id,
                                  make_clips, read_activitynet, read_diving48, read_kinetics, read_ucf_hmdb,
                                  window_starts, window_step)
from sdn.errors import SdnError

T = 16  # the default sample_duration, used by the verified examples of 11.3


def _jpeg_bytes(width: int = 8, height: int = 6) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


JPEG = _jpeg_bytes()


def write_folder(directory: Path, n_frames: str | None, images: int = 0) -> Path:
    """A frame folder: ``images`` (tiny, identical) JPEGs and an ``n_frames`` file holding ``n_frames``."""
    directory.mkdir(parents=True)
    for i in range(1, images + 1):
        (directory / f"image_{i:05d}.jpg").write_bytes(JPEG)
    if n_frames is not None:
        (directory / "n_frames").write_text(n_frames)
    return directory


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def entry(subset: str, label: str | None = None) -> dict:
    return {"subset": subset, "annotations": {} if label is None else {"label": label, "segment": [0, 10]}}


def video(n_frames: int, path: str = "v") -> VideoEntry:
    return VideoEntry(path, "vid", 0, "c", n_frames)


# ---------------------------------------------------------------------------------------------
# Kinetics


KINETICS = {
    "labels": ["abseiling", "air drumming"],
    "database": {
        "abcDEF12345_000010_000020": entry("training", "abseiling"),
        "a_b-c_d_e_f_000003_000013": entry("training", "air drumming"),  # an id with underscores
        "plainkey": entry("training", "air drumming"),  # no time suffix
        "xyzXYZ98765_000003_000013": entry("validation", "air drumming"),
        "qweQWE00000_000000_000010": entry("testing"),
        "rtyRTY11111_000000_000010": {"subset": "testing"},  # no annotations at all
    },
}


@pytest.fixture
def kinetics(tmp_path) -> tuple[Path, Path]:
    annotation = write_json(tmp_path / "kinetics.json", KINETICS)
    root = tmp_path / "jpg"
    write_folder(root / "abseiling" / "abcDEF12345_000010_000020", "30\n")
    write_folder(root / "air drumming" / "a_b-c_d_e_f_000003_000013", "12.9")  # float, truncated
    write_folder(root / "air drumming" / "plainkey", "7")
    write_folder(root / "air drumming" / "xyzXYZ98765_000003_000013", "250")
    write_folder(root / "test" / "qweQWE00000_000000_000010", "40")
    write_folder(root / "test" / "rtyRTY11111_000000_000010", "41")
    return annotation, root


def test_read_kinetics_training(kinetics):
    annotation, root = kinetics
    names, entries = read_kinetics(str(annotation), str(root), "training")
    assert names == ["abseiling", "air drumming"]
    assert entries == [
        VideoEntry(str(root / "abseiling" / "abcDEF12345_000010_000020"), "abcDEF12345", 0, "abseiling", 30),
        VideoEntry(str(root / "air drumming" / "a_b-c_d_e_f_000003_000013"), "a_b-c_d_e_f", 1, "air drumming", 12),
        VideoEntry(str(root / "air drumming" / "plainkey"), "plainkey", 1, "air drumming", 7),
    ]


def test_read_kinetics_validation(kinetics):
    annotation, root = kinetics
    _, entries = read_kinetics(str(annotation), str(root), "validation")
    assert entries == [VideoEntry(str(root / "air drumming" / "xyzXYZ98765_000003_000013"), "xyzXYZ98765", 1,
                                  "air drumming", 250)]


def test_read_kinetics_testing_lives_in_test_dir_with_label_minus_one(kinetics):
    annotation, root = kinetics
    names, entries = read_kinetics(str(annotation), str(root), "testing")
    assert names == ["abseiling", "air drumming"]
    assert [(e.path, e.video_id, e.label, e.class_dir, e.n_frames) for e in entries] == [
        (str(root / "test" / "qweQWE00000_000000_000010"), "qweQWE00000", -1, "test", 40),
        (str(root / "test" / "rtyRTY11111_000000_000010"), "rtyRTY11111", -1, "test", 41),
    ]


@pytest.mark.parametrize("key, expected", [
    ("abcDEF12345_000010_000020", "abcDEF12345"),
    ("-_a_b_c_d_e_000000_000010", "-_a_b_c_d_e"),  # ids may contain '_' and '-'
    ("plainkey", "plainkey"),  # the original cut 14 characters and produced a wrong id here
    ("shortid_1_2", "shortid_1_2"),  # not a 6-digit time suffix
    ("x_000001_000002_000003_000004", "x_000001_000002"),  # only the last suffix goes
    ("abcDEF12345_000010_00002", "abcDEF12345_000010_00002"),
])
def test_kinetics_video_id(key, expected):
    assert kinetics_video_id(key) == expected


def test_frame_folder_wins_over_a_video_file_and_files_are_counted_by_decoding(tmp_path):
    annotation = write_json(tmp_path / "k.json", {"labels": ["a"], "database": {
        "folder00000_000000_000010": entry("training", "a"), "file0000000_000000_000010": entry("training", "a")}})
    root = tmp_path / "videos"
    write_folder(root / "a" / "folder00000_000000_000010", "9")
    (root / "a" / "folder00000_000000_000010.mp4").write_bytes(b"not looked at: the folder wins")
    path = root / "a" / "file0000000_000000_000010.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "bgr0"
        for i in range(5):
            frame = np.full((16, 16, 3), 40 * i, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    _, entries = read_kinetics(str(annotation), str(root), "training")
    assert [(Path(e.path).name, e.video_id, e.n_frames) for e in entries] == [
        ("folder00000_000000_000010", "folder00000", 9), ("file0000000_000000_000010.mkv", "file0000000", 5)]


# ---------------------------------------------------------------------------------------------
# Missing videos and frame counts


def test_missing_videos_are_skipped_and_reported(kinetics, capsys):
    annotation, root = kinetics
    write_json(annotation, {"labels": KINETICS["labels"], "database": {
        **KINETICS["database"], "gone0000000_000000_000010": entry("training", "abseiling"),
        "gone1111111_000000_000010": entry("training", "abseiling")}})
    _, entries = read_kinetics(str(annotation), str(root), "training")
    assert [e.video_id for e in entries] == ["abcDEF12345", "a_b-c_d_e_f", "plainkey"]
    out = capsys.readouterr().out
    assert f"2 of 5 training videos listed in {annotation} were not found" in out
    assert str(root / "abseiling" / "gone0000000_000000_000010") in out


def test_videos_with_no_frames_are_skipped(kinetics):
    annotation, root = kinetics
    (root / "air drumming" / "plainkey" / "n_frames").write_text("0")
    (root / "abseiling" / "abcDEF12345_000010_000020" / "n_frames").write_text("-3")
    _, entries = read_kinetics(str(annotation), str(root), "training")
    assert [e.video_id for e in entries] == ["a_b-c_d_e_f"]


def test_no_video_found_names_the_annotation_file(kinetics, tmp_path):
    annotation, _ = kinetics
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    with pytest.raises(SdnError) as info:
        read_kinetics(str(annotation), str(empty), "training")
    message = str(info.value)
    assert message.startswith(f"{annotation}:") and "none of the 3 training videos" in message
    assert str(empty) in message and "\n" not in message


def test_all_videos_without_frames_is_not_reported_as_missing(kinetics):
    annotation, root = kinetics
    (root / "air drumming" / "xyzXYZ98765_000003_000013" / "n_frames").write_text("0")
    with pytest.raises(SdnError) as info:
        read_kinetics(str(annotation), str(root), "validation")
    assert str(info.value).startswith(f"{annotation}:") and "n_frames" in str(info.value)
    assert "was found" not in str(info.value)


def test_empty_subset_names_the_annotation_file(tmp_path):
    annotation = write_json(tmp_path / "k.json", {"labels": ["a"], "database": {"k": entry("training", "a")}})
    with pytest.raises(SdnError, match="no video in subset 'validation'") as info:
        read_kinetics(str(annotation), str(tmp_path), "validation")
    assert str(info.value).startswith(str(annotation))


def test_missing_n_frames_file_is_an_error_naming_it(kinetics):
    annotation, root = kinetics
    folder = root / "air drumming" / "plainkey"
    (folder / "n_frames").unlink()
    with pytest.raises(SdnError, match="missing n_frames") as info:
        read_kinetics(str(annotation), str(root), "training")
    assert str(folder / "n_frames") in str(info.value)


# ---------------------------------------------------------------------------------------------
# Malformed Kinetics-style annotations


@pytest.mark.parametrize("content, fragments", [
    ("{not json", ["not valid JSON"]),
    ("[1, 2]", ["'labels' and 'database'"]),
    (json.dumps({"database": {}}), ["'labels' must be a list"]),
    (json.dumps({"labels": "a", "database": {}}), ["'labels' must be a list"]),
    (json.dumps({"labels": ["a", 3], "database": {}}), ["'labels' must be a list"]),
    (json.dumps({"labels": ["a", ""], "database": {}}), ["'labels' must be a list"]),
    (json.dumps({"labels": ["a", "a"], "database": {}}), ["lists a class twice"]),
    (json.dumps({"labels": ["a"]}), ["'database' must be an object"]),
    (json.dumps({"labels": ["a"], "database": [1]}), ["'database' must be an object"]),
    (json.dumps({"labels": ["a"], "database": {"k1": "training"}}), ["entry 'k1'", "subset"]),
    (json.dumps({"labels": ["a"], "database": {"k2": {"annotations": {"label": "a"}}}}), ["entry 'k2'", "subset"]),
    (json.dumps({"labels": ["a"], "database": {"k3": {"subset": "train"}}}), ["entry 'k3'", "subset"]),
    (json.dumps({"labels": ["a"], "database": {"k4": {"subset": "training"}}}), ["entry 'k4'", "no 'label'"]),
    (json.dumps({"labels": ["a"], "database": {"k5": {"subset": "training", "annotations": ["a"]}}}),
     ["entry 'k5'", "no 'label'"]),
    (json.dumps({"labels": ["a"], "database": {"k6": {"subset": "training", "annotations": {"label": 0}}}}),
     ["entry 'k6'", "no 'label'"]),
    (json.dumps({"labels": ["a"], "database": {"k7": entry("training", "b")}}), ["entry 'k7'", "'b' is not in"]),
    (json.dumps({"labels": ["a/b"], "database": {"k8": entry("training", "a/b")}}),
     ["entry 'k8'", "directory name"]),
])
@pytest.mark.parametrize("reader", [read_kinetics, read_ucf_hmdb])
def test_malformed_annotation_names_file_and_entry(tmp_path, reader, content, fragments):
    annotation = tmp_path / "bad.json"
    annotation.write_text(content)
    with pytest.raises(SdnError) as info:
        reader(str(annotation), str(tmp_path), "training")
    message = str(info.value)
    assert message.startswith(f"{annotation}:") and "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_missing_or_binary_annotation_file(tmp_path):
    with pytest.raises(SdnError, match="annotation file not found") as info:
        read_kinetics(str(tmp_path / "nothing.json"), str(tmp_path), "training")
    assert str(tmp_path / "nothing.json") in str(info.value)
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SdnError, match="binary.json: not valid JSON"):
        read_kinetics(str(tmp_path / "binary.json"), str(tmp_path), "training")
    with pytest.raises(SdnError, match="is a directory"):
        read_kinetics(str(tmp_path), str(tmp_path), "training")


# ---------------------------------------------------------------------------------------------
# UCF-101 / HMDB-51


def test_read_ucf_hmdb(tmp_path):
    annotation = write_json(tmp_path / "ucf101_01.json", {
        "labels": ["ApplyEyeMakeup", "Archery"],
        "database": {"v_ApplyEyeMakeup_g08_c01": entry("training", "ApplyEyeMakeup"),
                     "v_Archery_g01_c02": entry("training", "Archery"),
                     "v_Archery_g09_c01": entry("validation", "Archery")}})
    root = tmp_path / "ucf"
    write_folder(root / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01", "121")
    write_folder(root / "Archery" / "v_Archery_g01_c02", "80")
    write_folder(root / "Archery" / "v_Archery_g09_c01", "64")
    names, train = read_ucf_hmdb(str(annotation), str(root), "training")
    assert names == ["ApplyEyeMakeup", "Archery"]
    assert train == [
        VideoEntry(str(root / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01"), "v_ApplyEyeMakeup_g08_c01", 0,
                   "ApplyEyeMakeup", 121),
        VideoEntry(str(root / "Archery" / "v_Archery_g01_c02"), "v_Archery_g01_c02", 1, "Archery", 80)]
    _, val = read_ucf_hmdb(str(annotation), str(root), "validation")
    assert [(e.video_id, e.label, e.n_frames) for e in val] == [("v_Archery_g09_c01", 1, 64)]


# ---------------------------------------------------------------------------------------------
# Diving48


VOCAB = [["Back", "15som", "05Twis", "FREE"], ["Forward", "25som", "NoTwis", "PIKE"], ["Inward", "35som"]]


@pytest.fixture
def diving48(tmp_path) -> tuple[Path, Path]:
    annotations = tmp_path / "annotations"
    write_json(annotations / "Diving48_vocab.json", VOCAB)
    write_json(annotations / "Diving48_train.json", [
        {"vid_name": "AbCdEfGhIjK_00012", "label": 2, "start_frame": 0, "end_frame": 81},
        {"vid_name": "ZyXwVuTsRqP_00003", "label": 0, "start_frame": 40, "end_frame": 59, "extra": "ignored"},
        {"vid_name": "notThere000_00001", "label": 1, "start_frame": 0, "end_frame": 9},
    ])
    write_json(annotations / "Diving48_test.json", [
        {"vid_name": "TestVideo00_00007", "label": 1, "start_frame": 5, "end_frame": 5},
        {"vid_name": "Backwards00_00008", "label": 1, "start_frame": 9, "end_frame": 3},  # no frames: skipped
    ])
    frames = tmp_path / "frames"
    for name in ("AbCdEfGhIjK_00012", "ZyXwVuTsRqP_00003", "TestVideo00_00007", "Backwards00_00008"):
        write_folder(frames / name, None, images=1)  # Diving48 folders have no n_frames file
    return annotations, frames


def test_diving48_class_names_join_the_vocabulary(diving48):
    annotations, _ = diving48
    assert diving48_class_names(str(annotations)) == ["Back_15som_05Twis_FREE", "Forward_25som_NoTwis_PIKE",
                                                      "Inward_35som"]


def test_read_diving48_training_reads_the_train_file(diving48, capsys):
    annotations, frames = diving48
    names, entries = read_diving48(str(annotations), str(frames), "training")
    assert names[2] == "Inward_35som"
    assert entries == [
        VideoEntry(str(frames / "AbCdEfGhIjK_00012"), "AbCdEfGhIjK_00012", 2, "Inward_35som", 82),
        VideoEntry(str(frames / "ZyXwVuTsRqP_00003"), "ZyXwVuTsRqP_00003", 0, "Back_15som_05Twis_FREE", 20),
    ]
    assert "1 of 3 training videos listed in" in capsys.readouterr().out


@pytest.mark.parametrize("subset", ["validation", "testing"])
def test_read_diving48_other_subsets_read_the_test_file(diving48, subset):
    annotations, frames = diving48
    _, entries = read_diving48(str(annotations), str(frames), subset)
    assert entries == [VideoEntry(str(frames / "TestVideo00_00007"), "TestVideo00_00007", 1,
                                  "Forward_25som_NoTwis_PIKE", 1)]


@pytest.mark.parametrize("item, fragments", [
    ("video", ["entry 1", "vid_name"]),
    ({"label": 0, "start_frame": 0, "end_frame": 3}, ["entry 1", "vid_name"]),
    ({"vid_name": "", "label": 0, "start_frame": 0, "end_frame": 3}, ["entry 1", "vid_name"]),
    ({"vid_name": "bad", "label": "0", "start_frame": 0, "end_frame": 3}, ["entry 1 (bad)", "integers"]),
    ({"vid_name": "bad", "label": True, "start_frame": 0, "end_frame": 3}, ["entry 1 (bad)", "integers"]),
    ({"vid_name": "bad", "label": 0, "start_frame": 0.5, "end_frame": 3}, ["entry 1 (bad)", "integers"]),
    ({"vid_name": "bad", "label": 0, "start_frame": 0}, ["entry 1 (bad)", "integers"]),
    ({"vid_name": "bad", "label": 3, "start_frame": 0, "end_frame": 3}, ["entry 1 (bad)", "label 3", "3 classes"]),
    ({"vid_name": "bad", "label": -1, "start_frame": 0, "end_frame": 3}, ["entry 1 (bad)", "label -1"]),
])
def test_bad_diving48_entries_name_file_and_entry(diving48, item, fragments):
    annotations, frames = diving48
    path = write_json(annotations / "Diving48_train.json",
                      [{"vid_name": "AbCdEfGhIjK_00012", "label": 2, "start_frame": 0, "end_frame": 81}, item])
    with pytest.raises(SdnError) as info:
        read_diving48(str(annotations), str(frames), "training")
    message = str(info.value)
    assert message.startswith(f"{path}:")
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("vocab, fragment", [
    (None, "annotation file not found"),
    ([], "non-empty list"),
    ({"0": ["a"]}, "non-empty list"),
    ([["a"], "b"], "row 1"),
    ([["a"], ["b", 2]], "row 1"),
])
def test_bad_or_missing_diving48_vocabulary(diving48, vocab, fragment):
    annotations, frames = diving48
    path = annotations / "Diving48_vocab.json"
    if vocab is None:
        path.unlink()
    else:
        write_json(path, vocab)
    with pytest.raises(SdnError, match=fragment) as info:
        read_diving48(str(annotations), str(frames), "training")
    assert str(info.value).startswith(f"{path}:")


def test_diving48_needs_an_annotation_directory(diving48):
    annotations, frames = diving48
    with pytest.raises(SdnError, match="annotation directory"):
        read_diving48(str(annotations / "Diving48_train.json"), str(frames), "training")
    (annotations / "Diving48_test.json").write_text('{"vid_name": "x"}')
    with pytest.raises(SdnError, match="Diving48_test.json: expected a JSON list"):
        read_diving48(str(annotations), str(frames), "validation")


def test_diving48_with_no_video_found_names_the_json(diving48, tmp_path):
    annotations, _ = diving48
    with pytest.raises(SdnError, match="none of the 2 validation videos") as info:
        read_diving48(str(annotations), str(tmp_path / "nowhere"), "validation")
    assert str(info.value).startswith(str(annotations / "Diving48_test.json"))


# ---------------------------------------------------------------------------------------------
# Clip windows (the original's n_samples_for_each_video rule)


@pytest.mark.parametrize("n_frames, n_samples, starts", [
    (300, 3, [1, 143, 285]),
    (100, 3, [1, 43, 85]),
    (34, 3, [1, 10, 19, 28]),
    (16, 3, list(range(1, 16))),  # n_frames <= T + n: step 1, one window per start frame
    (19, 3, list(range(1, 19))),
    (20, 3, [1, 3, 5, 7, 9, 11, 13, 15, 17, 19]),  # ceil(3 / 2) = 2
    (100, 2, [1, 84]),
    (300, 0, list(range(1, 300, 16))),  # test windows: step T
    (300, -1, list(range(1, 300, 16))),
    (1, 3, []),  # j = n_frames is never a start
    (1, 0, []),
    (2, 0, [1]),
])
def test_window_starts_match_the_verified_examples(n_frames, n_samples, starts):
    assert window_starts(n_frames, n_samples, T) == starts
    assert count_clips(video(n_frames), n_samples, T) == len(starts)


def test_verified_window_contents():
    def windows(n_frames, n_samples):
        return [c.frame_indices for c in make_clips([video(n_frames)], n_samples, T)]

    assert windows(300, 3) == [tuple(range(1, 17)), tuple(range(143, 159)), tuple(range(285, 301))]
    assert windows(100, 3) == [tuple(range(1, 17)), tuple(range(43, 59)), tuple(range(85, 101))]
    assert windows(34, 3)[-1] == tuple(range(28, 35))  # clipped at n_frames, padded later
    sixteen = windows(16, 3)
    assert len(sixteen) == 15 and sixteen[0] == tuple(range(1, 17)) and sixteen[-1] == (15, 16)
    assert len(windows(19, 3)) == 18
    test = windows(300, 0)
    assert len(test) == 19 and test[-1] == tuple(range(289, 301)) and len(test[-1]) == 12
    assert all(len(w) == T for w in test[:-1])
    assert [w[0] for w in test[1:]] == [w[-1] + 1 for w in test[:-1]]  # non-overlapping, consecutive
    assert windows(1, 3) == [] and windows(1, 0) == []


def test_training_gives_one_whole_video_sample():
    entries = [video(300, "a"), video(1, "b"), video(5, "c")]
    clips = make_clips(entries, 1, T)
    assert clips == [ClipSample(entries[0], tuple(range(1, 301))), ClipSample(entries[1], (1,)),
                     ClipSample(entries[2], (1, 2, 3, 4, 5))]
    assert [count_clips(e, 1, T) for e in entries] == [1, 1, 1]
    assert window_step(300, 1, T) == T


def test_make_clips_keeps_video_order_and_count_clips_agrees():
    entries = [video(n, str(n)) for n in (300, 34, 1, 16, 100)]
    for n_samples in (3, 2, 0, 5):
        clips = make_clips(entries, n_samples, 8)
        assert len(clips) == sum(count_clips(e, n_samples, 8) for e in entries)
        order = [c.video.path for c in clips]
        assert order == sorted(order, key=[e.path for e in entries].index)
        assert all(1 <= i <= c.video.n_frames for c in clips for i in c.frame_indices)


# ---------------------------------------------------------------------------------------------
# ActivityNet


TAXONOMY = [
    {"nodeId": 0, "nodeName": "Root", "parentId": None},
    {"nodeId": 1, "nodeName": "Sports", "parentId": 0},
    {"nodeId": 2, "nodeName": "Long jump", "parentId": 1},
    {"nodeId": 3, "nodeName": "Household", "parentId": 0},
    {"nodeId": 4, "nodeName": "Vacuuming", "parentId": 3},
    {"nodeId": 5, "nodeName": "Archery", "parentId": 1},
]


@pytest.fixture
def activitynet(tmp_path) -> tuple[Path, Path]:
    annotation = write_json(tmp_path / "activitynet.json", {"version": "1.3", "taxonomy": TAXONOMY, "database": {
        "trainVid001": {"subset": "training", "annotations": [
            {"segment": [0.5, 2.0], "label": "Archery"},  # frames 10..39, truncated at image 30
            {"segment": [0.0, 0.5], "label": "Long jump"},  # frames 1..9: shorter than 16, skipped
            {"segment": [0.0, 1.0], "label": "Vacuuming"},  # frames 1..19
        ]},
        "valVid00002": {"subset": "validation", "annotations": [{"segment": [0.0, 3.0], "label": "Long jump"}]},
        "testVid0003": {"subset": "testing", "annotations": []},
        "absentVid04": {"subset": "training", "annotations": [{"segment": [0.0, 3.0], "label": "Archery"}]},
    }})
    root = tmp_path / "frames"
    write_folder(root / "v_trainVid001", None, images=30).joinpath("fps").write_text("20\n")
    write_folder(root / "v_valVid00002", None, images=50).joinpath("fps").write_text("20.0")
    write_folder(root / "v_testVid0003", None, images=40)
    return annotation, root


def test_read_activitynet_trimmed_training(activitynet):
    annotation, root = activitynet
    names, clips = read_activitynet(str(annotation), str(root), "training", 1, T)
    assert names == ["Long jump", "Vacuuming", "Archery"]  # taxonomy leaves, in taxonomy order
    assert [(c.video.video_id, c.video.label, c.video.class_dir, c.frame_indices) for c in clips] == [
        ("trainVid001", 2, "Archery", tuple(range(10, 31))),
        ("trainVid001", 1, "Vacuuming", tuple(range(1, 20))),
    ]
    assert clips[0].video.path == str(root / "v_trainVid001")


def test_read_activitynet_trimmed_validation_windows(activitynet):
    annotation, root = activitynet
    # segment 1..60 (59 frames): step ceil((59 - 1 - 16) / 2) = 21 -> starts 1, 22, 43; images end at 50
    _, clips = read_activitynet(str(annotation), str(root), "validation", 3, T)
    assert [c.frame_indices for c in clips] == [tuple(range(1, 17)), tuple(range(22, 38))]
    assert {(c.video.video_id, c.video.label) for c in clips} == {("valVid00002", 0)}


def test_read_activitynet_untrimmed_testing(activitynet):
    annotation, root = activitynet
    _, clips = read_activitynet(str(annotation), str(root), "testing", 0, T)
    # frames 1..40 in windows of 16: 1..16, 17..32, and 33..40 (8 frames) skipped; no fps file needed
    assert [c.frame_indices for c in clips] == [tuple(range(1, 17)), tuple(range(17, 33))]
    assert {(c.video.video_id, c.video.label) for c in clips} == {("testVid0003", -1)}


def test_activitynet_errors_name_the_file(activitynet, tmp_path):
    annotation, root = activitynet
    (root / "v_trainVid001" / "fps").unlink()
    with pytest.raises(SdnError, match="missing fps file") as info:
        read_activitynet(str(annotation), str(root), "training", 1, T)
    assert str(root / "v_trainVid001" / "fps") in str(info.value)

    with pytest.raises(SdnError, match="no training clip of at least 16 frames") as info:
        read_activitynet(str(annotation), str(tmp_path / "nowhere"), "training", 1, T)
    assert str(info.value).startswith(str(annotation))

    data = json.loads(annotation.read_text())
    for bad in ({"segment": [0.0], "label": "Archery"}, {"segment": [0.0, 1.0], "label": "Sports"},
                {"segment": ["0", "1"], "label": "Archery"}, "Archery"):
        data["database"]["valVid00002"]["annotations"] = [bad]
        write_json(annotation, data)
        with pytest.raises(SdnError, match="entry 'valVid00002'") as info:
            read_activitynet(str(annotation), str(root), "validation", 3, T)
        assert str(info.value).startswith(f"{annotation}:")

    data["database"]["valVid00002"]["annotations"] = {"segment": [0.0, 1.0], "label": "Archery"}
    write_json(annotation, data)
    with pytest.raises(SdnError, match="entry 'valVid00002': 'annotations' must be a list"):
        read_activitynet(str(annotation), str(root), "validation", 3, T)

    write_json(annotation, {"taxonomy": [{"nodeId": 1}], "database": {}})
    with pytest.raises(SdnError, match="nodeId, nodeName and parentId"):
        read_activitynet(str(annotation), str(root), "training", 1, T)
    write_json(annotation, {"taxonomy": TAXONOMY})
    with pytest.raises(SdnError, match="'database'"):
        read_activitynet(str(annotation), str(root), "training", 1, T)
