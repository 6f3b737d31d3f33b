"""Video-level accuracy of a test result file (``val.json``): the original ``utils/eval_*.py``.

The original scripts build pandas frames and score every ground-truth video by whether its label
is among the top-k predictions. This module keeps their numbers exactly and
needs neither pandas nor torch:

* the denominator is the number of unique ground-truth video ids; a video without predictions
  scores 0;
* a video listed with several labels scores the fraction of its labels hit (Diving48, UCF-101,
  HMDB-51) or 1 if any is hit (Kinetics, the original's ``np.ceil``);
* a predicted label that is not a class of the ground truth is a miss; the original raised
  ``KeyError`` and printed nothing.

Beyond the original's hit@1 it reports hit@k for another k and the mean per-class top-1 accuracy.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass

from sdn.errors import SdnError, shown

DATASETS = ("diving48", "ucf101", "hmdb51", "kinetics")

# The names the original scripts print in "[RESULTS] Performance on <name> video classification task."
DISPLAY_NAMES = {"diving48": "Diving48", "ucf101": "UCF101", "hmdb51": "HMDB-51", "kinetics": "Kinetics"}

DIVING48_TEST_FILE = "Diving48_test.json"
DIVING48_VOCAB_FILE = "Diving48_vocab.json"

# Kinetics keys are '<youtube id>_%06d_%06d'; the original drops this 14-character time suffix.
KINETICS_SUFFIX_LENGTH = 14


@dataclass(frozen=True)
class GroundTruth:
    """The ground truth as the original scripts saw it.

    ``labels`` maps each unique video id to its distinct class indices (file order);
    ``subset`` is the name the original printed ('val' for Diving48, 'validation' otherwise).
    """

    subset: str
    class_index: dict[str, int]
    labels: dict[str, tuple[int, ...]]
    any_label_hits: bool

    @property
    def n_instances(self) -> int:
        """Unique (video id, label) pairs: the original's 'Number of ground truth instances'."""
        return sum(len(labels) for labels in self.labels.values())


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float


@dataclass(frozen=True)
class Metrics:
    n_ground_truth: int
    n_predictions: int
    n_videos: int
    n_missing_videos: int
    n_unknown_labels: int
    top1_accuracy: float
    top_k: int
    top_k_accuracy: float
    mean_class_accuracy: float

    def as_dict(self) -> dict:
        return asdict(self)


def _read_json(path: str) -> object:
    """Read a JSON file; every failure becomes one line naming the file."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise SdnError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SdnError(f"{path}: is a directory, expected a JSON file") from None
    except OSError as error:
        raise SdnError(f"{path}: cannot read ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise SdnError(f"{path}: not a UTF-8 text file") from None
    except json.JSONDecodeError as error:
        raise SdnError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    except (ValueError, RecursionError) as error:  # integers of over 4300 digits, absurdly deep nesting
        raise SdnError(f"{path}: not valid JSON ({error})") from None



def _add_label(labels: dict[str, list[int]], video_id: str, label: int) -> None:
    """Record a (video, label) pair once, as the original's ``drop_duplicates``."""
    video_labels = labels.setdefault(video_id, [])
    if label not in video_labels:
        video_labels.append(label)


def _freeze(labels: dict[str, list[int]]) -> dict[str, tuple[int, ...]]:
    return {video_id: tuple(video_labels) for video_id, video_labels in labels.items()}


def _diving48_class_index(path: str) -> dict[str, int]:
    """Class names are the vocabulary rows joined with '_'; the row position is the class index."""
    vocab = _read_json(path)
    if not isinstance(vocab, list) or not vocab:
        raise SdnError(f"{path}: expected a non-empty JSON list of lists of strings")
    class_index = {}
    for index, row in enumerate(vocab):
        if not isinstance(row, list) or not all(isinstance(word, str) for word in row):
            raise SdnError(f"{path}: row {index} is not a list of strings")
        class_index["_".join(row)] = index
    return class_index


def load_diving48_ground_truth(annotation_dir: str) -> GroundTruth:
    """``<annotation_dir>/Diving48_test.json`` (list of {vid_name, label}) and its vocabulary."""
    class_index = _diving48_class_index(os.path.join(annotation_dir, DIVING48_VOCAB_FILE))
    path = os.path.join(annotation_dir, DIVING48_TEST_FILE)
    entries = _read_json(path)
    if not isinstance(entries, list):
        raise SdnError(f"{path}: expected a JSON list of {{vid_name, label}} objects")
    labels: dict[str, list[int]] = {}
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("vid_name"), str):
            raise SdnError(f"{path}: entry {position} has no string 'vid_name'")
        label = entry.get("label")
        if not isinstance(label, int) or isinstance(label, bool):
            raise SdnError(f"{path}: entry {position} ({shown(entry['vid_name'])}) has no integer 'label'")
        if not 0 <= label < len(class_index):
            raise SdnError(f"{path}: entry {position} ({shown(entry['vid_name'])}) has label {label}, "
                           f"but {DIVING48_VOCAB_FILE} has {len(class_index)} classes")
        _add_label(labels, entry["vid_name"], label)
    if not labels:
        raise SdnError(f"{path}: no test videos")
    return GroundTruth("val", class_index, _freeze(labels), any_label_hits=False)


def _video_id(key: str, kinetics: bool, path: str) -> str:
    """UCF/HMDB: the database key (frame-folder name); Kinetics: the key without its time suffix."""
    if not kinetics:
        return key
    if len(key) <= KINETICS_SUFFIX_LENGTH:
        raise SdnError(f"{path}: key {key!r} lacks the '_%06d_%06d' time suffix of Kinetics keys")
    return key[:-KINETICS_SUFFIX_LENGTH]


def load_activitynet_style_ground_truth(path: str, kinetics: bool) -> GroundTruth:
    """The ``validation`` subset of an ActivityNet-style JSON (UCF-101, HMDB-51, Kinetics).

    Class indices follow the order of first appearance in the validation subset, not the
    ``labels`` list, as the original scripts did.
    """
    data = _read_json(path)
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict):
        raise SdnError(f"{path}: expected a JSON object with a 'database' object")
    class_index: dict[str, int] = {}
    labels: dict[str, list[int]] = {}
    for key, entry in database.items():
        if not isinstance(entry, dict):
            raise SdnError(f"{path}: database entry {key!r} is not an object")
        if entry.get("subset") != "validation":
            continue
        annotations = entry.get("annotations")
        if not isinstance(annotations, dict) or not isinstance(annotations.get("label"), str):
            raise SdnError(f"{path}: validation entry {key!r} has no string annotations.label")
        label = class_index.setdefault(annotations["label"], len(class_index))
        _add_label(labels, _video_id(key, kinetics, path), label)
    if not labels:
        raise SdnError(f"{path}: no videos in the 'validation' subset")
    return GroundTruth("validation", class_index, _freeze(labels), any_label_hits=kinetics)


def ground_truth_path(dataset: str, annotation_path: str) -> str:
    """The file the ground truth comes from (Diving48's annotation path is a directory)."""
    if dataset == "diving48":
        return os.path.join(annotation_path, DIVING48_TEST_FILE)
    return annotation_path


def load_ground_truth(dataset: str, annotation_path: str) -> GroundTruth:
    if dataset == "diving48":
        return load_diving48_ground_truth(annotation_path)
    if dataset in ("ucf101", "hmdb51", "kinetics"):
        return load_activitynet_style_ground_truth(annotation_path, kinetics=dataset == "kinetics")
    raise SdnError(f"--dataset {dataset!r}: evaluation supports {', '.join(DATASETS)}")


def _prediction(path: str, video_id: str, row: object) -> Prediction:
    if not isinstance(row, dict) or not isinstance(row.get("label"), str):
        raise SdnError(f"{path}: a prediction of video {video_id!r} has no string 'label'")
    score = row.get("score")
    try:  # JSON integers may be too large for a float
        value = float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else math.nan
    except OverflowError:
        value = math.nan
    if math.isnan(value):
        raise SdnError(f"{path}: a prediction of video {video_id!r} has no numeric 'score'")
    return Prediction(row["label"], value)


def load_predictions(path: str) -> dict[str, list[Prediction]]:
    """``{"results": {video_id: [{"label": str, "score": float}, ...]}}`` as written by ``test``."""
    data = _read_json(path)
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict):
        raise SdnError(f"{path}: expected a JSON object with a 'results' object (a val.json written by the test step)")
    predictions = {}
    for video_id, rows in results.items():
        if not isinstance(rows, list):
            raise SdnError(f"{path}: results of video {video_id!r} is not a list")
        predictions[video_id] = [_prediction(path, video_id, row) for row in rows]
    return predictions


def _top_classes(rows: list[Prediction], k: int, class_index: dict[str, int]) -> list[int | None]:
    """Class indices of the k highest scores; None for a label that is not a known class.

    The original used ``argsort()[::-1]``. The NumPy of its time sorted arrays this short (10
    rows) by insertion sort, which is stable, so the reversal ranked the later of two equal
    scores first; the key below does the same. (Current NumPy's SIMD argsort is not stable, so
    the original script run today could break ties either way.)
    """
    order = sorted(range(len(rows)), key=lambda i: (rows[i].score, i), reverse=True)
    return [class_index.get(rows[i].label) for i in order[:k]]


def _video_score(gt_labels: tuple[int, ...], top: list[int | None], any_label_hits: bool) -> float:
    hits = [label in top for label in gt_labels]
    if any_label_hits:
        return float(any(hits))
    return sum(hits) / len(hits)


def hit_at_k(gt: GroundTruth, predictions: dict[str, list[Prediction]], k: int) -> float:
    """The original's ``compute_video_hit_at_k``: mean video score over unique ground-truth ids."""
    total = 0.0
    for video_id, gt_labels in gt.labels.items():
        top = _top_classes(predictions.get(video_id, []), k, gt.class_index)
        total += _video_score(gt_labels, top, gt.any_label_hits)
    return total / len(gt.labels)


def mean_class_accuracy(gt: GroundTruth, predictions: dict[str, list[Prediction]]) -> float:
    """Top-1 accuracy per ground-truth class, averaged over the classes that have videos.

    Each (video, label) pair counts for its class; under the Kinetics rule a pair is a hit when
    the video's top-1 class is any of the video's labels, as for the video-level number.
    """
    per_class: dict[int, list[float]] = {}
    for video_id, gt_labels in gt.labels.items():
        top = _top_classes(predictions.get(video_id, []), 1, gt.class_index)
        for label in gt_labels:
            pair_labels = gt_labels if gt.any_label_hits else (label,)
            per_class.setdefault(label, []).append(_video_score(pair_labels, top, gt.any_label_hits))
    accuracies = [sum(scores) / len(scores) for scores in per_class.values()]
    return sum(accuracies) / len(accuracies)


def evaluate(gt: GroundTruth, predictions: dict[str, list[Prediction]], top_k: int = 5) -> Metrics:
    if top_k < 1:
        raise SdnError(f"--top_k must be at least 1, got {top_k}")
    rows = [row for video_rows in predictions.values() for row in video_rows]
    return Metrics(
        n_ground_truth=gt.n_instances,
        n_predictions=len(rows),
        n_videos=len(gt.labels),
        n_missing_videos=sum(1 for video_id in gt.labels if not predictions.get(video_id)),
        n_unknown_labels=sum(1 for row in rows if row.label not in gt.class_index),
        top1_accuracy=hit_at_k(gt, predictions, 1),
        top_k=top_k,
        top_k_accuracy=hit_at_k(gt, predictions, top_k),
        mean_class_accuracy=mean_class_accuracy(gt, predictions),
    )
