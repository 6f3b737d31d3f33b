"""Scene pseudo labels (``--place_pred_path``), original ``.npy`` pickles and sdn's safe ``.npz``.

Both formats hold ``{class directory: {YouTube id: {'pred_cls': ..., 'probs': ...}}}``. In
"multiple" mode every video has ``pred_cls`` int ``[K]`` and ``probs`` ``[K, P]`` (K sampled
frames); in "single" mode ``pred_cls`` is an int and ``probs`` is ``[P]``. The mode is decided, as
the original did, by the first class's first video, and every other entry must agree.

Targets are computed once at load time into one ``[V, P]`` float32 array and one ``[V]`` int
array, so lookups are cheap and forked loader workers share the memory.

Safe ``.npz`` layout (``np.savez`` format, read with ``allow_pickle=False``)::

    format      'sdn-scene-labels'        version  1
    mode        'single' | 'multiple'
    class_dirs  unicode [V]               video_ids  unicode [V]
    frame_offsets int64 [V+1]             (multiple mode: video v owns rows offsets[v]:offsets[v+1])
    pred_cls    int64 [F] (multiple) | [V] (single)
    probs       float [F, P] (multiple) | [V, P] (single), dtype as given (usually float32)
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from sdn.data.safe_pickle import load_npz, load_pickled_npy, save_npz, save_pickled_npy
from sdn.errors import SdnError, shown_key

NPZ_FORMAT = "sdn-scene-labels"
NPZ_VERSION = 1
_NPZ_KEYS = ("class_dirs", "video_ids", "frame_offsets", "pred_cls", "probs")


@dataclass(frozen=True)
class _Entry:
    """One video's raw labels and the file it came from (for error messages)."""

    pred_cls: Any
    probs: Any
    source: str


def subset_pattern(subset: str) -> str:
    """The filename fragment the original globbed for a subset ('train' or 'val')."""
    if "train" in subset:
        return "train"
    if "val" in subset:
        return "val"
    raise SdnError(f"scene labels exist only for training and validation subsets, not {subset!r}")


def _label_files(place_pred_path: str, subset: str) -> list[str]:
    """``*train*``/``*val*`` files of both formats, sorted by name.

    The original merged ``glob('*train*.npy')`` in filesystem order; we sort so the result does not
    depend on the filesystem (it only matters when two files hold the same class).
    """
    part = subset_pattern(subset)
    if not os.path.isdir(place_pred_path):
        raise SdnError(f"{place_pred_path}: scene label directory (--place_pred_path) does not exist")
    files = [f for ext in ("npy", "npz") for f in glob.glob(os.path.join(glob.escape(place_pred_path), f"*{part}*.{ext}"))]
    if not files:
        raise SdnError(f"{place_pred_path}: no scene label file matches '*{part}*.npy' or '*{part}*.npz'")
    return sorted(files, key=os.path.basename)


def _entries_from_pickle(path: str) -> dict[str, dict[str, _Entry]]:
    """Check the nesting of an original pickle and wrap its leaves as entries."""
    data = load_pickled_npy(path)
    return _entries_from_dict(data, path)


def _entries_from_dict(data: Any, path: str) -> dict[str, dict[str, _Entry]]:
    if not isinstance(data, Mapping):
        raise SdnError(f"{path}: expected a dict of classes, found {type(data).__name__}")
    result: dict[str, dict[str, _Entry]] = {}
    for class_dir, videos in data.items():
        if not isinstance(class_dir, str) or "\x00" in class_dir:  # NUL: no folder name, lost by NumPy strings
            raise SdnError(f"{path}: class key {shown_key(class_dir)} is not a string naming a folder")
        if not isinstance(videos, Mapping):
            raise SdnError(f"{path}: class {class_dir!r}: expected a dict of videos, found {type(videos).__name__}")
        entries: dict[str, _Entry] = {}
        for video_id, value in videos.items():
            where = f"{path}: class {class_dir!r}, video {shown_key(video_id)}"
            if not isinstance(video_id, str) or "\x00" in video_id:
                raise SdnError(f"{where}: video key is not a string naming a folder")
            if not isinstance(value, Mapping) or "pred_cls" not in value or "probs" not in value:
                raise SdnError(f"{where}: expected a dict with 'pred_cls' and 'probs'")
            entries[video_id] = _Entry(value["pred_cls"], value["probs"], path)
        result[class_dir] = entries
    return result


def read_scene_labels_npz(path: str) -> dict[str, dict[str, _Entry]]:
    """Read sdn's safe format and present it as the same nested entries as a pickle."""
    arrays = load_npz(path, _NPZ_KEYS, NPZ_FORMAT, NPZ_VERSION, text_keys=("mode",))
    mode = str(arrays["mode"])
    class_dirs, video_ids = arrays["class_dirs"], arrays["video_ids"]
    pred_cls, probs, offsets = arrays["pred_cls"], arrays["probs"], arrays["frame_offsets"]
    n_videos = len(class_dirs)
    if class_dirs.shape != (n_videos,) or video_ids.shape != (n_videos,) or class_dirs.dtype.kind != "U" \
            or video_ids.dtype.kind != "U":
        raise SdnError(f"{path}: 'class_dirs' and 'video_ids' must be 1-D unicode arrays of equal length")
    if mode == "multiple":
        if offsets.shape != (n_videos + 1,) or offsets.dtype.kind not in "iu" or offsets[0] != 0 \
                or np.any(offsets[1:] < offsets[:-1]) or offsets[-1] != len(pred_cls) or len(probs) != len(pred_cls):
            raise SdnError(f"{path}: 'frame_offsets' does not index 'pred_cls'/'probs' consistently")
        split = [(pred_cls[offsets[v]:offsets[v + 1]], probs[offsets[v]:offsets[v + 1]]) for v in range(n_videos)]
    elif mode == "single":
        if len(pred_cls) != n_videos or len(probs) != n_videos or pred_cls.ndim != 1:
            raise SdnError(f"{path}: single mode needs one 'pred_cls' value and one 'probs' row per video")
        split = [(pred_cls[v].item(), probs[v]) for v in range(n_videos)]
    else:
        raise SdnError(f"{path}: 'mode' must be 'single' or 'multiple', not {mode!r}")
    result: dict[str, dict[str, _Entry]] = {}
    for v, (cls, prob) in enumerate(split):
        videos = result.setdefault(str(class_dirs[v]), {})
        if str(video_ids[v]) in videos:
            raise SdnError(f"{path}: class {str(class_dirs[v])!r}, video {str(video_ids[v])!r} appears twice")
        videos[str(video_ids[v])] = _Entry(cls, prob, path)
    return result


def _is_int_scalar(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_probs(probs: Any, ndim: int, where: str) -> np.ndarray:
    """Probabilities: a float/int array of the expected rank, finite and non-negative."""
    try:
        array = np.asarray(probs) if isinstance(probs, (np.ndarray, list, tuple)) else None
    except ValueError:  # ragged nested lists
        array = None
    if array is None or array.dtype.kind not in "fiu" or array.ndim != ndim or array.size == 0:
        shape = "[K, P]" if ndim == 2 else "[P]"
        raise SdnError(f"{where}: 'probs' must be a non-empty numeric array of shape {shape}")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise SdnError(f"{where}: 'probs' contains NaN, infinite or negative values")
    return array


def _video_targets(entry: _Entry, multiple: bool, where: str) -> tuple[np.ndarray, int]:
    """Validate one video and return its (soft, hard) targets exactly as the original computed them."""
    pred_cls = entry.pred_cls
    if multiple:
        if not isinstance(pred_cls, np.ndarray) or pred_cls.ndim != 1 or pred_cls.size == 0 \
                or pred_cls.dtype.kind not in "iu":
            raise SdnError(f"{where}: multiple-frame labels need 'pred_cls' as a non-empty 1-D integer "
                           "array (decided by the first class's first video)")
        probs = _check_probs(entry.probs, 2, where)
        if np.any(pred_cls < 0) or np.any(pred_cls >= probs.shape[1]):
            raise SdnError(f"{where}: 'pred_cls' has a value outside 0..{probs.shape[1] - 1} (the places of 'probs')")
        with np.errstate(over="ignore"):  # a sum beyond the dtype's range is refused below
            soft = probs.mean(axis=0)  # in the stored dtype, as np.mean in the original
        hard = int(np.bincount(pred_cls.astype(np.int64)).argmax())  # ties -> smallest index
    else:
        if not _is_int_scalar(pred_cls):
            raise SdnError(f"{where}: single-frame labels need 'pred_cls' as an integer "
                           "(decided by the first class's first video)")
        soft = _check_probs(entry.probs, 1, where)
        if not 0 <= pred_cls < soft.shape[0]:
            raise SdnError(f"{where}: 'pred_cls' {pred_cls} is outside 0..{soft.shape[0] - 1} (the places of 'probs')")
        hard = int(pred_cls)
    with np.errstate(over="ignore"):
        soft = soft.astype(np.float32)
    if not np.all(np.isfinite(soft)):  # values (or their mean) beyond the float32 range
        raise SdnError(f"{where}: 'probs' has values too large for float32")
    return soft, hard


class SceneLabels:
    """Scene targets of one subset, looked up by (class directory, YouTube id)."""

    def __init__(self, entries: dict[str, dict[str, _Entry]], description: str):
        """Build from merged entries; ``description`` names the source in error messages."""
        self.description = description
        first_class = next(iter(entries.values()), None)
        if not first_class:
            raise SdnError(f"{description}: no scene labels (the first class has no videos)")
        self.multiple = isinstance(next(iter(first_class.values())).pred_cls, np.ndarray)
        self._rows: dict[str, dict[str, int]] = {}
        soft_rows, hard_rows = [], []
        for class_dir, videos in entries.items():
            rows = self._rows.setdefault(class_dir, {})
            for video_id, entry in videos.items():
                soft, hard = _video_targets(entry, self.multiple, f"{entry.source}: class {class_dir!r}, video {video_id!r}")
                if soft_rows and soft.shape != soft_rows[0].shape:
                    raise SdnError(f"{entry.source}: class {class_dir!r}, video {video_id!r}: {soft.shape[0]} "
                                   f"places, but other videos have {soft_rows[0].shape[0]}")
                rows[video_id] = len(soft_rows)
                soft_rows.append(soft)
                hard_rows.append(hard)
        self._soft = np.stack(soft_rows)
        self._hard = np.asarray(hard_rows, dtype=np.int64)

    @classmethod
    def from_path(cls, place_pred_path: str, subset: str) -> "SceneLabels":
        """Load and merge every ``*train*`` / ``*val*`` file of ``place_pred_path``.

        As in the original, files are merged by a top-level dict update: a class present in two
        files is replaced by the later file's (later in sorted filename order).
        """
        merged: dict[str, dict[str, _Entry]] = {}
        for path in _label_files(str(place_pred_path), subset):
            merged.update(read_scene_labels_npz(path) if path.endswith(".npz") else _entries_from_pickle(path))
        return cls(merged, str(place_pred_path))

    @classmethod
    def from_dict(cls, labels: Mapping, description: str = "<scene labels>") -> "SceneLabels":
        """Build from an in-memory dict of the original layout (tests, conversions)."""
        return cls(_entries_from_dict(labels, description), description)

    @property
    def num_places(self) -> int:
        """P, the length of a soft target (365 for the released Places365 labels)."""
        return int(self._soft.shape[1])

    def __len__(self) -> int:
        return len(self._hard)

    def has(self, class_dir: str, video_id: str) -> bool:
        return video_id in self._rows.get(class_dir, {})

    def _row(self, class_dir: str, video_id: str) -> int:
        try:
            return self._rows[class_dir][video_id]
        except KeyError:
            raise SdnError(f"{self.description}: no scene label for class {class_dir!r}, video {video_id!r}") from None

    def target(self, class_dir: str, video_id: str, soft: bool) -> np.ndarray | int:
        """Soft: float32 ``[P]`` (mean of the frames' ``probs``, not renormalised); hard: the place index."""
        row = self._row(class_dir, video_id)
        return self._soft[row].copy() if soft else int(self._hard[row])


def _flatten(labels: Mapping, description: str) -> dict[str, Any]:
    """Turn a validated dict of the original layout into the arrays of the safe ``.npz``."""
    entries = _entries_from_dict(labels, description)
    multiple = SceneLabels(entries, description).multiple  # also validates every entry
    class_dirs, video_ids, pred_cls, probs, offsets = [], [], [], [], [0]
    for class_dir, videos in entries.items():
        for video_id, entry in videos.items():
            class_dirs.append(class_dir)
            video_ids.append(video_id)
            pred_cls.append(np.asarray(entry.pred_cls, dtype=np.int64))
            probs.append(np.asarray(entry.probs))
            offsets.append(offsets[-1] + (len(entry.pred_cls) if multiple else 1))
    join = np.concatenate if multiple else np.stack
    return {
        "format": np.array(NPZ_FORMAT), "version": np.array(NPZ_VERSION),
        "mode": np.array("multiple" if multiple else "single"),
        "class_dirs": np.array(class_dirs, dtype=str), "video_ids": np.array(video_ids, dtype=str),
        "frame_offsets": np.asarray(offsets, dtype=np.int64),
        "pred_cls": join(pred_cls).astype(np.int64), "probs": join(probs),
    }


def save_scene_labels_npz(path: str | os.PathLike, labels: Mapping) -> None:
    """Write ``labels`` (original layout) as sdn's safe ``.npz``, after validating it."""
    arrays = _flatten(labels, str(path))
    save_npz(path, arrays)


def save_scene_labels_npy(path: str | os.PathLike, labels: Mapping) -> None:
    """Write ``labels`` as the original pickled ``.npy`` (for tools that expect the released format)."""
    SceneLabels.from_dict(labels, str(path))
    save_pickled_npy(path, labels)
