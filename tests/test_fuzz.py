"""Fuzzing every parser of user-supplied files (issue 7, "hostile files").

The property, for every generated input: the parser either succeeds and its result is sane and
usable, or it raises ``SdnError`` whose message is one line and names the file (or the
description given to ``from_dict``). Any other exception is a bug. Nothing may run code from a
file: the hostile pickles name globals whose execution would create a marker file, and the
marker must never exist.

Inputs are nearly valid documents with some fields replaced by junk (wrong types, NaN/inf,
negative or absurd numbers, names with line breaks or path separators), truncated or
byte-flipped serialisations, random bytes, and hand-made pickles and ``.npy`` headers.

Each section ends with plain regression tests for the bugs the fuzzing found. The checkpoint
property leaves out the inputs that have their own tests there (non-zip garbage, byte flips, odd
keys and tensor kinds): each has its own deterministic test there.

Deliberately not generated: a pickle holding a tuple nested about 10^6 deep used as a dict key.
CPython hashes nested tuples recursively with no depth check, so unpickling such a file crashes
the interpreter (a segfault: a denial of service, not code execution); the restricted unpickler
cannot prevent that short of interpreting every opcode itself.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import shutil
import struct
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import numpy as np
import numpy.lib.format as npy_format
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

from sdn.checkpoint import load_for_resume, load_pretrained, read_checkpoint
from sdn.data import annotations
from sdn.data.annotations import (ClipSample, MAX_FRAMES, SUBSETS, VideoEntry, activitynet_class_names,
                                  diving48_class_names, load_json, make_clips, read_activitynet, read_diving48,
                                  read_kinetics, read_labels_database, read_ucf_hmdb)
from sdn.data.detections import HumanDetections, save_detections_npz
from sdn.data.detections import _arrays_from_dict as _flatten_detections
from sdn.data.masking import box_slices, mask_background, mask_humans
from sdn.data.safe_pickle import load_npz, load_pickled_npy, save_npz, save_pickled_npy
from sdn.data.scene_labels import SceneLabels, save_scene_labels_npz
from sdn.data.scene_labels import _flatten as _flatten_scene_labels
from sdn.data.video import FRAME_NAME, read_n_frames_file
from sdn.errors import SdnError
from sdn.evaluation import evaluate, load_ground_truth, load_predictions
from sdn.prepare import formats as prepare_formats

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # hypothesis float16

HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
          HealthCheck.large_base_example]


def fuzz(examples: int):
    """Hypothesis settings of one property (the whole file runs about 1200 examples)."""
    return settings(max_examples=examples, deadline=None, suppress_health_check=HEALTH)


# ----------------------------------------------------------------------------------------------
# The property


def assert_clear(error: SdnError, *names: Any) -> None:
    """A clear error: a non-empty single line that names one of ``names`` (file, folder, description)."""
    message = str(error)
    assert message and message.splitlines() == [message], f"not one line: {message!r}"
    assert any(str(name) in message for name in names), f"{message!r} names none of {names}"


def outcome(call: Callable[[], Any], *names: Any) -> tuple[bool, Any]:
    """Run a parser: ``(True, result)``, or ``(False, None)`` after checking its SdnError is clear.

    Any other exception propagates, failing the property.
    """
    try:
        return True, call()
    except SdnError as error:
        assert_clear(error, *names)
        return False, None


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@contextmanager
def scratch(workdir: Path):
    """A fresh directory per generated example (hypothesis and function-scoped tmp_path do not mix)."""
    directory = Path(tempfile.mkdtemp(dir=workdir))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def write(path: Path, content: bytes | str | None) -> None:
    """Write a file; ``None`` leaves it missing and ``"<dir>"`` makes a directory in its place."""
    if content is None:
        return
    if content == "<dir>":
        path.mkdir(parents=True, exist_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)


def path_safe(name: Any) -> bool:
    """Names the fuzzer may create as folders (others stay absent; the readers must still cope)."""
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\x00" not in name
            and len(name.encode()) < 100)


# ----------------------------------------------------------------------------------------------
# Generic strategies

NAMES = st.one_of(
    st.sampled_from(["a", "b", "cls", "v1", "../up", "a/b", "/", "/abs", ".", "..", "", "new\nline", "tab\tx",
                     "nul\x00", "sep\u2028x", "ü", "x" * 150]),
    st.text(max_size=8),
)
HUGE_INTS = st.sampled_from([10 ** 400, -(10 ** 400), 2 ** 63, 2 ** 64, -(2 ** 63) - 1, 10 ** 20])
NUMBERS = st.one_of(st.integers(-3, 20), st.integers(), HUGE_INTS, st.floats())
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, NAMES)
JUNK = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
                    max_leaves=6)


# How often (in tenths) a field of one generated input is damaged. Shared by every field of an
# example, so some inputs are entirely valid (rate 0) and others are mostly junk.
DAMAGE_RATE = st.shared(st.sampled_from([0, 0, 1, 2, 5]), key="damage rate")


@st.composite
def damage(draw) -> bool:
    """Whether to damage this field (at the example's shared rate)."""
    rate = draw(DAMAGE_RATE)
    return bool(rate) and draw(st.integers(0, 9)) < rate


@st.composite
def maybe(draw, strategy: st.SearchStrategy, junk: st.SearchStrategy | None = None):
    """``strategy``, or (at the example's damage rate) junk of any JSON type."""
    return draw(junk if junk is not None else JUNK) if draw(damage()) else draw(strategy)


RAW_FILES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"", b"{", b"[", b'{"labels": [', b"\xff\xfe\x00", b"[" * 50_000, b"{\"a\":" * 50_000,
                     b"1" * 5000, b'{"database": {"k": ' + b"9" * 5000 + b"}}", b"NaN", b"\x00" * 8, b"null",
                     b"[1, 2, 3]", b'"text"']),
)


@st.composite
def damaged(draw, documents: st.SearchStrategy) -> bytes:
    """A document serialised as JSON (NaN/Infinity allowed, as json.dump writes them), maybe damaged."""
    text = json.dumps(draw(documents)).encode()
    how = draw(st.sampled_from(["as is"] * 5 + ["truncated", "flipped", "raw"]))
    if how == "truncated":
        return text[:draw(st.integers(0, max(0, len(text) - 1)))]
    if how == "flipped" and text:
        data = bytearray(text)
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if how == "raw":
        return draw(RAW_FILES)
    return text


N_FRAMES_FILES = st.one_of(
    st.integers(-5, 300).map(lambda n: str(n).encode()),
    st.floats().map(lambda f: repr(f).encode()),
    st.text(max_size=10).map(str.encode),
    st.binary(max_size=10),
    st.sampled_from([b"12", b" 12.9\n", b"1e400", b"nan", b"inf", b"-inf", b"1e9", b"1e308", b"0x10", b"", b"\xff",
                     b"1_000", "\u0663".encode(), b"9" * 5000, b"-0", None, "<dir>"]),
)


GOOD_N_FRAMES = st.integers(1, 300).map(lambda n: str(n).encode())
LABELS = st.sampled_from(["a", "b", "cls"])
KEY_NAMES = st.one_of(st.sampled_from(["v1", "v2", "abcdefghijk_000001_000010"]),
                      st.text(alphabet="abcXYZ_-019", min_size=1, max_size=12))


@st.composite
def subset_of(draw, subsets: list[str]) -> str:
    """Mostly a subset the document uses (so readers find videos), sometimes any subset."""
    return draw(st.sampled_from(subsets)) if subsets and not draw(damage()) else draw(st.sampled_from(SUBSETS))


# ----------------------------------------------------------------------------------------------
# n_frames and fps files


@pytest.mark.slow
@fuzz(60)
@given(content=N_FRAMES_FILES)
def test_fuzz_n_frames_file(workdir, content):
    with scratch(workdir) as folder:
        write(folder / "n_frames", content)
        ok, value = outcome(lambda: read_n_frames_file(str(folder)), folder / "n_frames")
        if ok:
            assert type(value) is int


@fuzz(40)
@given(content=N_FRAMES_FILES)
def test_fuzz_fps_file(workdir, content):
    with scratch(workdir) as folder:
        write(folder / "fps", content)
        ok, value = outcome(lambda: annotations._read_fps(str(folder)), folder / "fps")
        if ok:
            assert math.isfinite(value) and value > 0


@pytest.mark.parametrize("text", ["inf", "nan", "-inf", "0", "-25", "1e400"])
def test_fps_must_be_a_positive_finite_number(tmp_path, text):
    """Regression: an fps of inf/nan made math.ceil raise OverflowError/ValueError in the ActivityNet reader."""
    (tmp_path / "fps").write_text(text)
    with pytest.raises(SdnError, match=r"fps: .*frame rate"):
        annotations._read_fps(str(tmp_path))


# ----------------------------------------------------------------------------------------------
# Kinetics / UCF-101 / HMDB-51 style annotations


@st.composite
def kinetics_cases(draw):
    labels = draw(st.lists(maybe(LABELS, NAMES), min_size=1, max_size=3))
    videos = draw(st.lists(st.tuples(maybe(KEY_NAMES, NAMES), maybe(st.sampled_from(labels), NAMES),
                                     st.sampled_from(SUBSETS), maybe(GOOD_N_FRAMES, N_FRAMES_FILES),
                                     maybe(st.just(True), st.booleans())),
                           max_size=4, unique_by=lambda video: video[0]))
    database = {key: {"subset": draw(maybe(st.just(subset))),
                      "annotations": draw(maybe(st.fixed_dictionaries({"label": maybe(st.just(label))})))}
                for key, label, subset, _, _ in videos}
    document = draw(maybe(st.fixed_dictionaries({"labels": maybe(st.just(labels)),
                                                 "database": maybe(st.just(database))})))
    subset = draw(subset_of([video[2] for video in videos]))
    return draw(damaged(st.just(document))), videos, subset


def _make_kinetics_folders(root: Path, videos) -> None:
    for key, label, subset, n_frames, exists in videos:
        class_dir = "test" if subset == "testing" else label
        if exists and path_safe(key) and path_safe(class_dir):
            folder = root / class_dir / key
            folder.mkdir(parents=True, exist_ok=True)
            write(folder / "n_frames", n_frames)


def _check_entries(labels, entries, subset, root: Path) -> None:
    assert isinstance(labels, list) and all(isinstance(name, str) for name in labels)
    assert entries, "a reader that succeeds returns at least one video"
    for entry in entries:
        assert isinstance(entry, VideoEntry)
        assert 0 < entry.n_frames <= MAX_FRAMES
        assert os.path.exists(entry.path) and Path(entry.path).resolve().is_relative_to(root.resolve())
        if subset == "testing" and entry.label == -1:
            assert entry.class_dir == "test"
        else:
            assert 0 <= entry.label < len(labels) and labels[entry.label] == entry.class_dir
    clips = make_clips(entries, 3, 4)
    assert all(isinstance(clip, ClipSample) and 1 <= min(clip.frame_indices) for clip in clips)


@fuzz(100)
@given(case=kinetics_cases(), reader=st.sampled_from([read_kinetics, read_ucf_hmdb]))
def test_fuzz_kinetics_style_annotations(workdir, case, reader):
    content, videos, subset = case
    with scratch(workdir) as folder:
        annotation, root = folder / "annotation.json", folder / "videos"
        write(annotation, content)
        root.mkdir()
        _make_kinetics_folders(root, videos)
        ok, result = outcome(lambda: reader(str(annotation), str(root), subset), annotation, root)
        if ok:
            _check_entries(*result, subset, root)
        ok, result = outcome(lambda: read_labels_database(str(annotation)), annotation)
        if ok:
            labels, database = result
            assert all(isinstance(name, str) and name for name in labels)
            assert all(isinstance(value, dict) and value["subset"] in SUBSETS for value in database.values())


def test_huge_json_integer_is_a_clear_error(tmp_path):
    """Regression: an integer of more than 4300 digits raised a bare ValueError from json.load."""
    path = tmp_path / "kinetics.json"
    path.write_text('{"labels": [' + "7" * 5000 + '], "database": {}}')
    with pytest.raises(SdnError, match="not valid JSON") as error:
        load_json(str(path))
    assert_clear(error.value, path)


def _kinetics_json(path: Path, key: str, label: str = "a", subset: str = "training") -> None:
    path.write_text(json.dumps({"labels": [label], "database": {key: {"subset": subset,
                                                                     "annotations": {"label": label}}}}))


@pytest.mark.parametrize("key", ["/", "/etc", "..", "../../x", ".", "a/../../b", "", "x//y"])
def test_video_keys_cannot_leave_the_video_folder(tmp_path, key):
    """Regression: a key such as '/' made the reader open '/n_frames' (outside --video_path)."""
    annotation = tmp_path / "kinetics.json"
    _kinetics_json(annotation, key)
    (tmp_path / "videos" / "a").mkdir(parents=True)
    for reader in (read_kinetics, read_ucf_hmdb):
        with pytest.raises(SdnError, match="not a relative path inside the video folder") as error:
            reader(str(annotation), str(tmp_path / "videos"), "training")
        assert_clear(error.value, annotation)


def test_a_key_with_a_line_break_gives_a_one_line_error(tmp_path):
    """Regression: the 'none of the videos was found' message embedded the path with its line break."""
    annotation = tmp_path / "kinetics.json"
    _kinetics_json(annotation, "two\nlines")
    (tmp_path / "videos").mkdir()
    with pytest.raises(SdnError, match="none of the 1 training videos") as error:
        read_kinetics(str(annotation), str(tmp_path / "videos"), "training")
    assert_clear(error.value, annotation)


@pytest.mark.parametrize("n_frames", ["1e12", "1e308", str(MAX_FRAMES + 1)])
def test_absurd_frame_count_is_a_clear_error(tmp_path, n_frames):
    """Regression: n_frames '1e12' was accepted, and a training sample then listed 10^12 frame indices."""
    annotation = tmp_path / "kinetics.json"
    _kinetics_json(annotation, "vid")
    folder = tmp_path / "videos" / "a" / "vid"
    folder.mkdir(parents=True)
    (folder / "n_frames").write_text(n_frames)
    with pytest.raises(SdnError, match=f"more than {MAX_FRAMES}") as error:
        read_kinetics(str(annotation), str(tmp_path / "videos"), "training")
    assert_clear(error.value, annotation)


# ----------------------------------------------------------------------------------------------
# Diving48


@st.composite
def diving48_cases(draw):
    vocab = draw(maybe(st.lists(st.lists(maybe(LABELS, NAMES), max_size=3), min_size=1, max_size=4)))
    frames = maybe(st.integers(0, 40), st.one_of(st.integers(-3, 40), HUGE_INTS))
    items = draw(st.lists(maybe(st.fixed_dictionaries({
        "vid_name": maybe(KEY_NAMES, NAMES), "label": maybe(st.integers(0, len(vocab) - 1 if isinstance(vocab, list)
                                                                          and vocab else 0), st.integers(-1, 4)),
        "start_frame": frames, "end_frame": frames})), min_size=1, max_size=4))
    files = {"Diving48_vocab.json": draw(damaged(st.just(vocab)))}
    for name in ("Diving48_train.json", "Diving48_test.json"):
        files[name] = draw(maybe(damaged(st.just(items)), st.none()))
    exists = draw(st.lists(maybe(st.just(True), st.booleans()), min_size=len(items), max_size=len(items)))
    return files, items, exists, draw(maybe(st.just(True), st.booleans())), draw(st.sampled_from(SUBSETS))


@fuzz(80)
@given(case=diving48_cases())
def test_fuzz_diving48_annotations(workdir, case):
    files, items, exists, as_directory, subset = case
    with scratch(workdir) as folder:
        annotation_dir, root = folder / "annotations", folder / "frames"
        root.mkdir()
        if as_directory:
            for name, content in files.items():
                write(annotation_dir / name, content)
        else:
            write(annotation_dir, files["Diving48_test.json"] or b"[]")  # a file where a directory belongs
        for item, present in zip(items, exists):
            name = item.get("vid_name") if isinstance(item, dict) else None
            if present and path_safe(name):
                (root / name).mkdir(exist_ok=True)
        ok, result = outcome(lambda: read_diving48(str(annotation_dir), str(root), subset), annotation_dir)
        if ok:
            _check_entries(*result, subset, root)
        ok, names = outcome(lambda: diving48_class_names(str(annotation_dir)), annotation_dir)
        if ok:
            assert names and all(isinstance(name, str) for name in names)


def _diving48(tmp_path: Path, item: dict) -> Path:
    directory = tmp_path / "annotations"
    directory.mkdir()
    (directory / "Diving48_vocab.json").write_text('[["a"], ["b"]]')
    (directory / "Diving48_train.json").write_text(json.dumps([item]))
    (tmp_path / "frames").mkdir()
    return directory


def test_diving48_vid_name_with_line_break_gives_one_line(tmp_path):
    """Regression: the entry's vid_name went into the message unquoted, line break included."""
    directory = _diving48(tmp_path, {"vid_name": "x\ny", "label": "0", "start_frame": 0, "end_frame": 3})
    with pytest.raises(SdnError, match="must be integers") as error:
        read_diving48(str(directory), str(tmp_path / "frames"), "training")
    assert_clear(error.value, directory)


@pytest.mark.parametrize("end", [10 ** 18, 10 ** 400])
def test_diving48_absurd_frame_range(tmp_path, end):
    directory = _diving48(tmp_path, {"vid_name": "clip", "label": 0, "start_frame": 0, "end_frame": end})
    (tmp_path / "frames" / "clip").mkdir()
    with pytest.raises(SdnError, match=f"more than {MAX_FRAMES}") as error:
        read_diving48(str(directory), str(tmp_path / "frames"), "training")
    assert_clear(error.value, directory)


@pytest.mark.parametrize("name", ["/etc", "../x", ".."])
def test_diving48_vid_name_cannot_leave_the_frame_folder(tmp_path, name):
    directory = _diving48(tmp_path, {"vid_name": name, "label": 0, "start_frame": 0, "end_frame": 3})
    with pytest.raises(SdnError, match="not a relative path") as error:
        read_diving48(str(directory), str(tmp_path / "frames"), "training")
    assert_clear(error.value, directory)


# ----------------------------------------------------------------------------------------------
# ActivityNet

TIMES = st.one_of(st.floats(0, 12), st.integers(0, 12), st.floats(), HUGE_INTS, st.integers())
SEGMENTS = maybe(st.tuples(st.floats(0, 2), st.floats(6, 10)).map(list),
                 st.one_of(st.tuples(TIMES, TIMES).map(list), st.lists(TIMES, max_size=3)))
FPS_FILES = maybe(st.sampled_from([b"4", b"4.0", b"10", b"2.5", b"30"]),
                  st.one_of(st.sampled_from([b"1e300", b"inf", b"nan", b"0", b"-4", b"", None]), N_FRAMES_FILES))
ACTIVITIES = st.sampled_from(["run", "jump", "root"])


@st.composite
def activitynet_cases(draw):
    ids = maybe(st.integers(0, 4), st.one_of(st.none(), JUNK))
    nodes = [{"nodeId": 0, "nodeName": "root", "parentId": None}, {"nodeId": 1, "nodeName": "run", "parentId": 0},
             {"nodeId": 2, "nodeName": "jump", "parentId": 0}]
    taxonomy = draw(maybe(st.just(nodes), st.lists(maybe(st.fixed_dictionaries({
        "nodeId": ids, "nodeName": maybe(ACTIVITIES), "parentId": ids})), max_size=4)))
    keys = draw(st.lists(maybe(KEY_NAMES, NAMES), min_size=1, max_size=3, unique=True))
    subsets = {key: draw(st.sampled_from(SUBSETS)) for key in keys}
    database = {key: draw(maybe(st.fixed_dictionaries({
        "subset": maybe(st.just(subsets[key])),
        "annotations": maybe(st.lists(maybe(st.fixed_dictionaries({
            "segment": SEGMENTS,
            "label": maybe(st.sampled_from(["run", "jump"]), ACTIVITIES)})), max_size=2))}))) for key in keys}
    document = draw(maybe(st.fixed_dictionaries({"taxonomy": st.just(taxonomy), "database": st.just(database)})))
    folders = {key: (draw(FPS_FILES), draw(maybe(st.integers(40, 60), st.integers(0, 60)))) for key in keys
               if draw(maybe(st.just(True), st.booleans()))}
    return draw(damaged(st.just(document))), folders, draw(subset_of(list(subsets.values())))


@pytest.mark.slow
@fuzz(80)
@given(case=activitynet_cases(), n_samples=st.sampled_from([1, 3]), duration=st.sampled_from([16, 20, 16, 20, 4]))
def test_fuzz_activitynet_annotations(workdir, case, n_samples, duration):
    content, folders, subset = case
    with scratch(workdir) as folder:
        annotation, root = folder / "activitynet.json", folder / "frames"
        write(annotation, content)
        root.mkdir()
        for key, (fps, n_images) in folders.items():
            if path_safe(f"v_{key}"):
                video = root / f"v_{key}"
                video.mkdir()
                write(video / "fps", fps)
                for index in range(1, n_images + 1):
                    (video / FRAME_NAME.format(index)).touch()
        ok, result = outcome(lambda: read_activitynet(str(annotation), str(root), subset, n_samples, duration),
                             annotation, root)
        if ok:
            names, clips = result
            assert clips and all(isinstance(name, str) for name in names)
            for clip in clips:
                assert len(clip.frame_indices) >= annotations.ACTIVITYNET_MIN_FRAMES
                assert all(os.path.isfile(os.path.join(clip.video.path, FRAME_NAME.format(i)))
                           for i in clip.frame_indices)
                assert clip.video.label == -1 if subset == "testing" else 0 <= clip.video.label < len(names)


@pytest.mark.parametrize("node", [{"nodeId": [1], "nodeName": "a", "parentId": None},
                                  {"nodeId": 1, "nodeName": "a", "parentId": {"x": 1}},
                                  {"nodeId": 1, "nodeName": ["a"], "parentId": None}])
def test_taxonomy_with_unhashable_ids_or_odd_names(tmp_path, node):
    """Regression: a list or object as nodeId/parentId raised TypeError (unhashable type)."""
    with pytest.raises(SdnError, match="taxonomy nodes need") as error:
        activitynet_class_names([node], "activitynet.json")
    assert_clear(error.value, "activitynet.json")


@pytest.mark.parametrize("segment", [[0, 10 ** 400], [1e308, 1e308], [0, 3]])
def test_activitynet_segment_beyond_the_float_range(tmp_path, segment):
    """Regression: a segment time of 10**400 raised OverflowError (int too large to convert to float)."""
    document = {"taxonomy": [{"nodeId": 1, "nodeName": "run", "parentId": None}],
                "database": {"vid": {"subset": "training", "annotations": [{"segment": segment, "label": "run"}]}}}
    annotation = tmp_path / "activitynet.json"
    annotation.write_text(json.dumps(document))
    (tmp_path / "frames" / "v_vid").mkdir(parents=True)
    (tmp_path / "frames" / "v_vid" / "fps").write_text("30")
    with pytest.raises(SdnError) as error:
        read_activitynet(str(annotation), str(tmp_path / "frames"), "training", 1, 16)
    assert_clear(error.value, annotation)
    if segment != [0, 3]:
        assert "2-number 'segment'" in str(error.value)


# ----------------------------------------------------------------------------------------------
# NumPy arrays for the label and detection files

FLOAT_DTYPES = st.sampled_from([np.float32, np.float64, np.float16])
ANY_DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.uint64, np.int8, np.uint8, np.bool_,
                              np.complex64, np.dtype(">f4"), np.dtype("U3"), np.dtype("M8[s]")])
ARRAYS = hnp.arrays(ANY_DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
JUNK_VALUES = st.one_of(ARRAYS, st.integers(-3, 10), NUMBERS, JUNK,
                        st.lists(st.lists(st.floats(), max_size=3), max_size=3))
KEYS = st.one_of(NAMES, NAMES, st.integers(), st.none(), st.tuples(st.integers(), NAMES), st.just((((1,),),)))


def _probabilities(shape: tuple[int, ...]) -> st.SearchStrategy:
    return hnp.arrays(FLOAT_DTYPES, shape, elements=st.floats(0, 1, width=16))


@st.composite
def scene_entries(draw, multiple: bool, places: int):
    """One video's labels: valid for the mode and place count, or damaged."""
    kind = draw(st.sampled_from(["bad probs", "bad pred_cls", "junk", "places", "missing"])) if draw(damage()) \
        else "good"
    frames = draw(st.integers(1, 3))
    if kind == "junk":
        return draw(JUNK_VALUES)
    if kind == "places":
        places = draw(st.integers(1, 6))
    pred_cls: Any = (draw(hnp.arrays(np.int64, frames, elements=st.integers(0, places - 1))) if multiple
                     else draw(st.integers(0, places - 1)))
    probs = draw(_probabilities((frames, places) if multiple else (places,)))
    if kind == "bad probs":
        probs = draw(st.one_of(JUNK_VALUES, hnp.arrays(FLOAT_DTYPES, probs.shape, elements=st.floats()),
                               st.just(np.full(probs.shape, 1e300)), st.just(-probs - 1)))
    elif kind == "bad pred_cls":
        pred_cls = draw(st.one_of(JUNK_VALUES, st.just(places), st.just(-1), st.just(np.uint64(2 ** 64 - 1))))
    entry = {"pred_cls": pred_cls, "probs": probs}
    if kind == "missing":
        del entry[draw(st.sampled_from(["pred_cls", "probs"]))]
    return entry


@st.composite
def scene_dicts(draw):
    multiple, places = draw(st.booleans()), draw(st.integers(1, 5))
    entries = scene_entries(multiple, places)
    videos = st.dictionaries(maybe(KEY_NAMES, KEYS), entries, min_size=1, max_size=3)
    labels = draw(st.dictionaries(maybe(LABELS, KEYS), maybe(videos, st.dictionaries(KEYS, JUNK, max_size=2)),
                                  min_size=1, max_size=3))
    return draw(maybe(st.just(labels), JUNK_VALUES))


def _check_scene_labels(labels: SceneLabels, data: dict) -> None:
    assert len(labels) >= 1 and labels.num_places >= 1
    for class_dir, videos in data.items():
        for video_id in videos:
            assert labels.has(class_dir, video_id)
            soft = labels.target(class_dir, video_id, soft=True)
            hard = labels.target(class_dir, video_id, soft=False)
            assert soft.dtype == np.float32 and soft.shape == (labels.num_places,)
            assert np.all(np.isfinite(soft)) and np.all(soft >= 0)
            assert isinstance(hard, int) and 0 <= hard < labels.num_places


def _same_targets(first: SceneLabels, second: SceneLabels, data: dict, exact: bool = True) -> None:
    for class_dir, videos in data.items():
        for video_id in videos:
            soft = first.target(class_dir, video_id, True), second.target(class_dir, video_id, True)
            assert np.array_equal(*soft) if exact else np.allclose(*soft, rtol=1e-2, atol=1e-3)
            assert first.target(class_dir, video_id, False) == second.target(class_dir, video_id, False)


@fuzz(100)
@given(data=scene_dicts())
def test_fuzz_scene_labels_dict_and_original_npy(workdir, data):
    ok, labels = outcome(lambda: SceneLabels.from_dict(data, "<fuzzed labels>"), "<fuzzed labels>")
    if ok:
        _check_scene_labels(labels, data)
    with scratch(workdir) as folder:
        save_pickled_npy(folder / "places_train.npy", data)  # the original layout, as released
        ok_file, from_file = outcome(lambda: SceneLabels.from_path(str(folder), "training"), folder)
        assert ok_file == ok
        if ok:
            _same_targets(labels, from_file, data)
            save_scene_labels_npz(folder / "places_val.npz", data)
            # The .npz holds one 'probs' array: videos stored in different float dtypes (float16 and
            # float32 here) are converted to a common one, so their means may differ in the last bits.
            _same_targets(labels, SceneLabels.from_path(str(folder), "validation"), data, exact=False)


MUTATIONS = st.sampled_from(["none", "replace", "drop", "unsigned", "reverse", "scalar", "2-D", "float"])


def mutate(draw, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Damage one or two members of an .npz: junk arrays, missing keys, odd dtypes and shapes."""
    arrays = dict(arrays)
    for _ in range(draw(st.integers(1, 2))):
        key = draw(st.sampled_from(sorted(arrays)))
        how = draw(MUTATIONS)
        value = arrays[key]
        if how == "replace":
            arrays[key] = draw(ARRAYS.filter(lambda a: a.dtype.kind != "M"))
        elif how == "drop":
            del arrays[key]
        elif how == "unsigned" and value.dtype.kind == "i":
            arrays[key] = value.astype(np.uint64)
        elif how == "reverse" and value.ndim >= 1:
            arrays[key] = value[::-1].copy()
        elif how == "scalar":
            arrays[key] = np.array(draw(st.sampled_from(["multiple", "single", "x\ny", 7, 1.5])))
        elif how == "2-D" and value.ndim == 1:
            arrays[key] = np.stack([value, value], axis=1)
        elif how == "float" and value.dtype.kind in "iu":
            arrays[key] = value.astype(np.float64)
    return arrays


@st.composite
def scene_npz_files(draw):
    """Arrays of the safe .npz, valid and then damaged (or truncated bytes)."""
    data = draw(st.fixed_dictionaries({"c": st.dictionaries(st.sampled_from(["v1", "v2", "v3"]),
                                                            scene_entries(True, 3), min_size=1, max_size=3)}))
    multiple = draw(st.booleans())
    if not multiple:
        data = {"c": {video: {"pred_cls": 1, "probs": np.full(3, 0.25, np.float32)} for video in data["c"]}}
    try:
        arrays = _flatten_scene_labels(data, "x")
    except SdnError:
        arrays = {"format": np.array("sdn-scene-labels"), "version": np.array(1), "mode": np.array("multiple")}
    return mutate(draw, arrays) if draw(st.integers(0, 3)) else arrays, draw(st.integers(0, 12))


@fuzz(60)
@given(case=scene_npz_files())
def test_fuzz_scene_labels_npz(workdir, case):
    arrays, cut = case
    with scratch(workdir) as folder:
        path = folder / "places_train.npz"
        save_npz(path, arrays)
        if cut == 0:  # truncated file
            data = path.read_bytes()
            path.write_bytes(data[:len(data) // 2])
        ok, labels = outcome(lambda: SceneLabels.from_path(str(folder), "training"), path)
        # `sdn prepare convert` reads it too (structure only; the writer validates the values): what
        # the reader accepts, convert accepts
        converted, _ = outcome(lambda: prepare_formats.load(path), path)
        if ok:
            assert converted
        if ok:
            data = {}
            for class_dir, video_id in zip(arrays["class_dirs"].tolist(), arrays["video_ids"].tolist()):
                data.setdefault(class_dir, {})[video_id] = None
            _check_scene_labels(labels, data)


def test_scene_label_keys_are_abbreviated_in_messages():
    """Regression: a deeply nested tuple key made the message's repr raise RecursionError."""
    key: Any = ()
    for _ in range(5000):
        key = (key,)
    for data in ({key: {}}, {"cls": {key: {"pred_cls": 1, "probs": np.ones(2)}}}):
        with pytest.raises(SdnError, match="not a string") as error:
            SceneLabels.from_dict(data, "<labels>")
        assert_clear(error.value, "<labels>")
        assert len(str(error.value)) < 300


@pytest.mark.parametrize("where", ["class", "video"])
def test_keys_with_a_nul_character_are_refused(where):
    """Regression: NumPy strings drop trailing NULs, so 'v\\x00' silently became 'v' in the safe .npz
    (and in the detections' in-memory arrays). No folder name holds a NUL; such keys are refused."""
    class_dir, video_id = ("c\x00", "v") if where == "class" else ("c", "v\x00")
    scene = {class_dir: {video_id: {"pred_cls": 0, "probs": np.ones(2)}}}
    detections = {class_dir: {video_id: {1: {"human_boxes": np.zeros((0, 5), np.float32)}}}}
    for build, data in ((SceneLabels.from_dict, scene), (HumanDetections.from_dict, detections)):
        with pytest.raises(SdnError, match="not a string naming a folder") as error:
            build(data, "<fuzzed>")
        assert_clear(error.value, "<fuzzed>")


def test_scene_labels_too_large_for_float32(tmp_path):
    """Regression: float64 probs of 1e300 passed the check and became inf soft targets."""
    for value in ({"pred_cls": 0, "probs": np.array([1e300, 0.0])},
                  {"pred_cls": np.array([0, 0]), "probs": np.full((2, 2), 1.7e308)}):
        with pytest.raises(SdnError, match="too large for float32") as error:
            SceneLabels.from_dict({"c": {"v": value}}, "<labels>")
        assert_clear(error.value, "<labels>")


def _scene_npz(tmp_path: Path, **changes) -> Path:
    arrays = {"format": np.array("sdn-scene-labels"), "version": np.array(1), "mode": np.array("multiple"),
              "class_dirs": np.array(["c", "c"]), "video_ids": np.array(["v1", "v2"]),
              "frame_offsets": np.array([0, 1, 2]), "pred_cls": np.array([0, 1]), "probs": np.full((2, 2), 0.5)}
    arrays.update(changes)
    save_npz(tmp_path / "labels_train.npz", arrays)
    return tmp_path / "labels_train.npz"


def test_scene_npz_single_mode_with_2d_pred_cls(tmp_path):
    """Regression: a 2-D 'pred_cls' in single mode raised ValueError from .item()."""
    path = _scene_npz(tmp_path, mode=np.array("single"), pred_cls=np.zeros((2, 2), np.int64), probs=np.ones((2, 2)))
    with pytest.raises(SdnError, match="single mode") as error:
        SceneLabels.from_path(str(tmp_path), "training")
    assert_clear(error.value, path)


def test_scene_npz_decreasing_unsigned_offsets(tmp_path):
    """Regression: np.diff of unsigned offsets wraps around, so decreasing offsets were not noticed."""
    path = _scene_npz(tmp_path, class_dirs=np.array(["c", "c", "c"]), video_ids=np.array(["a", "b", "d"]),
                      frame_offsets=np.array([0, 3, 1, 3], np.uint64), pred_cls=np.array([0, 1, 1]),
                      probs=np.full((3, 2), 0.5))
    with pytest.raises(SdnError, match="frame_offsets") as error:
        SceneLabels.from_path(str(tmp_path), "training")
    assert_clear(error.value, path)


def test_npz_format_message_is_one_line(tmp_path):
    """Regression: a 2-D 'format' array was printed with its line breaks."""
    path = _scene_npz(tmp_path, format=np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(SdnError, match="expected format") as error:
        SceneLabels.from_path(str(tmp_path), "training")
    assert_clear(error.value, path)


# ----------------------------------------------------------------------------------------------
# Human detections and masking

COORDINATES = st.one_of(st.floats(-20, 30, width=32), st.sampled_from([-3e38, 3e38, -1.0, 0.0, 1e9]))


@st.composite
def box_arrays(draw):
    """Boxes of one frame: valid [N, 5] (maybe inverted or off-frame, as the original allowed), or damaged."""
    n = draw(st.integers(0, 3))
    boxes = np.array([[draw(COORDINATES) for _ in range(4)] + [draw(st.floats(0, 1, width=32))] for _ in range(n)],
                     dtype=np.float32).reshape(n, 5)
    kind = draw(st.sampled_from(["nan", "1-D", "wide", "float64", "list", "junk", "empty 1-D"])) \
        if draw(damage()) else "good"
    if kind == "nan" and n:
        boxes[draw(st.integers(0, n - 1)), draw(st.integers(0, 4))] = draw(st.sampled_from([np.nan, np.inf]))
    elif kind == "1-D":
        boxes = boxes.reshape(-1)
    elif kind == "wide":
        boxes = np.concatenate([boxes, np.zeros((n, 2), np.float32)], axis=1)
    elif kind == "float64":
        with np.errstate(over="ignore"):
            boxes = boxes.astype(np.float64) * draw(st.sampled_from([1.0, 1e300]))
    elif kind == "list":
        boxes = boxes.tolist()
    elif kind == "junk":
        return draw(JUNK_VALUES)
    elif kind == "empty 1-D":
        boxes = np.zeros((0,), np.float32)
    return boxes


FRAME_KEYS = st.one_of(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6).map(np.int64), st.integers(),
                       HUGE_INTS, st.booleans(), st.floats(), NAMES, st.just(np.uint64(2 ** 64 - 1)))


@st.composite
def detection_dicts(draw):
    frames = st.dictionaries(maybe(st.integers(1, 6), FRAME_KEYS),
                             maybe(st.fixed_dictionaries({"human_boxes": box_arrays()})), max_size=4)
    videos = st.dictionaries(maybe(KEY_NAMES, KEYS), maybe(frames), max_size=2)
    data = draw(st.dictionaries(maybe(LABELS, KEYS), maybe(videos), min_size=1, max_size=2))
    return draw(maybe(st.just(data), JUNK_VALUES))


def _check_detections(dets: HumanDetections, data: dict, height: int, width: int) -> None:
    for class_dir, videos in data.items():
        for video_id, frames in videos.items():
            assert dets.has(class_dir, video_id)
            per_frame = [dets.boxes(class_dir, video_id, int(index)) for index in frames]
            # the original's filter: frames with a box scoring > 0.3 (in float32), over n_frames, >= 0.7
            with_person = sum(bool(np.any(boxes[:, 4] > np.float32(0.3))) for boxes in per_frame)
            n_frames = max(1, len(frames))
            assert dets.has_enough_detections(class_dir, video_id, n_frames) is (with_person / n_frames >= 0.7)
            for boxes in per_frame:
                assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 5
                assert np.all(np.isfinite(boxes))
            _check_masking(per_frame, height, width)


def _check_masking(per_frame: list[np.ndarray], height: int, width: int) -> None:
    """Accepted boxes (inverted, off-frame, huge) must be drawable without a crash, as PIL drew them."""
    if not per_frame:
        return
    generator = torch.Generator().manual_seed(len(per_frame))
    frames = torch.randint(0, 256, (len(per_frame), 3, height, width), dtype=torch.uint8, generator=generator)
    masked, n_masked = mask_humans(frames, per_frame, apply=True)
    assert masked.shape == frames.shape and masked.dtype == torch.uint8
    # frames with a box scoring >= 0.3 count, on the frame or not
    assert n_masked == sum(bool(np.any(boxes[:, 4] >= np.float32(0.3))) for boxes in per_frame if boxes.size)
    background = mask_background(frames, per_frame, apply=True)
    assert background.shape == frames.shape and background.dtype == torch.uint8
    for t, boxes in enumerate(per_frame):
        if len(boxes) == 0:
            assert torch.equal(masked[t], frames[t]) and torch.equal(background[t], frames[t])
        for box in boxes:
            region = box_slices(box, height, width)
            if region is not None:
                assert 0 <= region[0].start < min(region[0].stop, height)
                assert 0 <= region[1].start < min(region[1].stop, width)


@fuzz(100)
@given(data=detection_dicts(), size=st.tuples(st.integers(1, 9), st.integers(1, 9)))
def test_fuzz_detections_dict_and_original_npy(workdir, data, size):
    ok, dets = outcome(lambda: HumanDetections.from_dict(data, "<fuzzed detections>"), "<fuzzed detections>")
    if ok:
        _check_detections(dets, data, *size)
    with scratch(workdir) as folder:
        original = folder / "detection_train_merged_rearranged.npy"
        save_pickled_npy(original, data)
        ok_file, from_file = outcome(lambda: HumanDetections.from_path(str(folder), "training"), original)
        assert ok_file == ok
        if ok:
            _check_detections(from_file, data, *size)
            save_detections_npz(folder / "detection_val.npz", data)
            _check_detections(HumanDetections.from_path(str(folder), "validation"), data, *size)


@st.composite
def detection_npz_files(draw):
    frames = st.dictionaries(st.integers(1, 6), st.fixed_dictionaries({"human_boxes": box_arrays()}), max_size=3)
    data = draw(st.dictionaries(st.sampled_from(["c1", "c2"]), st.dictionaries(st.sampled_from(["v1", "v2"]), frames,
                                                                               max_size=2), max_size=2))
    try:
        arrays = _flatten_detections(data, "x")
    except SdnError:
        arrays = {"format": np.array("sdn-human-detections"), "version": np.array(1)}
    return mutate(draw, arrays) if draw(st.integers(0, 3)) else arrays, draw(st.integers(0, 12))


@fuzz(60)
@given(case=detection_npz_files(), size=st.tuples(st.integers(1, 9), st.integers(1, 9)))
def test_fuzz_detections_npz(workdir, case, size):
    arrays, cut = case
    with scratch(workdir) as folder:
        path = folder / "detection_train.npz"
        save_npz(path, arrays)
        if cut == 0:
            data = path.read_bytes()
            path.write_bytes(data[:len(data) // 2])
        ok, dets = outcome(lambda: HumanDetections.from_path(str(folder), "training"), path)
        converted, _ = outcome(lambda: prepare_formats.load(path), path)
        if ok:
            assert converted  # what the reader accepts, `sdn prepare convert` accepts
        if ok:
            data: dict = {}
            offsets = arrays["video_frame_offsets"]
            for row, (class_dir, video_id) in enumerate(zip(arrays["class_dirs"].tolist(),
                                                            arrays["video_ids"].tolist())):
                frames = arrays["frame_indices"][int(offsets[row]):int(offsets[row + 1])]
                data.setdefault(class_dir, {})[video_id] = {int(index): None for index in frames}
            _check_detections(dets, data, *size)


@fuzz(50)
@given(boxes=st.lists(st.lists(st.lists(COORDINATES, min_size=5, max_size=5), max_size=3), min_size=1, max_size=3),
       size=st.tuples(st.integers(1, 9), st.integers(1, 9)), score_th=st.floats(0, 1))
def test_fuzz_masking_with_legal_boxes(boxes, size, score_th):
    """Inverted, off-frame and huge boxes are legal (see the sdn.data.detections docstring)."""
    per_frame = [np.array(frame, dtype=np.float32).reshape(-1, 5) for frame in boxes]
    _check_masking(per_frame, *size)
    frames = torch.full((len(per_frame), 3, *size), 7, dtype=torch.uint8)
    assert mask_humans(frames, per_frame, apply=True, score_th=score_th)[0].shape == frames.shape


def test_detection_keys_are_abbreviated_in_messages():
    """Regression: a deeply nested tuple as video or frame key made the message's repr recurse."""
    key: Any = ()
    for _ in range(5000):
        key = (key,)
    for data in ({key: {}}, {"c": {key: {}}}, {"c": {"v": {key: {"human_boxes": np.zeros((0, 5))}}}}):
        with pytest.raises(SdnError, match="is not") as error:
            HumanDetections.from_dict(data, "<dets>")
        assert_clear(error.value, "<dets>")
        assert len(str(error.value)) < 300


@pytest.mark.parametrize("frame", [2 ** 63, 2 ** 70, -(2 ** 63) - 1, np.uint64(2 ** 64 - 1)])
def test_detection_frame_key_beyond_int64(frame):
    """Regression: a frame key of 2**70 raised OverflowError while flattening to int64."""
    with pytest.raises(SdnError, match="frame key .* is not an integer") as error:
        HumanDetections.from_dict({"c": {"v": {frame: {"human_boxes": np.zeros((0, 5))}}}}, "<dets>")
    assert_clear(error.value, "<dets>")


def _detections_npz(tmp_path: Path, **changes) -> Path:
    arrays = {"format": np.array("sdn-human-detections"), "version": np.array(1),
              "class_dirs": np.array(["c", "c"]), "video_ids": np.array(["a", "b"]),
              "video_frame_offsets": np.array([0, 2, 3]), "frame_indices": np.array([1, 2, 1]),
              "frame_box_offsets": np.array([0, 1, 1, 2]), "boxes": np.ones((2, 5), np.float32)}
    arrays.update(changes)
    save_npz(tmp_path / "detection_train.npz", arrays)
    return tmp_path / "detection_train.npz"


def test_detections_npz_decreasing_unsigned_offsets(tmp_path):
    """Regression: decreasing uint64 offsets passed (np.diff wraps) and then raised IndexError."""
    path = _detections_npz(tmp_path, video_frame_offsets=np.array([0, 3, 2, 3], np.uint64),
                           class_dirs=np.array(["c", "c", "c"]), video_ids=np.array(["a", "b", "d"]))
    with pytest.raises(SdnError, match="offset arrays") as error:
        HumanDetections.from_path(str(tmp_path), "training")
    assert_clear(error.value, path)


def test_detections_npz_decreasing_unsigned_frames(tmp_path):
    """Regression: unsorted uint64 frame indices passed the 'strictly increasing' check (np.diff wraps)."""
    path = _detections_npz(tmp_path, frame_indices=np.array([2, 1, 1], np.uint64))
    with pytest.raises(SdnError, match="strictly increasing") as error:
        HumanDetections.from_path(str(tmp_path), "training")
    assert_clear(error.value, path)


# ----------------------------------------------------------------------------------------------
# safe_pickle: hostile globals, damaged pickles, bad .npy headers


def _command(marker: str) -> str:
    return f"touch {marker}"


def _code(marker: str) -> str:
    return f"open({marker!r}, 'w').close()"


# (module, name, arguments that would create the marker file if the call ever ran)
HOSTILE_GLOBALS: list[tuple[str, str, Callable[[str], tuple]]] = [
    ("os", "system", lambda m: (_command(m),)),
    ("posix", "system", lambda m: (_command(m),)),
    ("builtins", "eval", lambda m: (_code(m),)),
    ("builtins", "exec", lambda m: (_code(m),)),
    ("__builtin__", "eval", lambda m: (_code(m),)),
    ("builtins", "open", lambda m: (m, "w")),
    ("io", "open", lambda m: (m, "w")),
    ("subprocess", "Popen", lambda m: (["touch", m],)),
    ("subprocess", "call", lambda m: (["touch", m],)),
    ("subprocess", "check_output", lambda m: (["touch", m],)),
    ("shutil", "copyfile", lambda m: (__file__, m)),
    ("runpy", "run_path", lambda m: (__file__,)),
    ("numpy", "save", lambda m: (m, 0)),
    ("numpy", "savetxt", lambda m: (m, [1.0])),
    ("numpy", "savez", lambda m: (m,)),
    ("numpy", "load", lambda m: (m,)),
    ("numpy", "fromfile", lambda m: (m,)),
    ("numpy.lib.npyio", "save", lambda m: (m, 0)),
    ("numpy.testing._private.utils", "runstring", lambda m: (_code(m), {})),
    ("numpy.core.multiarray", "fromfile", lambda m: (m,)),
    ("numpy._core.multiarray", "frombuffer", lambda m: (b"",)),
    ("numpy.core.multiarray", "_reconstruct.__globals__", lambda m: ()),
    ("numpy._core.multiarray", "scalar.__self__", lambda m: ()),
    ("numpy", "ndarray.tofile", lambda m: ()),
    ("builtins", "getattr", lambda m: ("os", "system")),
    ("builtins", "__import__", lambda m: ("os",)),
    ("torch", "save", lambda m: (0, m)),
    ("pickle", "loads", lambda m: (b"",)),
    ("collections", "OrderedDict.fromkeys", lambda m: ((m,),)),
]


def _pickle_args(args: tuple, protocol: int) -> bytes:
    """The opcodes that push ``args`` as a tuple (no STOP, no PROTO)."""
    body = pickle.dumps(args, protocol=protocol)
    if protocol >= 2:
        body = body[2:]
    if protocol >= 4 and body[:1] == pickle.FRAME:
        body = body[9:]
    return body[:-1]  # drop STOP


def _hostile_pickle(module: str, name: str, args: tuple, encoding: str, protocol: int) -> bytes:
    """A pickle calling ``module.name(*args)``, through GLOBAL+REDUCE, STACK_GLOBAL, INST or OBJ."""
    header = b"\x80" + bytes([protocol]) if protocol >= 2 else b""
    if encoding == "stack_global":
        pushed = (pickle.SHORT_BINUNICODE + bytes([len(module.encode())]) + module.encode()
                  + pickle.SHORT_BINUNICODE + bytes([len(name.encode())]) + name.encode() + pickle.STACK_GLOBAL)
        return b"\x80\x04" + pushed + _pickle_args(args, 4) + pickle.REDUCE + pickle.STOP
    if encoding == "inst":  # protocol 0: MARK args INST module name
        items = b"".join(pickle.dumps(arg, protocol=0)[:-1] for arg in args)
        return pickle.MARK + items + b"i" + module.encode() + b"\n" + name.encode() + b"\n" + pickle.STOP
    if encoding == "obj":  # protocol 1: MARK class args OBJ
        items = b"".join(pickle.dumps(arg, protocol=1)[:-1] for arg in args)
        glob = b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        return pickle.MARK + glob + items + pickle.OBJ + pickle.STOP
    glob = b"c" + module.encode() + b"\n" + name.encode() + b"\n"
    return header + glob + _pickle_args(args, protocol) + pickle.REDUCE + pickle.STOP


def _npy(payload: bytes, version: tuple[int, int] = (1, 0), descr: str = "|O") -> bytes:
    """A .npy file: header for a 0-d array of ``descr``, then ``payload``."""
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": ()}
    if version == (1, 0):
        npy_format.write_array_header_1_0(buffer, header)
    else:
        npy_format.write_array_header_2_0(buffer, header)
    return buffer.getvalue() + payload


class _Reduce:
    """Pickles as a call of ``function(*args)`` wherever it sits in a structure."""

    def __init__(self, function, args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _resolve(module: str, name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core is a deprecated alias
        target: Any = __import__(module, fromlist=["_"])
        for part in name.split("."):
            target = getattr(target, part)
    return target


@fuzz(100)
@given(hostile=st.sampled_from(HOSTILE_GLOBALS), encoding=st.sampled_from(["reduce", "stack_global", "inst", "obj",
                                                                          "embedded"]),
       protocol=st.integers(0, 5), version=st.sampled_from([(1, 0), (2, 0)]),
       where=st.sampled_from(["top", "class", "video", "probs", "list", "key"]),
       reader=st.sampled_from(["raw", "scene", "detections"]))
def test_fuzz_pickles_naming_disallowed_globals_never_run(workdir, hostile, encoding, protocol, version, where, reader):
    module, name, make_args = hostile
    with scratch(workdir) as folder:
        marker = folder / "pwned.npy"  # numpy.save keeps a .npy name as is
        args = make_args(str(marker))
        if encoding == "embedded":
            try:
                function = _resolve(module, name)
            except (ImportError, AttributeError):
                return
            call = _Reduce(function, args)
            structure = {"top": call, "class": {"c": call}, "video": {"c": {"v": call}},
                         "probs": {"c": {"v": {"pred_cls": 1, "probs": call}}}, "list": {"c": [1, call]},
                         "key": {"c": {"v": {1: {"human_boxes": [call]}}}}}[where]
            holder = np.empty((), dtype=object)
            holder[()] = structure
            try:
                content = _npy(pickle.dumps(holder, protocol=protocol), version)
            except (pickle.PicklingError, AttributeError):
                return  # not picklable by reference under this protocol
        else:
            content = _npy(_hostile_pickle(module, name, args, encoding, protocol), version)
        target = {"raw": folder / "labels.npy", "scene": folder / "places_train.npy",
                  "detections": folder / "detection_train_merged_rearranged.npy"}[reader]
        target.write_bytes(content)
        call_reader = {"raw": lambda: load_pickled_npy(target),
                       "scene": lambda: SceneLabels.from_path(str(folder), "training"),
                       "detections": lambda: HumanDetections.from_path(str(folder), "training")}[reader]
        with pytest.raises(SdnError) as error:
            call_reader()
        assert_clear(error.value, target)
        assert not marker.exists(), f"{module}.{name} ran"
        assert not (folder / "pwned.npy.npy").exists() and len(os.listdir(folder)) == 1


def test_hostile_global_names_are_quoted_on_one_line(tmp_path):
    """Regression: a STACK_GLOBAL name may hold a line break; it was printed as is."""
    path = tmp_path / "labels.npy"
    path.write_bytes(_npy(_hostile_pickle("os\nx", "system\ny", ("true",), "stack_global", 4)))
    with pytest.raises(SdnError, match="refusing to load global") as error:
        load_pickled_npy(path)
    assert_clear(error.value, path)


def test_deeply_nested_dtype_descriptor_is_a_clear_error(tmp_path):
    """Regression: np.dtype (an allowed global) of a deeply nested descriptor raised RecursionError."""
    depth = 20_000
    payload = (b"cnumpy\ndtype\n(" + b"((S'a'\n" * depth + b"S'f8'\n" + b"tl" * depth + b"tR.")
    path = tmp_path / "labels.npy"
    path.write_bytes(_npy(payload))
    with pytest.raises(SdnError, match="not a readable .npy pickle") as error:
        load_pickled_npy(path)
    assert_clear(error.value, path)


def test_unbalanced_npy_header_is_a_clear_error(tmp_path):
    """Regression: a header with an unbalanced bracket made NumPy's parser raise tokenize.TokenError."""
    path = tmp_path / "labels.npy"
    header = b"{'descr': '|O'[ 'fortran_order': False, 'shape': (), }" + b" " * 60 + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"N.")
    with pytest.raises(SdnError, match="bad header") as error:
        load_pickled_npy(path)
    assert_clear(error.value, path)


def test_oversized_npy_header_message_is_one_line(tmp_path):
    """Regression: NumPy's 'header is large' error spans three lines; it was passed on whole."""
    path = tmp_path / "labels.npy"
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (), }" + b" " * 20_000 + b"\n"
    path.write_bytes(b"\x93NUMPY\x02\x00" + struct.pack("<I", len(header)) + header)
    with pytest.raises(SdnError) as error:
        load_pickled_npy(path)
    assert_clear(error.value, path)


def _valid_pickled_npy(draw) -> bytes:
    data = draw(st.one_of(scene_dicts(), detection_dicts()))
    holder = np.empty((), dtype=object)
    holder[()] = data
    return _npy(pickle.dumps(holder, protocol=draw(st.integers(0, 5))), draw(st.sampled_from([(1, 0), (2, 0)])))


@st.composite
def damaged_npy_files(draw):
    content = _valid_pickled_npy(draw)
    how = draw(st.sampled_from(["truncated", "flipped", "inserted", "as is"]))
    if how == "truncated":
        return content[:draw(st.integers(0, len(content) - 1))]
    data = bytearray(content)
    if how == "flipped":
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif how == "inserted":
        position = draw(st.integers(0, len(data)))
        data[position:position] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@pytest.mark.slow
@fuzz(100)
@given(content=damaged_npy_files(), reader=st.sampled_from(["raw", "scene", "detections"]))
def test_fuzz_truncated_and_corrupted_pickles(workdir, content, reader):
    with scratch(workdir) as folder:
        target = {"raw": folder / "labels.npy", "scene": folder / "places_train.npy",
                  "detections": folder / "detection_train_merged_rearranged.npy"}[reader]
        target.write_bytes(content)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NumPy may warn about odd headers
            if reader == "raw":
                outcome(lambda: load_pickled_npy(target), target)
            elif reader == "scene":
                ok, labels = outcome(lambda: SceneLabels.from_path(str(folder), "training"), target, folder)
                if ok:
                    assert len(labels) >= 1 and labels.num_places >= 1
            else:
                outcome(lambda: HumanDetections.from_path(str(folder), "training"), target)
            outcome(lambda: prepare_formats.load(target), target)
        assert os.listdir(folder) == [target.name]


# Found by the property above: a dtype state NumPy's __setstate__ fails on with a SystemError.
MALFORMED_DTYPE_STATE = (
    b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (), }" + b" " * 63 + b"\n"
    b"\x80\x04\x95\xf4\x00\x00\x00\x00\x00\x00\x00\x8c\x16numpy._core.multiarray\x94\x8c\x0c_reconstruct\x94\x93\x94"
    b"\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94K\x00\x85\x94C\x01b\x94\x87\x94R\x94(K\x01)h\x03\x8c\x05dtype\x94"
    b"\x93\x94\x8c\x02O8\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01|\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?t\x94b\x89]"
    b"\x94}\x94\x8c\x01a\x94}\x94\x8c\x02v1\x94}\x94(\x8c\x08pred_cls\x94K\x00\x8c\x05probs\x94h\x02h\x05K\x00\x85"
    b"\x94h\x07\x87\x94R\x94(K\x01K\x01\x85\x94h\x0b\x8c\x02f4\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<2\x94NNN"
    b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94b\x89C\x04\x00\x00\x00\x00\x94t\x94bussat\x94b.")


def test_a_dtype_state_numpy_cannot_set_is_a_clear_error(tmp_path):
    path = tmp_path / "labels.npy"
    path.write_bytes(MALFORMED_DTYPE_STATE)
    with pytest.raises(SdnError, match="not a readable .npy pickle") as error:
        load_pickled_npy(path)
    assert_clear(error.value, path)


HEADER_VALUES = {
    "descr": st.sampled_from(["'|O'", "'<f4'", "'O'", "\"[('a', '|O')]\"", "[('a', '|O')]", "'|V8'", "'x'", "1",
                              "__import__('os').system('touch MARKER')", "open('MARKER', 'w')", "'<U2'"]),
    "fortran_order": st.sampled_from(["False", "True", "1", "'x'", "None"]),
    "shape": st.sampled_from(["()", "(1,)", "(-1,)", "(10**20,)", "(2, 3)", "'a'", "(1.5,)", "(2**62, 2**62)",
                              "(99999999999999999999,)", "[1]"]),
}


@st.composite
def npy_files(draw):
    """.npy files with hand-made headers (hostile expressions, odd values, wrong lengths) or random bytes.

    Returns a function of the marker path, which the hostile header expressions would create.
    """
    if draw(st.integers(0, 4)) == 0:
        content = draw(st.one_of(st.binary(max_size=64), st.binary(max_size=16).map(lambda b: b"\x93NUMPY" + b)))
        return lambda marker: content
    valid = {"descr": "'|O'", "fortran_order": "False", "shape": "()"}
    parts = [f"'{key}': {draw(maybe(st.just(valid[key]), value))}" for key, value in HEADER_VALUES.items()
             if draw(maybe(st.just(True), st.booleans()))]
    if draw(damage()):
        parts.append("'extra': 1")
    text = "{" + ", ".join(parts) + ", }" + " " * draw(st.integers(0, 8)) + "\n"
    major = draw(maybe(st.sampled_from([1, 2]), st.sampled_from([3, 0, 255])))
    slack = draw(maybe(st.just(0), st.sampled_from([-1, 1, 100, 60_000])))
    holder = np.empty((), dtype=object)
    holder[()] = {"c": {"v": {"pred_cls": 0, "probs": np.ones(2)}}}
    payload = draw(st.sampled_from([pickle.dumps(holder), pickle.dumps({"c": 1}), b"", np.ones(3).tobytes(),
                                    pickle.dumps(np.arange(3))]))

    def build(marker: str) -> bytes:
        header = text.replace("MARKER", marker).encode()
        length = max(0, min(len(header) + slack, 65535 if major == 1 else 2 ** 32 - 1))
        return b"\x93NUMPY" + bytes([major, 0]) + struct.pack("<H" if major == 1 else "<I", length) + header + payload
    return build


@fuzz(80)
@given(build=npy_files())
def test_fuzz_npy_headers_and_random_bytes(workdir, build):
    with scratch(workdir) as folder:
        marker = folder / "MARKER"
        content = build(str(marker))
        target = folder / "places_train.npy"
        target.write_bytes(content)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ok, value = outcome(lambda: load_pickled_npy(target), target)
            outcome(lambda: SceneLabels.from_path(str(folder), "training"), target, folder)
            npz = folder / "places_val.npz"
            npz.write_bytes(content)
            outcome(lambda: load_npz(npz, ("probs",), "sdn-scene-labels", 1), npz)
        assert not marker.exists()


# ----------------------------------------------------------------------------------------------
# Checkpoints


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(1, 2, 1), nn.BatchNorm3d(2), nn.Flatten(), nn.Linear(2, 3))


def _checkpoint_bytes(**extra) -> bytes:
    buffer = io.BytesIO()
    torch.save({"epoch": 2, "arch": "resnet-10", "state_dict": {f"module.{k}": v for k, v in
                                                                _model().state_dict().items()}, **extra}, buffer)
    return buffer.getvalue()


GOOD_CHECKPOINT = _checkpoint_bytes()


@fuzz(40)
@given(how=st.sampled_from(["as is", "truncated", "random zip", "hostile", "not a dict"]),
       cut=st.floats(0, 1), noise=st.binary(max_size=64), hostile=st.sampled_from(HOSTILE_GLOBALS[:8]))
def test_fuzz_checkpoint_files(workdir, how, cut, noise, hostile):
    with scratch(workdir) as folder:
        path, marker = folder / "save_1.pth", folder / "pwned.npy"
        if how == "as is":
            content = GOOD_CHECKPOINT
        elif how == "truncated":
            content = GOOD_CHECKPOINT[:int(cut * (len(GOOD_CHECKPOINT) - 1))]
        elif how == "random zip":  # random bytes that are not a zip: see test_checkpoint_garbage_bytes
            content = b"PK\x03\x04" + noise
        elif how == "hostile":
            module, name, make_args = hostile
            try:
                function = _resolve(module, name)
            except (ImportError, AttributeError):
                return
            content = _checkpoint_bytes(extra=_Reduce(function, make_args(str(marker))))
        else:
            buffer = io.BytesIO()
            torch.save([torch.zeros(1)], buffer)
            content = buffer.getvalue()
        path.write_bytes(content)
        ok, checkpoint = outcome(lambda: read_checkpoint(str(path)), path)
        # only the intact file loads: every truncation, non-zip, hostile global and non-dict is refused
        assert ok == (how == "as is")
        if ok:
            assert checkpoint["epoch"] == 2 and checkpoint["arch"] == "resnet-10"
            assert {key: value.tolist() for key, value in checkpoint["state_dict"].items()} == \
                {f"module.{key}": value.tolist() for key, value in _model().state_dict().items()}
        assert not marker.exists() and os.listdir(folder) == ["save_1.pth"]


TARGET_STATE = _model().state_dict()


@st.composite
def state_dicts(draw):
    """Hostile state dicts with string keys and dense CPU tensors (other kinds: see the tests below)."""
    state: dict[str, Any] = {}
    for key, value in TARGET_STATE.items():
        how = draw(st.sampled_from(["same"] * 3 + ["missing", "shape", "dtype", "not a tensor", "nan", "prefix"]))
        if how == "missing":
            continue
        if how == "shape":
            value = torch.zeros(draw(st.lists(st.integers(0, 3), max_size=3)))
        elif how == "dtype":
            value = value.to(draw(st.sampled_from([torch.int64, torch.bool, torch.float64, torch.float16])))
        elif how == "not a tensor":
            value = draw(st.one_of(JUNK, st.just(value.numpy())))
        elif how == "nan":
            value = torch.full_like(value, float("nan")) if value.is_floating_point() else value
        state[("module." + key) if how == "prefix" else key] = value
    for _ in range(draw(st.integers(0, 2))):  # printable names: see test_checkpoint_key_with_a_line_break
        state[draw(NAMES.filter(str.isprintable))] = torch.zeros(draw(st.lists(st.integers(0, 3), max_size=2)))
    layout = draw(st.sampled_from(["wrapped", "bare", "junk state"]))
    if layout == "bare":
        return state
    return {"epoch": 1, "state_dict": draw(JUNK) if layout == "junk state" else state}


@fuzz(60)
@given(checkpoint=state_dicts(), strict=st.booleans())
def test_fuzz_checkpoint_state_dicts(checkpoint, strict):
    model = _model()
    shapes = {key: value.shape for key, value in model.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "only N of M entries matched", "no 'arch' entry"
        if strict:
            outcome(lambda: load_for_resume(model, checkpoint, "save_7.pth"), "save_7.pth")
        else:
            outcome(lambda: load_pretrained(model, checkpoint, "save_7.pth", verbose=False), "save_7.pth")
    assert {key: value.shape for key, value in model.state_dict().items()} == shapes


@pytest.mark.parametrize("resume", [False, True])
def test_checkpoint_with_non_string_keys(resume):
    """Both loads refuse a non-string key (it names no parameter) before touching the model."""
    checkpoint = {"state_dict": {**TARGET_STATE, 7: torch.zeros(1)}}
    model = _model()
    with pytest.raises(SdnError, match="'state_dict' key 7 is not a parameter name") as error:
        if resume:
            load_for_resume(model, checkpoint, "x.pth")
        else:
            load_pretrained(model, checkpoint, "x.pth", verbose=False)
    assert_clear(error.value, "x.pth")


def test_checkpoint_key_with_a_line_break():
    """A strict load with an unexpected key is an error; the key is quoted, so the message stays one line."""
    checkpoint = {"state_dict": {**TARGET_STATE, "new\nline": torch.zeros(1)}}
    with pytest.raises(SdnError, match=r"does not fit the model .*\(unexpected 'new\\nline'\)") as error:
        load_for_resume(_model(), checkpoint, "x.pth")
    assert_clear(error.value, "x.pth")


@pytest.mark.parametrize("kind", ["sparse", "meta"])
def test_checkpoint_with_sparse_or_meta_tensors(kind):
    bias = torch.zeros(2).to_sparse() if kind == "sparse" else torch.zeros(2, device="meta")
    with pytest.raises(SdnError, match="'state_dict' entry 0.bias is not a dense tensor with data") as error:
        load_for_resume(_model(), {"state_dict": {**TARGET_STATE, "0.bias": bias}}, "x.pth")
    assert_clear(error.value, "x.pth")


def _legacy_checkpoint_cuts() -> list[tuple[int, bytes]]:
    """(cut, the first ``cut`` bytes) of a legacy-format checkpoint, every 7th length short of the whole."""
    buffer = io.BytesIO()
    torch.save({"state_dict": _model().state_dict()}, buffer, _use_new_zipfile_serialization=False)
    data = buffer.getvalue()
    return [(cut, data[:cut]) for cut in range(0, len(data), 7)]


def test_legacy_checkpoint_truncated(tmp_path):
    """Every truncated file is refused with a clear error naming it (none loads)."""
    path = tmp_path / "save_1.pth"
    for cut, content in _legacy_checkpoint_cuts():
        path.write_bytes(content)
        with pytest.raises(SdnError) as error:
            read_checkpoint(str(path))
        assert_clear(error.value, path)


def test_truncated_legacy_checkpoint_is_called_unreadable(tmp_path):
    path = tmp_path / "save_1.pth"
    misdiagnosed = []
    for cut, content in _legacy_checkpoint_cuts():
        path.write_bytes(content)
        with pytest.raises(SdnError) as error:
            read_checkpoint(str(path))
        if "not a readable checkpoint" not in str(error.value) or "--allow_pickle" in str(error.value):
            misdiagnosed.append(cut)
    assert misdiagnosed == []


@pytest.mark.parametrize("content", [b"X", b"J\x00", b"\x80\x02X\x01"])
def test_checkpoint_garbage_bytes(tmp_path, content):
    path = tmp_path / "save_1.pth"
    path.write_bytes(content)
    with pytest.raises(SdnError, match="not a readable checkpoint") as error:
        read_checkpoint(str(path))
    assert_clear(error.value, path)


@pytest.mark.parametrize("legacy", [False, True])
def test_checkpoint_with_flipped_bytes(tmp_path, legacy):
    import random

    buffer = io.BytesIO()
    torch.save({"state_dict": _model().state_dict()}, buffer, _use_new_zipfile_serialization=not legacy)
    good, rng, path = buffer.getvalue(), random.Random(0), tmp_path / "save_1.pth"
    for _ in range(300):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcome(lambda: read_checkpoint(str(path)), path)


# ----------------------------------------------------------------------------------------------
# Evaluation: val.json predictions and ground truth


@st.composite
def prediction_files(draw):
    scores = maybe(st.floats(0, 1), st.one_of(st.floats(), st.integers(), HUGE_INTS))
    rows = st.lists(maybe(st.fixed_dictionaries({"label": maybe(st.sampled_from(["a", "b", "c", "d"])),
                                                 "score": scores})), max_size=4)
    results = draw(st.dictionaries(maybe(st.sampled_from(["v1", "v2", "abcdefghijk"]), NAMES), maybe(rows),
                                   max_size=4))
    return draw(damaged(maybe(st.fixed_dictionaries({"results": maybe(st.just(results))}))))


@st.composite
def ground_truth_files(draw, dataset: str):
    if dataset == "diving48":
        vocab = draw(maybe(st.lists(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=1), max_size=3)))
        items = draw(maybe(st.lists(maybe(st.fixed_dictionaries({
            "vid_name": maybe(st.sampled_from(["v1", "v2", "abcdefghijk"]), NAMES),
            "label": maybe(st.integers(0, max(0, len(vocab) - 1) if isinstance(vocab, list) else 0),
                           st.integers(-1, 3))})), min_size=1, max_size=4)))
        return {"Diving48_vocab.json": draw(damaged(st.just(vocab))),
                "Diving48_test.json": draw(damaged(st.just(items)))}
    keys = maybe(st.sampled_from(["v1", "v2", "abcdefghijk"]).map(lambda name: f"{name}_000001_000010"), NAMES)
    database = draw(st.dictionaries(keys, maybe(st.fixed_dictionaries({
        "subset": maybe(st.sampled_from(["validation", "validation", "training"]), st.sampled_from(SUBSETS)),
        "annotations": maybe(st.fixed_dictionaries({"label": maybe(st.sampled_from(["a", "b", "c"]))}))})),
        max_size=4))
    return {"annotation.json": draw(damaged(maybe(st.fixed_dictionaries({"database": maybe(st.just(database))}))))}


@fuzz(100)
@given(predictions=prediction_files(), dataset=st.sampled_from(["diving48", "ucf101", "hmdb51", "kinetics"]),
       data=st.data(), top_k=st.integers(1, 5))
def test_fuzz_evaluation_files(workdir, predictions, dataset, data, top_k):
    files = data.draw(ground_truth_files(dataset))
    with scratch(workdir) as folder:
        prediction_path = folder / "val.json"
        write(prediction_path, predictions)
        for name, content in files.items():
            write(folder / name, content)
        annotation_path = folder if dataset == "diving48" else folder / "annotation.json"
        ok_predictions, loaded = outcome(lambda: load_predictions(str(prediction_path)), prediction_path)
        if ok_predictions:
            for rows in loaded.values():
                assert all(isinstance(row.label, str) and isinstance(row.score, float) and not math.isnan(row.score)
                           for row in rows)
        ok, gt = outcome(lambda: load_ground_truth(dataset, str(annotation_path)), folder)
        if ok:
            metrics = evaluate(gt, loaded if ok_predictions else {}, top_k=top_k)
            for value in (metrics.top1_accuracy, metrics.top_k_accuracy, metrics.mean_class_accuracy):
                assert 0.0 <= value <= 1.0


@pytest.mark.parametrize("content", ["[" * 100_000, '{"results": ' + "9" * 5000 + "}"])
def test_evaluation_json_too_deep_or_with_huge_integers(tmp_path, content):
    """Regression: RecursionError and the int-digits ValueError escaped the evaluation's JSON reader."""
    path = tmp_path / "val.json"
    path.write_text(content)
    with pytest.raises(SdnError, match="not valid JSON") as error:
        load_predictions(str(path))
    assert_clear(error.value, path)


def test_prediction_score_too_large_for_a_float(tmp_path):
    """Regression: an integer score of 10**400 raised OverflowError in math.isnan."""
    path = tmp_path / "val.json"
    path.write_text('{"results": {"v": [{"label": "a", "score": 1' + "0" * 400 + "}]}}")
    with pytest.raises(SdnError, match="numeric 'score'") as error:
        load_predictions(str(path))
    assert_clear(error.value, path)


def test_ground_truth_vid_name_with_line_break(tmp_path):
    """Regression: a Diving48 vid_name with a line break made the error two lines."""
    (tmp_path / "Diving48_vocab.json").write_text('[["a"]]')
    (tmp_path / "Diving48_test.json").write_text('[{"vid_name": "x\\ny", "label": 5}]')
    with pytest.raises(SdnError, match="has label 5") as error:
        load_ground_truth("diving48", str(tmp_path))
    assert_clear(error.value, tmp_path)


# ----------------------------------------------------------------------------------------------
# sdn.prepare's readers of the official split files

def _activitynet_source(tmp_path: Path, annotation: dict) -> Path:
    path = tmp_path / "activity_net.v1-3.min.json"
    path.write_text(json.dumps({"taxonomy": [{"nodeId": 1, "nodeName": "run", "parentId": None}],
                                "database": {"k": {"subset": "training", "annotations": [annotation]}}}))
    return path


def test_prepare_activitynet_huge_segment(tmp_path):
    from sdn.prepare.annotations import activitynet_annotation

    path = _activitynet_source(tmp_path, {"segment": [0, 10 ** 400], "label": "run"})
    with pytest.raises(SdnError, match="database entry 'k': each annotation needs a 2-number 'segment'") as error:
        activitynet_annotation(str(path))
    assert_clear(error.value, path)


def test_prepare_activitynet_unhashable_label(tmp_path):
    from sdn.prepare.annotations import activitynet_annotation

    path = _activitynet_source(tmp_path, {"segment": [0, 1], "label": ["run"]})
    with pytest.raises(SdnError, match="database entry 'k': .* a leaf 'label' of the taxonomy") as error:
        activitynet_annotation(str(path))
    assert_clear(error.value, path)


def test_prepare_diving48_vid_name_with_line_break(tmp_path):
    from sdn.prepare.annotations import diving48_annotations

    (tmp_path / "Diving48_vocab.json").write_text('[["a"]]')
    (tmp_path / "Diving48_train.json").write_text('[{"vid_name": "x\\ny", "label": 3, "start_frame": 0, '
                                                  '"end_frame": 1}]')
    (tmp_path / "Diving48_test.json").write_text("[]")
    with pytest.raises(SdnError, match=r"entry 0 \('x\\ny'\): label must be 0\.\.0") as error:
        diving48_annotations(str(tmp_path))
    assert_clear(error.value, tmp_path / "Diving48_train.json")


def test_prepare_kinetics_key_with_line_break(tmp_path):
    from sdn.prepare.annotations import kinetics_annotation

    header = "label,youtube_id,time_start,time_end,split\n"
    (tmp_path / "train.csv").write_text(header + 'a,x,0,10,train\n')
    (tmp_path / "val.csv").write_text(header + 'b,"v\nw",0,10,val\n')
    with pytest.raises(SdnError, match=r"label 'b' of video 'v\\nw_000000_000010' is not a training label") as error:
        kinetics_annotation(str(tmp_path / "train.csv"), str(tmp_path / "val.csv"))
    assert_clear(error.value, tmp_path / "val.csv")


# ----------------------------------------------------------------------------------------------
# The command line on hostile annotation files


@pytest.mark.parametrize("content", ['{"labels": ["a", "b"], "database": {"x": {"subset": "train',
                                     '{"labels": "a", "database": []}'])
def test_sdn_train_on_a_hostile_annotation_exits_2_with_one_line(tmp_path, capsys, content):
    from sdn.cli.main import main

    (tmp_path / "jpg").mkdir()
    (tmp_path / "kinetics.json").write_text(content)
    code = main(["train", "--root_path", str(tmp_path), "--video_path", "jpg", "--annotation_path", "kinetics.json",
                 "--result_path", str(tmp_path / "result"), "--dataset", "kinetics", "--n_classes", "2",
                 "--is_mask_adv", "--model", "resnet", "--model_depth", "10", "--resnet_shortcut", "A",
                 "--sample_size", "16", "--sample_duration", "4", "--n_threads", "0", "--no_progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("sdn: error: ")
    assert str(tmp_path / "kinetics.json") in err
