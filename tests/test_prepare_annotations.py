"""``sdn prepare annotations``: hand-written official split files to JSON that sdn's readers load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdn.cli.main import main as sdn_main
from sdn.data.annotations import read_activitynet, read_diving48, read_kinetics, read_ucf_hmdb
from sdn.errors import SdnError
from sdn.prepare.annotations import diving48_annotations, hmdb51_annotations, kinetics_annotation


def frame_folder(path: Path, n_frames: int = 20) -> None:
    """What the readers need of a video: a folder with an n_frames file."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "n_frames").write_text(str(n_frames))


def prepare(*args: str) -> None:
    assert sdn_main(["prepare", "annotations", *map(str, args)]) == 0


def test_kinetics_csvs(tmp_path):
    (tmp_path / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        "zumba,zzzzzzzzzz1,4,14,train,0\n"
        "abseiling,aaaaaaaaaa1,130,140,train,0\n"
        "zumba,zzzzzzzzzz2,0,10,train,0\n")
    (tmp_path / "val.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,aaaaaaaaaa9,7,17,val\n")
    (tmp_path / "test.csv").write_text("youtube_id,time_start,time_end,split\ntttttttttt1,3.0,13.0,test\n")
    out = tmp_path / "kinetics.json"
    prepare("kinetics", "--train", tmp_path / "train.csv", "--val", tmp_path / "val.csv",
            "--test", tmp_path / "test.csv", "--out", out)
    data = json.loads(out.read_text())
    assert data["labels"] == ["zumba", "abseiling"]  # first appearance in training, as the original
    assert data["database"]["tttttttttt1_000003_000013"] == {"subset": "testing", "annotations": {}}
    assert data["database"]["aaaaaaaaaa1_000130_000140"] == {"subset": "training",
                                                             "annotations": {"label": "abseiling"}}

    frames = tmp_path / "jpg"
    for split, label, key in [("train", "zumba", "zzzzzzzzzz1_000004_000014"),
                              ("train", "abseiling", "aaaaaaaaaa1_000130_000140"),
                              ("train", "zumba", "zzzzzzzzzz2_000000_000010"),
                              ("val", "abseiling", "aaaaaaaaaa9_000007_000017")]:
        frame_folder(frames / split / label / key)
    labels, entries = read_kinetics(str(out), str(frames / "train"), "training")
    assert [(e.video_id, e.label, e.class_dir) for e in entries] == [
        ("zzzzzzzzzz1", 0, "zumba"), ("aaaaaaaaaa1", 1, "abseiling"), ("zzzzzzzzzz2", 0, "zumba")]
    _, entries = read_kinetics(str(out), str(frames / "val"), "validation")
    assert [(e.video_id, e.label) for e in entries] == [("aaaaaaaaaa9", 1)]


def test_kinetics_rejects_unknown_validation_labels_and_missing_columns(tmp_path):
    (tmp_path / "train.csv").write_text("label,youtube_id,time_start,time_end\nzumba,z1,0,10\n")
    (tmp_path / "val.csv").write_text("label,youtube_id,time_start,time_end\nyodel,y1,0,10\n")
    with pytest.raises(SdnError, match=r"val\.csv: label 'yodel' of video y1_000000_000010 is not a training label"):
        kinetics_annotation(str(tmp_path / "train.csv"), str(tmp_path / "val.csv"))
    (tmp_path / "bad.csv").write_text("label,youtube_id\nzumba,z1\n")
    with pytest.raises(SdnError, match=r"bad\.csv: missing column\(s\) time_start, time_end"):
        kinetics_annotation(str(tmp_path / "bad.csv"), str(tmp_path / "val.csv"))


def test_ucf101_split_folder(tmp_path):
    splits = tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    (splits / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 HandstandPushups\n3 YoYo\n")
    for n in (1, 2, 3):
        (splits / f"trainlist0{n}.txt").write_text(
            f"ApplyEyeMakeup/v_ApplyEyeMakeup_g0{n}_c01.avi 1\nHandstandPushups/v_HandStandPushups_g0{n}_c01.avi 2\n")
        (splits / f"testlist0{n}.txt").write_text(f"YoYo/v_YoYo_g0{n + 3}_c01.avi\n")
    prepare("ucf101", splits, "--out", tmp_path / "json")
    assert sorted(p.name for p in (tmp_path / "json").iterdir()) == [f"ucf101_0{n}.json" for n in (1, 2, 3)]
    frames = tmp_path / "jpg"
    for n in (1, 2, 3):
        frame_folder(frames / "ApplyEyeMakeup" / f"v_ApplyEyeMakeup_g0{n}_c01")
        frame_folder(frames / "HandstandPushups" / f"v_HandStandPushups_g0{n}_c01")
        frame_folder(frames / "YoYo" / f"v_YoYo_g0{n + 3}_c01")
    for n in (1, 2, 3):
        annotation = str(tmp_path / "json" / f"ucf101_0{n}.json")
        labels, train = read_ucf_hmdb(annotation, str(frames), "training")
        assert labels == ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
        assert [(e.video_id, e.label) for e in train] == [(f"v_ApplyEyeMakeup_g0{n}_c01", 0),
                                                          (f"v_HandStandPushups_g0{n}_c01", 1)]
        _, val = read_ucf_hmdb(annotation, str(frames), "validation")
        assert [(e.video_id, e.label) for e in val] == [(f"v_YoYo_g0{n + 3}_c01", 2)]


def test_ucf101_checks_the_class_index_of_train_lists(tmp_path):
    (tmp_path / "classInd.txt").write_text("1 A\n2 B\n")
    (tmp_path / "trainlist01.txt").write_text("A/v_A_g01_c01.avi 2\n")
    (tmp_path / "testlist01.txt").write_text("B/v_B_g01_c01.avi\n")
    assert sdn_main(["prepare", "annotations", "ucf101", str(tmp_path)]) == 2


HMDB = {"brush_hair": ["April_09_brush_hair_u_nm_np1_ba_goo_0.avi",
                       "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi",
                       "brushing_hair_2_brush_hair_h_nm_np1_le_goo_0.avi"],
        "cartwheel": ["Acrobacias_cartwheel_f_cm_np1_ba_bad_1.avi", "Bodenturnen_cartwheel_f_cm_np1_le_med_0.avi",
                      "Cartwheel_cartwheel_f_cm_np1_ri_med_0.avi"],
        "ride_bike": ["A_Beautiful_Mind_ride_bike_f_cm_np1_ba_med_0.avi", "Bike_ride_bike_f_cm_np1_le_med_1.avi",
                      "Bikeride_ride_bike_f_nm_np1_fr_bad_0.avi"]}


def write_hmdb_splits(folder: Path) -> None:
    """Split N rotates the roles: video i is train (1), test (2) or unused (0)."""
    folder.mkdir()
    for label, videos in HMDB.items():
        for n in (1, 2, 3):
            roles = [(i + n) % 3 for i in range(3)]
            (folder / f"{label}_test_split{n}.txt").write_text(
                "".join(f"{video} {role} \n" for video, role in zip(videos, roles)))


def test_hmdb51_splits_2_and_3_keep_the_class_indices_of_split_1(tmp_path):
    splits = tmp_path / "testTrainMulti_7030_splits"
    write_hmdb_splits(splits)
    prepare("hmdb51", splits)  # written into the split folder, as the original ...
    prepare("hmdb51", splits)  # ... whose second run would have read its own hmdb51_1.json as a class
    frames = tmp_path / "jpg"
    for label, videos in HMDB.items():
        for video in videos:
            frame_folder(frames / label / video[:-4])
    expected_labels = ["brush_hair", "cartwheel", "ride_bike"]
    for n in (1, 2, 3):
        annotation = str(splits / f"hmdb51_{n}.json")
        for subset, role in (("training", 1), ("validation", 2)):
            labels, entries = read_ucf_hmdb(annotation, str(frames), subset)
            assert labels == expected_labels
            expected = [(video[:-4], expected_labels.index(label)) for label, videos in HMDB.items()
                        for i, video in enumerate(videos) if (i + n) % 3 == role]
            assert [(e.video_id, e.label) for e in entries] == expected
        assert len(json.loads(Path(annotation).read_text())["database"]) == 6  # role 0 left out
    assert hmdb51_annotations(str(splits))["hmdb51_3.json"]["labels"] == expected_labels


def test_diving48_official_files_to_the_reader_layout(tmp_path):
    source = tmp_path / "official"
    source.mkdir()
    vocab = [["Back", "15som", "05Twis", "FREE"], ["Forward", "35som", "NoTwis", "PIKE"]]
    (source / "Diving48_vocab.json").write_text(json.dumps(vocab))
    (source / "Diving48_V2_train.json").write_text(json.dumps([
        {"vid_name": "AbCdEfGhIjK_00001", "label": 1, "start_frame": 0, "end_frame": 30},
        {"vid_name": "AbCdEfGhIjK_00002", "label": 0, "start_frame": 10, "end_frame": 40}]))
    (source / "Diving48_V2_test.json").write_text(json.dumps([
        {"vid_name": "ZyXwVuTsRqP_00001", "label": 0, "start_frame": 0, "end_frame": 20}]))
    frames = tmp_path / "frames"
    frame_folder(frames / "AbCdEfGhIjK_00001", 29)  # decoded to fewer frames than the JSON says
    frame_folder(frames / "AbCdEfGhIjK_00002", 31)
    out = tmp_path / "annotations"
    prepare("diving48", source, "--out", out, "--frames", frames)
    assert sorted(p.name for p in out.iterdir()) == ["Diving48_test.json", "Diving48_train.json", "Diving48_vocab.json"]
    names, entries = read_diving48(str(out), str(frames), "training")
    assert names == ["Back_15som_05Twis_FREE", "Forward_35som_NoTwis_PIKE"]
    assert [(e.video_id, e.label, e.n_frames) for e in entries] == [("AbCdEfGhIjK_00001", 1, 29),
                                                                    ("AbCdEfGhIjK_00002", 0, 31)]
    files, changed = diving48_annotations(str(source))
    assert changed == 0 and files["Diving48_train.json"][0]["end_frame"] == 30  # unchanged without --frames
    (source / "Diving48_V2_test.json").write_text(json.dumps([{"vid_name": "x", "label": 2, "start_frame": 0,
                                                               "end_frame": 3}]))
    with pytest.raises(SdnError, match=r"Diving48_V2_test\.json: entry 0 \(x\): label must be 0\.\.1"):
        diving48_annotations(str(source))


def test_activitynet_is_checked_and_copied(tmp_path):
    data = {"version": "VERSION 1.3",
            "taxonomy": [{"nodeId": 1, "nodeName": "Root", "parentId": None},
                         {"nodeId": 2, "nodeName": "Sports", "parentId": 1},
                         {"nodeId": 3, "nodeName": "Bowling", "parentId": 2}],
            "database": {"abc": {"subset": "training", "annotations": [{"segment": [0.5, 2.5], "label": "Bowling"}]},
                         "def": {"subset": "testing", "annotations": []}}}
    (tmp_path / "official.json").write_text(json.dumps(data))
    prepare("activitynet", tmp_path / "official.json", "--out", tmp_path / "activitynet.json")
    assert json.loads((tmp_path / "activitynet.json").read_text()) == data
    frames = tmp_path / "jpg" / "v_abc"
    frames.mkdir(parents=True)
    for i in range(1, 31):
        (frames / f"image_{i:05d}.jpg").write_bytes(b"")
    (frames / "fps").write_text("10.0")
    names, clips = read_activitynet(str(tmp_path / "activitynet.json"), str(tmp_path / "jpg"), "training", 1, 16)
    assert names == ["Bowling"] and [(c.video.label, c.frame_indices) for c in clips] == [(0, tuple(range(5, 25)))]
    data["database"]["abc"]["annotations"][0]["label"] = "Sports"  # not a leaf
    (tmp_path / "official.json").write_text(json.dumps(data))
    assert sdn_main(["prepare", "annotations", "activitynet", str(tmp_path / "official.json"),
                     "--out", str(tmp_path / "x.json")]) == 2
