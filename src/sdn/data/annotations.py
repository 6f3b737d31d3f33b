"""Annotation readers: which videos a subset holds, their labels, frame counts and clip windows.

One reader per dataset format of the original: Kinetics-style JSON (Kinetics, UCF-101, HMDB-51),
the Diving48 annotation directory and ActivityNet. Each returns the class names (index = class id,
as the original) and ``VideoEntry`` records; ``make_clips`` turns entries into ``ClipSample``
windows exactly as the original's ``n_samples_for_each_video`` rule did.

Every video may be a frame folder (``image_%05d.jpg`` + ``n_frames``, the original layout) or a
video file with the same name plus an extension (``.mp4``, ...), decoded directly. Videos that
are listed but absent are skipped as the original skipped them, but counted and reported; a
malformed annotation is an ``SdnError`` naming the file and the entry.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from sdn.data.video import FRAME_NAME, open_video, read_n_frames_file, resolve_video
from sdn.data.video_index import FrameCounts, frame_counts, index_path_for
from sdn.errors import SdnError, first_line, shown

SUBSETS = ("training", "validation", "testing")
KINETICS_TIME_SUFFIX = re.compile(r"_\d{6}_\d{6}$")
ACTIVITYNET_MIN_FRAMES = 16  # hard-coded in the original
# More frames than any real video has (about 92 hours at 30 fps): a larger count is a corrupt
# n_frames file or annotation, and would otherwise make a whole-video sample of that many indices.
MAX_FRAMES = 10_000_000
UNREADABLE_SHOWN = 20  # videos named when some cannot be read


@dataclass(frozen=True)
class VideoEntry:
    """One video of a subset.

    ``class_dir`` is the label's directory name (the key of the scene-label and detection
    files); ``label`` is the class index, -1 when unlabelled (Kinetics ``testing``).
    """

    path: str
    video_id: str
    label: int
    class_dir: str
    n_frames: int


@dataclass(frozen=True)
class ClipSample:
    """A window of 1-based frame indices of one video (before the temporal transform)."""

    video: VideoEntry
    frame_indices: tuple[int, ...]


# ----------------------------------------------------------------------------------------------
# JSON helpers


def load_json(path: str) -> Any:
    """Parse a JSON file; a missing or malformed file is an SdnError naming it."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise SdnError(f"{path}: annotation file not found") from None
    except IsADirectoryError:
        raise SdnError(f"{path}: is a directory, expected an annotation JSON file") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, integers of over 4300 digits
        raise SdnError(f"{path}: not valid JSON ({error})") from None
    except (OSError, RecursionError) as error:
        raise SdnError(f"{path}: cannot read annotation file ({error})") from None



def _expect(condition: bool, path: str, message: str) -> None:
    if not condition:
        raise SdnError(f"{path}: {message}")


def read_labels_database(path: str) -> tuple[list[str], dict[str, dict]]:
    """``labels`` and ``database`` of a Kinetics/UCF-101/HMDB-51 style file, validated."""
    data = load_json(path)
    _expect(isinstance(data, dict), path, "expected a JSON object with 'labels' and 'database'")
    labels, database = data.get("labels"), data.get("database")
    _expect(isinstance(labels, list) and all(isinstance(name, str) and name for name in labels), path,
            "'labels' must be a list of non-empty class names")
    _expect(len(set(labels)) == len(labels), path, "'labels' lists a class twice")
    _expect(isinstance(database, dict), path, "'database' must be an object mapping video keys to entries")
    for key, value in database.items():
        _expect(isinstance(value, dict) and value.get("subset") in SUBSETS, path,
                f"database entry {key!r}: needs 'subset' set to one of {', '.join(SUBSETS)}")
    return labels, database


def _inside(path: str, what: str, name: str) -> str:
    """``name`` when joining it to a folder stays inside that folder; an SdnError otherwise.

    Video names come from the annotation and are joined to ``--video_path``: an absolute name, or
    one with an empty, ``.`` or ``..`` part, would read files elsewhere.
    """
    _expect(bool(name) and "\x00" not in name and not os.path.isabs(name)
            and all(part not in ("", ".", "..") for part in name.split("/")), path,
            f"{what}: {name!r} is not a relative path inside the video folder (no empty, '.' or '..' parts)")
    return name


def _entry_label(path: str, key: str, value: dict, labels: list[str]) -> str:
    annotations = value.get("annotations")
    name = annotations.get("label") if isinstance(annotations, dict) else None
    _expect(isinstance(name, str), path, f"database entry {key!r}: 'annotations' has no 'label'")
    _expect(name in labels, path, f"database entry {key!r}: label {name!r} is not in 'labels'")
    _expect("/" not in name and name not in (".", ".."), path,
            f"database entry {key!r}: label {name!r} cannot be a directory name")
    return name


# ----------------------------------------------------------------------------------------------
# Frame counts


def video_frame_count(path: str) -> int:
    """``n_frames`` of a frame folder (its ``n_frames`` file) or of a video file (from its packets, see VideoFile)."""
    if os.path.isdir(path):
        return read_n_frames_file(path)
    return open_video(path).num_frames()


def _collect(candidates: Sequence[tuple[str, Callable[[str, int | None], VideoEntry]]], annotation: str,
             subset: str, root: str, *, count_files: bool = True) -> list[VideoEntry]:
    """Resolve each candidate's base path; build entries for those found; report the missing ones.

    As the original, missing videos and videos with ``n_frames <= 0`` are skipped; unlike it, the
    number skipped is printed, and finding none at all is an error. With ``count_files``, the
    video files found are counted together (in parallel, cached in the index file next to the
    annotation); those that cannot be counted are listed by name and skipped.
    """
    entries, missing, empty, found = [], [], [], []
    bar = tqdm(candidates, desc=f"reading {subset} videos", unit="video", disable=len(candidates) < 1000)
    for base, make in bar:
        path = resolve_video(base)
        if path is None:
            missing.append(base)
        else:
            found.append((path, make))
    counted = FrameCounts()
    if count_files:
        counted = frame_counts([path for path, _ in found if not os.path.isdir(path)], index_path_for(annotation))
    for path, make in found:
        if path in counted.failures:
            continue
        entry = make(path, counted.counts.get(path))
        if entry.n_frames > MAX_FRAMES:
            raise SdnError(f"{annotation}: video {shown(path)} would have {entry.n_frames} frames "
                           f"(more than {MAX_FRAMES}); its n_frames file or annotation is corrupt")
        if entry.n_frames > 0:
            entries.append(entry)
        else:
            empty.append(path)
    if counted.failures:
        _report_unreadable(counted.failures, annotation, subset, len(candidates), bool(entries))
    if missing:
        print(f"note: {len(missing)} of {len(candidates)} {subset} videos listed in {annotation} were not found "
              f"(e.g. {missing[0]}); skipped")
    if empty and not entries:
        raise SdnError(f"{annotation}: every {subset} video found under {root} has no frames "
                       f"(n_frames <= 0, e.g. {shown(empty[0])}); {len(missing)} of {len(candidates)} were not found")
    if candidates and not entries:
        raise SdnError(f"{annotation}: none of the {len(candidates)} {subset} videos was found under {root} "
                       f"(looked for frame folders or video files such as {shown(candidates[0][0])})")
    if not candidates:
        raise SdnError(f"{annotation}: no video in subset {subset!r}")
    return entries


def _report_unreadable(failures: dict[str, str], annotation: str, subset: str, listed: int, any_found: bool) -> None:
    """Name the videos whose frames cannot be counted (skipped, as missing ones); all of them is an error."""
    first = next(iter(failures))
    if not any_found:
        raise SdnError(f"{annotation}: none of the {subset} videos found can be read (e.g. {shown(first)}: "
                       f"{failures[first]})")
    print(f"note: {len(failures)} of {listed} {subset} videos listed in {annotation} cannot be read; skipped:")
    for path in list(failures)[:UNREADABLE_SHOWN]:
        print(f"  {shown(path)}: {failures[path]}")
    if len(failures) > UNREADABLE_SHOWN:
        print(f"  ... and {len(failures) - UNREADABLE_SHOWN} more")


# ----------------------------------------------------------------------------------------------
# Readers


def kinetics_video_id(key: str) -> str:
    """The YouTube id: the key without its ``_<start:06d>_<end:06d>`` suffix (the original cut 14 chars).

    Keys without that suffix are kept whole, where the original produced a wrong id.
    """
    return KINETICS_TIME_SUFFIX.sub("", key)


def read_kinetics(annotation_path: str, video_root: str, subset: str) -> tuple[list[str], list[VideoEntry]]:
    """Kinetics: ``<video_root>/<label>/<key>``; the ``testing`` subset lives in ``<video_root>/test/<key>``."""
    labels, database = read_labels_database(annotation_path)
    candidates = []
    for key, value in database.items():
        if value["subset"] != subset:
            continue
        if subset == "testing":
            class_dir, label = "test", -1
        else:
            class_dir = _entry_label(annotation_path, key, value, labels)
            label = labels.index(class_dir)
        video_id = kinetics_video_id(key)
        _inside(annotation_path, "database key", key)
        candidates.append((os.path.join(video_root, class_dir, key), _maker(video_id, label, class_dir)))
    return labels, _collect(candidates, annotation_path, subset, video_root)


def read_ucf_hmdb(annotation_path: str, video_root: str, subset: str) -> tuple[list[str], list[VideoEntry]]:
    """UCF-101 / HMDB-51: ``<video_root>/<label>/<key>``, video id = key."""
    labels, database = read_labels_database(annotation_path)
    candidates = []
    for key, value in database.items():
        if value["subset"] != subset:
            continue
        class_dir = _entry_label(annotation_path, key, value, labels)
        _inside(annotation_path, "database key", key)
        candidates.append((os.path.join(video_root, class_dir, key), _maker(key, labels.index(class_dir), class_dir)))
    return labels, _collect(candidates, annotation_path, subset, video_root)


def _maker(video_id: str, label: int, class_dir: str,
           n_frames: int | None = None) -> Callable[[str, int | None], VideoEntry]:
    """The entry of a found video: ``n_frames`` from the annotation, else ``counted``, else its own count."""
    def make(path: str, counted: int | None) -> VideoEntry:
        count = n_frames if n_frames is not None else counted if counted is not None else video_frame_count(path)
        return VideoEntry(path, video_id, label, class_dir, count)
    return make


def diving48_class_names(annotation_dir: str) -> list[str]:
    """Rows of ``Diving48_vocab.json`` joined with ``_`` (row position = class index)."""
    path = os.path.join(annotation_dir, "Diving48_vocab.json")
    vocab = load_json(path)
    _expect(isinstance(vocab, list) and len(vocab) > 0, path, "expected a non-empty list of lists of words")
    names = []
    for row, words in enumerate(vocab):
        _expect(isinstance(words, list) and all(isinstance(w, str) for w in words), path,
                f"row {row} is not a list of strings")
        names.append("_".join(words))
    return names


def read_diving48(annotation_dir: str, video_root: str, subset: str) -> tuple[list[str], list[VideoEntry]]:
    """Diving48: ``Diving48_train.json`` for training, ``Diving48_test.json`` for any other subset.

    Frames are ``<video_root>/<vid_name>/``; ``n_frames = end_frame - start_frame + 1`` (no ``n_frames`` file).
    """
    _expect(os.path.isdir(annotation_dir), annotation_dir,
            "Diving48 needs --annotation_path to be the annotation directory (with Diving48_train.json, "
            "Diving48_test.json and Diving48_vocab.json)")
    names = diving48_class_names(annotation_dir)
    path = os.path.join(annotation_dir, "Diving48_train.json" if subset == "training" else "Diving48_test.json")
    items = load_json(path)
    _expect(isinstance(items, list), path, "expected a JSON list of videos")
    candidates = []
    for number, item in enumerate(items):
        where = f"entry {number}"
        _expect(isinstance(item, dict) and isinstance(item.get("vid_name"), str) and item["vid_name"], path,
                f"{where}: needs a 'vid_name' string")
        fields = [item.get(name) for name in ("label", "start_frame", "end_frame")]
        _expect(all(isinstance(v, int) and not isinstance(v, bool) for v in fields), path,
                f"{where} ({shown(item['vid_name'])}): 'label', 'start_frame' and 'end_frame' must be integers")
        label, start, end = fields
        _expect(0 <= label < len(names), path, f"{where} ({shown(item['vid_name'])}): label {label} is not a class of "
                f"Diving48_vocab.json ({len(names)} classes)")
        base = os.path.join(video_root, _inside(path, f"{where}: vid_name", item["vid_name"]))
        candidates.append((base, _maker(item["vid_name"], label, names[label], n_frames=end - start + 1)))
    return names, _collect(candidates, path, subset, video_root, count_files=False)


# ----------------------------------------------------------------------------------------------
# Clip windows


def window_step(n_frames: int, n_samples: int, sample_duration: int) -> int:
    """Distance between window starts (the original's ``n_samples_for_each_video`` rule).

    ``n_samples <= 0`` means test windows.
    """
    if n_samples > 1:
        return max(1, math.ceil((n_frames - 1 - sample_duration) / (n_samples - 1)))
    return sample_duration


def window_starts(n_frames: int, n_samples: int, sample_duration: int) -> list[int]:
    """Start frames of the original's windows: ``1, 1 + step, ...`` below ``n_frames``."""
    return list(range(1, n_frames, window_step(n_frames, n_samples, sample_duration)))


def make_clips(entries: Iterable[VideoEntry], n_samples: int, sample_duration: int) -> list[ClipSample]:
    """One whole-video sample per video when ``n_samples == 1``, else the original's windows.

    Windows start at ``1, 1 + step, ...`` while the start is below ``n_frames`` and end at
    ``min(n_frames, start + sample_duration - 1)``; a one-frame video yields no window (as the original).
    """
    clips = []
    for entry in entries:
        if n_samples == 1:
            clips.append(ClipSample(entry, tuple(range(1, entry.n_frames + 1))))
            continue
        for start in window_starts(entry.n_frames, n_samples, sample_duration):
            stop = min(entry.n_frames, start + sample_duration - 1)
            clips.append(ClipSample(entry, tuple(range(start, stop + 1))))
    return clips


def count_clips(entry: VideoEntry, n_samples: int, sample_duration: int) -> int:
    """How many samples ``make_clips`` makes for one video (the masked dataset's length before filtering)."""
    return 1 if n_samples == 1 else len(window_starts(entry.n_frames, n_samples, sample_duration))


# ----------------------------------------------------------------------------------------------
# ActivityNet


def activitynet_class_names(taxonomy: Any, path: str) -> list[str]:
    """Leaf nodes of the taxonomy (nodes that are nobody's parent), in taxonomy order."""
    _expect(isinstance(taxonomy, list) and taxonomy, path, "'taxonomy' must be a non-empty list of nodes")
    for node in taxonomy:
        _expect(isinstance(node, dict) and {"nodeId", "nodeName", "parentId"} <= node.keys(), path,
                "every taxonomy node needs nodeId, nodeName and parentId")
        _expect(isinstance(node["nodeName"], str) and all(isinstance(node[key], (str, int, float, type(None)))
                                                          for key in ("nodeId", "parentId")), path,
                "taxonomy nodes need a string nodeName and a string or number nodeId and parentId")
    parents = {node["parentId"] for node in taxonomy}
    return [node["nodeName"] for node in taxonomy if node["nodeId"] not in parents]


def _read_fps(directory: str) -> float:
    file = os.path.join(directory, "fps")
    path = shown(file)  # the folder name comes from the annotation: it may hold any character
    try:
        with open(file, encoding="utf-8") as handle:
            fps = float(handle.read().strip())
    except FileNotFoundError:
        raise SdnError(f"{path}: missing fps file (ActivityNet frame folders need one)") from None
    except (OSError, ValueError) as error:
        raise SdnError(f"{path}: cannot read the frame rate ({first_line(error)})") from None
    _expect(math.isfinite(fps) and fps > 0, path, f"the frame rate must be a positive number, found {fps}")
    return fps


def _existing_prefix(directory: str, indices: Iterable[int]) -> list[int]:
    """The indices up to the first missing image (the original's loader stopped there)."""
    found = []
    for index in indices:
        if not os.path.isfile(os.path.join(directory, FRAME_NAME.format(index))):
            break
        found.append(index)
    return found


def _last_image_index(directory: str) -> int:
    numbers = [int(name[6:11]) for name in os.listdir(directory) if re.fullmatch(r"image_\d{5}\.jpg", name)]
    return max(numbers, default=0)


def read_activitynet(annotation_path: str, video_root: str, subset: str, n_samples: int,
                     sample_duration: int) -> tuple[list[str], list[ClipSample]]:
    """ActivityNet clips: trimmed segments for training/validation, untrimmed windows for testing.

    Only frame folders are supported (the format needs an ``fps`` file); clips shorter than 16
    frames are skipped, as the original.
    """
    data = load_json(annotation_path)
    _expect(isinstance(data, dict) and isinstance(data.get("database"), dict), annotation_path,
            "expected an object with 'taxonomy' and 'database'")
    names = activitynet_class_names(data.get("taxonomy"), annotation_path)
    clips: list[ClipSample] = []
    for key, value in data["database"].items():
        if not isinstance(value, dict) or value.get("subset") != subset:
            continue
        directory = os.path.join(video_root, _inside(annotation_path, "database key", f"v_{key}"))
        if not os.path.isdir(directory):
            continue
        if subset == "testing":
            clips.extend(_untrimmed_clips(directory, key, sample_duration))
        else:
            clips.extend(_trimmed_clips(directory, key, value, names, subset, n_samples, sample_duration,
                                        annotation_path))
    _expect(bool(clips), annotation_path, f"no {subset} clip of at least {ACTIVITYNET_MIN_FRAMES} frames found "
            f"under {video_root}")
    return names, clips


def _untrimmed_clips(directory: str, key: str, sample_duration: int) -> list[ClipSample]:
    last = _last_image_index(directory)
    entry = VideoEntry(directory, key, -1, "", last)
    clips = []
    for start in range(1, last + 1, sample_duration):
        indices = tuple(range(start, min(last, start + sample_duration - 1) + 1))
        if len(indices) >= ACTIVITYNET_MIN_FRAMES:
            clips.append(ClipSample(entry, indices))
    return clips


def _finite_product(time: int | float, fps: float) -> bool:
    """Whether ``time * fps`` is a finite float (JSON integers can exceed the float range)."""
    try:
        return math.isfinite(time * fps)
    except OverflowError:
        return False


def _trimmed_clips(directory: str, key: str, value: dict, names: list[str], subset: str, n_samples: int,
                   sample_duration: int, path: str) -> list[ClipSample]:
    fps = _read_fps(directory)
    clips = []
    annotations = value.get("annotations") or []
    _expect(isinstance(annotations, list), path, f"database entry {key!r}: 'annotations' must be a list")
    for annotation in annotations:
        segment = annotation.get("segment") if isinstance(annotation, dict) else None
        label = annotation.get("label") if isinstance(annotation, dict) else None
        _expect(isinstance(segment, list) and len(segment) == 2
                and all(isinstance(t, (int, float)) and not isinstance(t, bool) and _finite_product(t, fps)
                        for t in segment)
                and isinstance(label, str) and label in names, path,
                f"database entry {key!r}: each annotation needs a 2-number 'segment' and a leaf 'label'")
        begin = max(1, math.ceil(segment[0] * fps))
        end = math.ceil(segment[1] * fps)
        entry = VideoEntry(directory, key, names.index(label), label, end - begin)
        if n_samples == 1:
            windows = [range(begin, end)]
        else:
            step = window_step(end - begin, n_samples, sample_duration)
            windows = [range(start, start + sample_duration) for start in range(begin, end, step)]
        for window in windows:
            indices = _existing_prefix(directory, window)
            if len(indices) >= ACTIVITYNET_MIN_FRAMES:
                clips.append(ClipSample(entry, tuple(indices)))
    return clips
