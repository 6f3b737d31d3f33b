"""``sdn prepare annotations``: the original annotation JSON files from the official split files.

Formats written, as sdn's readers in ``sdn.data.annotations`` read them:

* Kinetics: ``{"labels": [...], "database": {"<youtube_id>_<start:06d>_<end:06d>": {"subset": ...,
  "annotations": {"label": ...}}}}``; labels are the training labels in first-appearance order and
  ``testing`` entries have empty annotations, as the original ``kinetics_json.py``.
* UCF-101 (``ucf101_0N.json``) and HMDB-51 (``hmdb51_N.json``): the same layout keyed by the video
  name; training lists become ``training``, test lists ``validation``. The original HMDB-51 script
  derived the labels from every file in the split folder, so the ``hmdb51_1.json`` it had just
  written added an empty label and shifted every class index of splits 2 and 3; here labels come
  only from the ``*_test_splitN.txt`` names and are the same for all three splits.
* Diving48: the official train/test/vocabulary files validated and written under the names the
  reader expects (``Diving48_train.json``, ``Diving48_test.json``, ``Diving48_vocab.json``).
* ActivityNet: the official JSON validated and written unchanged.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

from sdn.data.annotations import SUBSETS, activitynet_class_names, load_json
from sdn.data.video import read_n_frames_file
from sdn.errors import SdnError, shown
from sdn.io import atomic_write_json

HMDB51_SPLIT_FILE = re.compile(r"(.+)_test_split([123])\.txt")
HMDB51_SUBSETS = {"1": "training", "2": "validation", "0": None}
DIVING48_NAMES = {"train": ("Diving48_V2_train.json", "Diving48_train.json"),
                  "test": ("Diving48_V2_test.json", "Diving48_test.json"),
                  "vocab": ("Diving48_vocab.json",)}
DIVING48_OUTPUT = {"train": "Diving48_train.json", "test": "Diving48_test.json", "vocab": "Diving48_vocab.json"}


def _lines(path: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, whitespace-separated fields) of the non-blank lines of a split file."""
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line.split()
    except FileNotFoundError:
        raise SdnError(f"{path}: split file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SdnError(f"{path}: cannot read split file ({error})") from None


def _database_json(labels: list[str], database: dict[str, dict]) -> dict[str, Any]:
    return {"labels": labels, "database": database}


def _entry(subset: str, label: str | None) -> dict[str, Any]:
    return {"subset": subset, "annotations": {} if label is None else {"label": label}}


# ----------------------------------------------------------------------------------------------
# Kinetics


def _kinetics_rows(path: str, with_label: bool) -> Iterator[tuple[str, str | None]]:
    """(key, label) of each row of a Kinetics CSV (label None for the unlabelled test CSV)."""
    required = ["youtube_id", "time_start", "time_end"] + (["label"] if with_label else [])
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [name for name in required if name not in (reader.fieldnames or [])]
            if missing:
                raise SdnError(f"{path}: missing column(s) {', '.join(missing)} (expected label,youtube_id,"
                               "time_start,time_end,split)")
            for row in reader:
                yield _kinetics_key(path, reader.line_num, row), (row["label"] if with_label else None)
    except FileNotFoundError:
        raise SdnError(f"{path}: Kinetics CSV file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise SdnError(f"{path}: cannot read CSV ({error})") from None


def _kinetics_key(path: str, line: int, row: dict[str, str]) -> str:
    """``<youtube_id>_<start:06d>_<end:06d>``, the frame folder name of the original layout."""
    try:
        start, end = (int(float(row[name])) for name in ("time_start", "time_end"))
    except (TypeError, ValueError, OverflowError):
        raise SdnError(f"{path}: line {line}: time_start/time_end must be numbers") from None
    if not row["youtube_id"]:
        raise SdnError(f"{path}: line {line}: empty youtube_id")
    return f"{row['youtube_id']}_{start:06d}_{end:06d}"


def kinetics_annotation(train_csv: str, val_csv: str, test_csv: str | None = None) -> dict[str, Any]:
    """The Kinetics JSON of the original ``kinetics_json.py`` (labels in first-appearance order of training)."""
    labels: dict[str, None] = {}
    database: dict[str, dict] = {}
    for key, label in _kinetics_rows(train_csv, with_label=True):
        labels.setdefault(label)
        database[key] = _entry("training", label)
    for key, label in _kinetics_rows(val_csv, with_label=True):
        if label not in labels:
            raise SdnError(f"{val_csv}: label {label!r} of video {shown(key)} is not a training label of {train_csv}")
        database[key] = _entry("validation", label)
    if test_csv:
        for key, _ in _kinetics_rows(test_csv, with_label=False):
            database[key] = _entry("testing", None)
    _check_labels(list(labels), train_csv)
    return _database_json(list(labels), database)


def _check_labels(labels: list[str], path: str) -> None:
    """Labels become directory names (and must be non-empty), as the readers require."""
    if not labels:
        raise SdnError(f"{path}: no labelled video")
    for label in labels:
        if not label or "/" in label or label in (".", ".."):
            raise SdnError(f"{path}: label {label!r} cannot be a directory name")


# ----------------------------------------------------------------------------------------------
# UCF-101


def _ucf101_classes(split_dir: str) -> list[str]:
    """``classInd.txt``: "index name" lines; the file order gives the class index."""
    path = os.path.join(split_dir, "classInd.txt")
    labels = []
    for number, fields in _lines(path):
        if len(fields) != 2 or fields[0] != str(len(labels) + 1):
            raise SdnError(f"{path}: line {number}: expected '{len(labels) + 1} <class name>'")
        labels.append(fields[1])
    _check_labels(labels, path)
    return labels


def _ucf101_list(path: str, labels: list[str], subset: str, database: dict[str, dict]) -> None:
    """Add the videos of a train/test list: "Class/v_Class_gNN_cNN.avi [index]" lines."""
    for number, fields in _lines(path):
        label, _, file_name = fields[0].partition("/")
        if not file_name or label not in labels:
            raise SdnError(f"{path}: line {number}: expected '<class of classInd.txt>/<video file>', "
                           f"found {fields[0]!r}")
        if len(fields) > 1 and fields[1] != str(labels.index(label) + 1):
            raise SdnError(f"{path}: line {number}: class index {fields[1]} does not match {label!r} in classInd.txt")
        database[os.path.splitext(file_name)[0]] = _entry(subset, label)


def ucf101_annotations(split_dir: str) -> dict[str, dict[str, Any]]:
    """``ucf101_0N.json`` contents for each split N whose ``trainlist0N.txt`` and ``testlist0N.txt`` exist."""
    labels = _ucf101_classes(split_dir)
    result = {}
    for split in (1, 2, 3):
        lists = [os.path.join(split_dir, f"{kind}list0{split}.txt") for kind in ("train", "test")]
        if not all(os.path.isfile(path) for path in lists):
            continue
        database: dict[str, dict] = {}
        _ucf101_list(lists[0], labels, "training", database)
        _ucf101_list(lists[1], labels, "validation", database)
        result[f"ucf101_0{split}.json"] = _database_json(labels, database)
    if not result:
        raise SdnError(f"{split_dir}: no trainlist0N.txt/testlist0N.txt pair found")
    return result


# ----------------------------------------------------------------------------------------------
# HMDB-51


def hmdb51_annotations(split_dir: str) -> dict[str, dict[str, Any]]:
    """``hmdb51_N.json`` contents from the ``<class>_test_splitN.txt`` files (1 train, 2 test, 0 unused).

    The labels (sorted class names) are taken from the split file names only, once, so every
    split has the same class indices (the original's splits 2 and 3 were shifted by one).
    """
    if not os.path.isdir(split_dir):
        raise SdnError(f"{split_dir}: HMDB-51 split directory does not exist")
    files = [(match, os.path.join(split_dir, name)) for name in sorted(os.listdir(split_dir))
             if (match := HMDB51_SPLIT_FILE.fullmatch(name))]
    if not files:
        raise SdnError(f"{split_dir}: no <class>_test_split[123].txt file found")
    labels = sorted({match.group(1) for match, _ in files})
    _check_labels(labels, split_dir)
    result = {}
    for split in ("1", "2", "3"):
        database: dict[str, dict] = {}
        for match, path in files:
            if match.group(2) == split:
                _hmdb51_file(path, match.group(1), database)
        if database:
            result[f"hmdb51_{split}.json"] = _database_json(labels, database)
    return result


def _hmdb51_file(path: str, label: str, database: dict[str, dict]) -> None:
    for number, fields in _lines(path):
        if len(fields) != 2 or fields[1] not in HMDB51_SUBSETS:
            raise SdnError(f"{path}: line {number}: expected '<video file> <0|1|2>'")
        subset = HMDB51_SUBSETS[fields[1]]
        if subset is not None:
            database[os.path.splitext(fields[0])[0]] = _entry(subset, label)


# ----------------------------------------------------------------------------------------------
# Diving48


def _diving48_file(source_dir: str, kind: str) -> str:
    for name in DIVING48_NAMES[kind]:
        path = os.path.join(source_dir, name)
        if os.path.isfile(path):
            return path
    raise SdnError(f"{source_dir}: no {' or '.join(DIVING48_NAMES[kind])}")


def _diving48_vocab(path: str) -> list[list[str]]:
    vocab = load_json(path)
    if not isinstance(vocab, list) or not vocab or not all(
            isinstance(row, list) and row and all(isinstance(word, str) for word in row) for row in vocab):
        raise SdnError(f"{path}: expected a non-empty list of lists of words")
    return vocab


def _diving48_items(path: str, n_classes: int) -> list[dict[str, Any]]:
    """The entries the reader uses, checked: ``vid_name``, ``label`` in range, ``start_frame <= end_frame``."""
    items = load_json(path)
    if not isinstance(items, list):
        raise SdnError(f"{path}: expected a JSON list of videos")
    for number, item in enumerate(items):
        fields = [item.get(name) for name in ("label", "start_frame", "end_frame")] if isinstance(item, dict) else []
        if not (isinstance(item, dict) and isinstance(item.get("vid_name"), str) and item["vid_name"]
                and all(isinstance(v, int) and not isinstance(v, bool) for v in fields)):
            raise SdnError(f"{path}: entry {number}: needs a 'vid_name' string and integer 'label', "
                           "'start_frame', 'end_frame'")
        label, start, end = fields
        if not 0 <= label < n_classes or end < start:
            raise SdnError(f"{path}: entry {number} ({shown(item['vid_name'])}): label must be 0..{n_classes - 1} and "
                           "end_frame at least start_frame")
    return items


def _match_frame_counts(items: list[dict[str, Any]], frames_dir: str) -> int:
    """Set ``end_frame`` so that ``end - start + 1`` equals the frames stored; return how many changed.

    The reader takes the frame count from the JSON, so a video decoded to a different number of
    frames would fail on a missing image (or lose its tail) during training.
    """
    changed = 0
    for item in items:
        folder = os.path.join(frames_dir, item["vid_name"])
        if not os.path.isfile(os.path.join(folder, "n_frames")):
            continue
        n_frames = read_n_frames_file(folder)
        if n_frames > 0 and item["end_frame"] - item["start_frame"] + 1 != n_frames:
            item["end_frame"] = item["start_frame"] + n_frames - 1
            changed += 1
    return changed


def diving48_annotations(source_dir: str, frames_dir: str | None = None) -> tuple[dict[str, Any], int]:
    """The three Diving48 files under the reader's names, and how many frame counts were matched to ``frames_dir``."""
    vocab = _diving48_vocab(_diving48_file(source_dir, "vocab"))
    files: dict[str, Any] = {DIVING48_OUTPUT["vocab"]: vocab}
    changed = 0
    for kind in ("train", "test"):
        items = _diving48_items(_diving48_file(source_dir, kind), len(vocab))
        if frames_dir:
            changed += _match_frame_counts(items, frames_dir)
        files[DIVING48_OUTPUT[kind]] = items
    return files, changed


# ----------------------------------------------------------------------------------------------
# ActivityNet


def activitynet_annotation(path: str) -> dict[str, Any]:
    """The official ActivityNet JSON, checked against what the reader needs (leaf labels, 2-number segments)."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise SdnError(f"{path}: expected an object with 'taxonomy' and 'database'")
    leaves = set(activitynet_class_names(data.get("taxonomy"), path))
    for key, value in data["database"].items():
        if not isinstance(value, dict) or value.get("subset") not in SUBSETS:
            raise SdnError(f"{path}: database entry {key!r}: needs 'subset' set to one of {', '.join(SUBSETS)}")
        annotations = value.get("annotations") or []
        if not isinstance(annotations, list) or not all(_valid_segment(a, leaves) for a in annotations):
            raise SdnError(f"{path}: database entry {key!r}: each annotation needs a 2-number 'segment' and a "
                           "leaf 'label' of the taxonomy")
    return data


def _valid_segment(annotation: Any, leaves: set[str]) -> bool:
    segment = annotation.get("segment") if isinstance(annotation, dict) else None
    label = annotation.get("label") if isinstance(annotation, dict) else None
    return (isinstance(segment, list) and len(segment) == 2 and all(_finite_number(t) for t in segment)
            and isinstance(label, str) and label in leaves)


def _finite_number(value: Any) -> bool:
    """A JSON number that is a finite float (JSON integers may exceed the float range)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


# ----------------------------------------------------------------------------------------------
# Command line


def _describe(name: str, data: Any) -> str:
    """What a written file holds: classes and videos per subset."""
    if isinstance(data, list):
        kind = "classes" if name == DIVING48_OUTPUT["vocab"] else "videos"
        return f"{len(data)} {kind}"
    counts = Counter(value.get("subset") for value in data["database"].values())
    classes = len(data["labels"]) if "labels" in data else len(activitynet_class_names(data["taxonomy"], name))
    return f"{classes} classes, " + ", ".join(f"{counts[s]} {s}" for s in SUBSETS if counts[s])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdn prepare annotations",
        description="Write the original annotation JSON files from the official split files.")
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    kinetics = formats.add_parser("kinetics", help="Kinetics CSVs to kinetics.json")
    kinetics.add_argument("--train", required=True, help="Training CSV (label,youtube_id,time_start,time_end,split)")
    kinetics.add_argument("--val", required=True, help="Validation CSV")
    kinetics.add_argument("--test", help="Test CSV (no label column needed)")
    kinetics.add_argument("--out", required=True, help="Output JSON file (e.g. kinetics.json)")
    for name, what in (("ucf101", "classInd.txt, trainlist0N.txt, testlist0N.txt"),
                       ("hmdb51", "<class>_test_splitN.txt files")):
        sub = formats.add_parser(name, help=f"{name} split folder to one JSON per split")
        sub.add_argument("split_dir", help=f"Official split folder ({what})")
        sub.add_argument("--out", help="Output directory (default: the split folder, as the original)")
    diving = formats.add_parser("diving48", help="official Diving48 JSONs to the reader's file names")
    diving.add_argument("source_dir", help="Folder with Diving48_V2_train.json (or Diving48_train.json), "
                        "the test file and Diving48_vocab.json")
    diving.add_argument("--out", required=True, help="Output directory (pass it as --annotation_path)")
    diving.add_argument("--frames", help="Frame folder root: set end_frame so that each video's frame count "
                        "matches its n_frames file")
    activitynet = formats.add_parser("activitynet", help="check the official ActivityNet JSON and copy it")
    activitynet.add_argument("source", help="Official ActivityNet JSON (e.g. activity_net.v1-3.min.json)")
    activitynet.add_argument("--out", required=True, help="Output JSON file")
    return parser


def _outputs(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """(output directory, {file name: content}) for the chosen format."""
    if args.format == "kinetics":
        annotation = kinetics_annotation(args.train, args.val, args.test)
        return os.path.dirname(args.out), {os.path.basename(args.out): annotation}
    if args.format == "activitynet":
        return os.path.dirname(args.out), {os.path.basename(args.out): activitynet_annotation(args.source)}
    if args.format == "diving48":
        files, changed = diving48_annotations(args.source_dir, args.frames)
        if args.frames:
            print(f"diving48: end_frame matched to the stored frame count for {changed} video(s)")
        return args.out, files
    build = ucf101_annotations if args.format == "ucf101" else hmdb51_annotations
    return args.out or args.split_dir, build(args.split_dir)


def run(args: argparse.Namespace) -> int:
    directory, files = _outputs(args)
    if directory:
        os.makedirs(directory, exist_ok=True)
    for name, data in files.items():
        atomic_write_json(os.path.join(directory, name), data)
        print(f"wrote {os.path.join(directory, name)} ({_describe(name, data)})")
    return 0
