"""Restricted unpickling of the original .npy files, and scene pseudo-label targets."""

from __future__ import annotations

import io
import os
import pickle
import struct
import time
from collections import OrderedDict

import numpy as np
import pytest

from sdn.data.safe_pickle import load_pickled_npy, save_pickled_npy
from sdn.data.scene_labels import SceneLabels, save_scene_labels_npy, save_scene_labels_npz
from sdn.errors import SdnError


class _Exploit:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _np_save_object(path, obj) -> None:
    holder = np.empty((), dtype=object)
    holder[()] = obj
    np.save(path, holder, allow_pickle=True)


def _multi(pred_cls, probs) -> dict:
    return {"pred_cls": np.asarray(pred_cls, dtype=np.int64), "probs": np.asarray(probs, dtype=np.float32)}


# ------------------------------------------------------------------------------------ safe_pickle


def test_refuses_a_pickle_that_names_os_system(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil_train.npy"
    _np_save_object(path, {"class": {"video": _Exploit(str(marker))}})
    with pytest.raises(SdnError, match=r"evil_train\.npy: refusing to load global '(posix|os|nt)\.system'"):
        load_pickled_npy(path)
    assert not marker.exists()
    with pytest.raises(SdnError, match="refusing"):
        SceneLabels.from_path(str(tmp_path), "training")
    assert not marker.exists()


def test_loads_original_layout_with_numpy_arrays_and_numpy_int_keys(tmp_path):
    data = {"abseiling": {"abcDEF12345": {np.int64(3): {"human_boxes": np.zeros((0, 5), np.float32)},
                                          1: {"human_boxes": np.ones((2, 5), np.float32)}}},
            "ordered": OrderedDict(a={1, 2}, b=frozenset({3}), c=complex(1, 2), d=bytearray(b"x"))}
    path = tmp_path / "d.npy"
    _np_save_object(path, data)
    loaded = load_pickled_npy(path)
    frames = loaded["abseiling"]["abcDEF12345"]
    assert list(frames) == [3, 1] and isinstance(list(frames)[0], np.int64)
    assert frames[3]["human_boxes"].shape == (0, 5)
    assert np.array_equal(frames[1]["human_boxes"], np.ones((2, 5), np.float32))
    assert loaded["ordered"] == data["ordered"]


class _Python2StylePickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` opcodes, as a Python 2 ``np.save`` did."""

    def save_bytes(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = save_bytes


def _write_npy_payload(path, payload: bytes) -> None:
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "|O", "fortran_order": False, "shape": ()})
        handle.write(payload)


@pytest.mark.parametrize("python2", [False, True])
def test_loads_numpy1_and_python2_pickles(tmp_path, python2):
    """NumPy 1.x named ``numpy.core.multiarray``; Python 2 array bytes only decode as latin1."""
    array = np.array([[0.5, 255.0, -1.0]], dtype=np.float32)  # bytes that are not ASCII
    holder = np.empty((), dtype=object)
    holder[()] = {"k": array, "n": np.int64(7)}
    if python2:
        buffer = io.BytesIO()
        _Python2StylePickler(buffer, protocol=2).dump(holder)
        payload = buffer.getvalue()
    else:
        payload = pickle.dumps(holder, protocol=3)
    payload = payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in payload
    _write_npy_payload(tmp_path / "old.npy", payload)
    loaded = load_pickled_npy(tmp_path / "old.npy")
    assert np.array_equal(loaded["k"], array) and loaded["n"] == 7


@pytest.mark.parametrize("damage", ["truncate", "garbage", "plain"])
def test_damaged_files_raise_sdn_error_naming_the_file(tmp_path, damage):
    path = tmp_path / "broken_train.npy"
    if damage == "plain":
        np.save(path, np.zeros(3))
    else:
        save_pickled_npy(path, {"a": {"b": _multi([1], [[0.5, 0.5]])}})
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"\x93NUMPY garbage" + raw[40:])
    with pytest.raises(SdnError, match="broken_train.npy"):
        load_pickled_npy(path)


def test_save_pickled_npy_is_readable_by_numpy(tmp_path):
    data = {"a": {"b": _multi([1, 2], [[0.1, 0.9], [0.2, 0.8]])}}
    save_pickled_npy(tmp_path / "x.npy", data)
    loaded = np.load(tmp_path / "x.npy", allow_pickle=True).item()
    assert np.array_equal(loaded["a"]["b"]["probs"], data["a"]["b"]["probs"])


# ------------------------------------------------------------------------------------ scene labels


def test_multiple_frame_targets_soft_mean_and_hard_mode_with_ties(tmp_path):
    probs = [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]]
    save_scene_labels_npy(tmp_path / "places_train.npy", {
        "dancing": {"aaaaaaaaaaa": _multi([2, 1, 1, 2], probs)},  # tie 1/2 -> smallest index, 1
        "running": {"bbbbbbbbbbb": _multi([0, 2, 2], probs[:3])}})
    labels = SceneLabels.from_path(str(tmp_path), "training")
    assert labels.multiple and labels.num_places == 3 and len(labels) == 2
    soft = labels.target("dancing", "aaaaaaaaaaa", soft=True)
    assert soft.dtype == np.float32 and soft.shape == (3,)
    assert np.array_equal(soft, np.mean(np.asarray(probs, np.float32), axis=0).astype(np.float32))
    assert labels.target("dancing", "aaaaaaaaaaa", soft=False) == 1
    assert labels.target("running", "bbbbbbbbbbb", soft=False) == 2


def test_single_frame_targets_as_stored(tmp_path):
    save_scene_labels_npy(tmp_path / "x_val.npy", {"c": {
        "aaaaaaaaaaa": {"pred_cls": 4, "probs": np.array([0.1, 0, 0, 0, 0.7], np.float64)},
        "bbbbbbbbbbb": {"pred_cls": np.int64(0), "probs": np.array([2.0, 0, 0, 0, 0], np.float32)}}})
    labels = SceneLabels.from_path(str(tmp_path), "validation")
    assert not labels.multiple
    soft = labels.target("c", "aaaaaaaaaaa", soft=True)
    assert soft.dtype == np.float32 and soft.tolist() == pytest.approx([0.1, 0, 0, 0, 0.7])
    assert labels.target("c", "bbbbbbbbbbb", soft=True)[0] == 2.0  # not renormalised
    assert labels.target("c", "aaaaaaaaaaa", soft=False) == 4
    assert labels.target("c", "bbbbbbbbbbb", soft=False) == 0


def test_files_merge_by_top_level_update_in_sorted_name_order(tmp_path):
    save_scene_labels_npy(tmp_path / "a_train.npy", {
        "c1": {"old_video_1": _multi([0], [[1, 0]])}, "c2": {"vid_c2_0001": _multi([0], [[1, 0]])}})
    save_scene_labels_npy(tmp_path / "b_train.npy", {"c1": {"new_video_1": _multi([1], [[0, 1]])}})
    save_scene_labels_npy(tmp_path / "c_val.npy", {"c3": {"vid_c3_0001": _multi([1], [[0, 1]])}})
    labels = SceneLabels.from_path(str(tmp_path), "training")
    assert labels.has("c1", "new_video_1") and not labels.has("c1", "old_video_1")  # class replaced
    assert labels.has("c2", "vid_c2_0001") and not labels.has("c3", "vid_c3_0001")
    with pytest.raises(SdnError, match=r"class 'c1', video 'old_video_1'"):
        labels.target("c1", "old_video_1", soft=True)


def test_missing_video_and_missing_files_raise_sdn_error(tmp_path):
    save_scene_labels_npy(tmp_path / "p_train.npy", {"c": {"aaaaaaaaaaa": _multi([0], [[1.0]])}})
    labels = SceneLabels.from_path(str(tmp_path), "training")
    with pytest.raises(SdnError, match=rf"{tmp_path}.*class 'c', video 'zzzzzzzzzzz'"):
        labels.target("c", "zzzzzzzzzzz", soft=False)
    with pytest.raises(SdnError, match=r"class 'nope'"):
        labels.target("nope", "aaaaaaaaaaa", soft=False)
    with pytest.raises(SdnError, match=r"\*val\*"):
        SceneLabels.from_path(str(tmp_path), "validation")
    with pytest.raises(SdnError, match="does not exist"):
        SceneLabels.from_path(str(tmp_path / "missing"), "training")


@pytest.mark.parametrize("bad, message", [
    (_multi([0, 1], [[0.5, np.nan], [0.5, 0.5]]), "NaN"),
    (_multi([0], [[-0.1, 1.1]]), "negative"),
    (_multi([0], [0.5, 0.5]), r"shape \[K, P\]"),
    (_multi([0, 5], [[0.5, 0.5], [0.5, 0.5]]), "outside"),
    ({"pred_cls": 1, "probs": np.array([0.5, 0.5])}, "1-D integer array"),
    ({"probs": np.array([[0.5, 0.5]])}, "'pred_cls' and 'probs'"),
    ({"pred_cls": np.array([0]), "probs": np.ones((1, 3), np.float32)}, "3 places, but other videos have 2"),
])
def test_invalid_entries_are_reported_with_file_class_and_video(tmp_path, bad, message):
    path = tmp_path / "labels_train.npy"
    save_pickled_npy(path, {"c": {"good_video1": _multi([0], [[0.5, 0.5]]), "bad_video_1": bad}})
    with pytest.raises(SdnError, match=message) as error:
        SceneLabels.from_path(str(tmp_path), "training")
    assert "labels_train.npy" in str(error.value) and "'bad_video_1'" in str(error.value)


def test_npz_round_trip_equals_npy(tmp_path):
    rng = np.random.default_rng(0)
    data = {}
    for c in range(3):
        data[f"class {c}"] = {}
        for v in range(4):
            k = int(rng.integers(1, 5))  # ragged number of frames
            probs = rng.dirichlet(np.ones(6), size=k).astype(np.float32)
            data[f"class {c}"][f"vid{c}{v}_xxxxx"] = _multi(probs.argmax(axis=1), probs)
    (tmp_path / "npy").mkdir()
    (tmp_path / "npz").mkdir()
    save_scene_labels_npy(tmp_path / "npy" / "places_train.npy", data)
    save_scene_labels_npz(tmp_path / "npz" / "places_train.npz", data)
    a = SceneLabels.from_path(str(tmp_path / "npy"), "training")
    b = SceneLabels.from_path(str(tmp_path / "npz"), "training")
    for class_dir, videos in data.items():
        for video_id in videos:
            assert np.array_equal(a.target(class_dir, video_id, True), b.target(class_dir, video_id, True))
            assert a.target(class_dir, video_id, False) == b.target(class_dir, video_id, False)
    single = {"c": {"aaaaaaaaaaa": {"pred_cls": 1, "probs": np.array([0.2, 0.8], np.float32)}}}
    save_scene_labels_npz(tmp_path / "npz" / "single_val.npz", single)
    c = SceneLabels.from_path(str(tmp_path / "npz"), "validation")
    assert not c.multiple and c.target("c", "aaaaaaaaaaa", False) == 1
    assert c.target("c", "aaaaaaaaaaa", True).tolist() == pytest.approx([0.2, 0.8])


def test_corrupt_npz_raises_sdn_error(tmp_path):
    (tmp_path / "places_train.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(SdnError, match="places_train.npz"):
        SceneLabels.from_path(str(tmp_path), "training")
    np.savez(tmp_path / "places_train.npz", something=np.zeros(2))
    with pytest.raises(SdnError, match="not a 'sdn-scene-labels' file"):
        SceneLabels.from_path(str(tmp_path), "training")


def test_npz_bytes_do_not_depend_on_the_clock(tmp_path, monkeypatch):
    data = {"c": {"aaaaaaaaaaa": _multi([0, 1], [[0.5, 0.5], [0.1, 0.9]])}}
    save_scene_labels_npz(tmp_path / "a.npz", data)
    monkeypatch.setattr(time, "time", lambda: 2.0e9)  # np.savez would stamp this time into the archive
    save_scene_labels_npz(tmp_path / "b.npz", data)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
