"""Human detections (``--human_dets_path``): original ``.npy`` pickles and sdn's safe ``.npz``.

The original layout is ``{class directory: {YouTube id: {frame index (1-based): {'human_boxes':
[N, 5]}}}}`` with columns ``x1, y1, x2, y2, score`` (the score is the *last* column). It is
flattened at load time into a few contiguous arrays (cheap lookups, one copy shared by forked
loader workers); the safe ``.npz`` stores exactly those arrays::

    format              'sdn-human-detections'     version  1
    class_dirs          unicode [V]                video_ids  unicode [V]
    video_frame_offsets int64 [V+1]   video v owns frame entries offsets[v]:offsets[v+1]
    frame_indices       int64 [F]     1-based image numbers, ascending within a video
    frame_box_offsets   int64 [F+1]   frame entry f owns boxes offsets[f]:offsets[f+1]
    boxes               float32 [N, 5]

Boxes are kept as given (float32, like the released files): boxes outside the frame or with
x2 < x1 are handled when masking, exactly as PIL drew them, not rejected here.
"""

from __future__ import annotations

import math
import os
import random
from typing import Any, Mapping, Sequence

import numpy as np

from sdn.data.safe_pickle import load_npz, load_pickled_npy, save_npz, save_pickled_npy
from sdn.errors import SdnError, shown_key

NPZ_FORMAT = "sdn-human-detections"
NPZ_VERSION = 1
_NPZ_KEYS = ("class_dirs", "video_ids", "video_frame_offsets", "frame_indices",
             "frame_box_offsets", "boxes")
ORIGINAL_NAMES = {"train": "detection_train_merged_rearranged.npy", "val": "detection_val_merged_rearranged.npy"}
SAFE_NAMES = {"train": "detection_train.npz", "val": "detection_val.npz"}
_INT64 = np.iinfo(np.int64)


def split_of(subset: str, what: str = "human detections") -> str:
    """``train`` or ``val`` for a subset name (``training``, ``validation``, ``val``, ...): the file of ``what``."""
    if "train" in subset:
        return "train"
    if "val" in subset:
        return "val"
    raise SdnError(f"{what} exist only for training and validation subsets, not {subset!r}")


def _is_int_key(value: Any) -> bool:
    """An integer frame key that fits the int64 index arrays."""
    return (isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
            and _INT64.min <= int(value) <= _INT64.max)


def _as_boxes(value: Any, where: str, frame_index: int) -> np.ndarray:
    """One frame's boxes as float32 ``[N, 5]`` (x1, y1, x2, y2, last column = score).

    Finiteness is checked once for all boxes after flattening (millions of frames in the
    released files), see ``_check_finite``.
    """
    if isinstance(value, np.ndarray) and value.dtype == np.float32 and value.ndim == 2 and value.shape[1] == 5:
        return value  # the released files' layout: nothing to convert
    try:
        array = np.asarray(value) if isinstance(value, (np.ndarray, list, tuple)) else None
    except ValueError:  # ragged nested lists
        array = None
    if array is None or array.dtype.kind not in "fiu":
        raise SdnError(f"{where}, frame {frame_index}: 'human_boxes' must be a numeric array of shape [N, 5]")
    if array.size == 0:
        return np.zeros((0, 5), dtype=np.float32)
    if array.ndim != 2 or array.shape[1] < 5:
        raise SdnError(f"{where}, frame {frame_index}: 'human_boxes' has shape {list(array.shape)}, expected [N, 5]")
    with np.errstate(over="ignore", invalid="ignore"):  # values beyond float32 become inf: refused by _check_finite
        return np.concatenate([array[:, :4], array[:, -1:]], axis=1).astype(np.float32)


def _check_finite(arrays: dict[str, np.ndarray], path: str) -> None:
    """Reject NaN/infinite box values, naming the first offending class, video and frame."""
    bad = np.flatnonzero(~np.all(np.isfinite(arrays["boxes"]), axis=1))
    if bad.size == 0:
        return
    frame = int(np.searchsorted(arrays["frame_box_offsets"], bad[0], side="right")) - 1
    video = int(np.searchsorted(arrays["video_frame_offsets"], frame, side="right")) - 1
    raise SdnError(f"{path}: class {str(arrays['class_dirs'][video])!r}, video {str(arrays['video_ids'][video])!r}, "
                   f"frame {int(arrays['frame_indices'][frame])}: 'human_boxes' contains NaN or infinite values")


class _Builder:
    """Accumulates videos into the flat arrays; used by both readers and the ``.npz`` writer."""

    def __init__(self) -> None:
        self.class_dirs: list[str] = []
        self.video_ids: list[str] = []
        self.video_frame_offsets = [0]
        self.frame_indices: list[int] = []
        self.frame_box_offsets = [0]
        self.boxes: list[np.ndarray] = []

    def add_video(self, class_dir: str, video_id: str, frames: list[tuple[int, np.ndarray]]) -> None:
        self.class_dirs.append(class_dir)
        self.video_ids.append(video_id)
        for frame_index, boxes in sorted(frames, key=lambda item: item[0]):
            self.frame_indices.append(frame_index)
            self.frame_box_offsets.append(self.frame_box_offsets[-1] + len(boxes))
            self.boxes.append(boxes)
        self.video_frame_offsets.append(len(self.frame_indices))

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "format": np.array(NPZ_FORMAT), "version": np.array(NPZ_VERSION),
            "class_dirs": np.array(self.class_dirs, dtype=str), "video_ids": np.array(self.video_ids, dtype=str),
            "video_frame_offsets": np.asarray(self.video_frame_offsets, dtype=np.int64),
            "frame_indices": np.asarray(self.frame_indices, dtype=np.int64),
            "frame_box_offsets": np.asarray(self.frame_box_offsets, dtype=np.int64),
            "boxes": np.concatenate(self.boxes) if self.boxes else np.zeros((0, 5), np.float32),
        }


def _arrays_from_dict(data: Any, path: str) -> dict[str, np.ndarray]:
    """Validate a dict of the original layout and flatten it."""
    if not isinstance(data, Mapping):
        raise SdnError(f"{path}: expected a dict of classes, found {type(data).__name__}")
    builder = _Builder()
    for class_dir, videos in data.items():
        if not isinstance(class_dir, str) or "\x00" in class_dir:  # NUL: no folder name, lost by NumPy strings
            raise SdnError(f"{path}: class key {shown_key(class_dir)} is not a string naming a folder")
        if not isinstance(videos, Mapping):
            raise SdnError(f"{path}: class {class_dir!r}: expected a dict of videos, found {type(videos).__name__}")
        for video_id, frames in videos.items():
            where = f"{path}: class {class_dir!r}, video {shown_key(video_id)}"
            if not isinstance(video_id, str) or "\x00" in video_id:
                raise SdnError(f"{where}: video key is not a string naming a folder")
            if not isinstance(frames, Mapping):
                raise SdnError(f"{where}: expected a dict of frames, found {type(frames).__name__}")
            entries = []
            for frame_index, value in frames.items():
                if not _is_int_key(frame_index):
                    raise SdnError(f"{where}: frame key {shown_key(frame_index)} is not an integer (of at most 64 bits)")
                if not isinstance(value, Mapping) or "human_boxes" not in value:
                    raise SdnError(f"{where}, frame {frame_index}: expected a dict with 'human_boxes'")
                entries.append((int(frame_index), _as_boxes(value["human_boxes"], where, frame_index)))
            builder.add_video(class_dir, video_id, entries)
    arrays = builder.arrays()
    _check_finite(arrays, path)
    return arrays


def read_detections_npz(path: str) -> dict[str, np.ndarray]:
    """The flat, validated arrays of sdn's safe format (see :func:`save_detections_npz`)."""
    arrays = load_npz(path, _NPZ_KEYS, NPZ_FORMAT, NPZ_VERSION)
    _check_flat(arrays, path)
    return arrays


def _valid_offsets(offsets: np.ndarray, length: int, count: int) -> bool:
    return (offsets.shape == (count + 1,) and offsets.dtype.kind in "iu" and offsets[0] == 0
            and offsets[-1] == length and not np.any(offsets[1:] < offsets[:-1]))  # np.diff wraps unsigned


def _check_flat(arrays: dict[str, np.ndarray], path: str) -> None:
    """The invariants lookups rely on: consistent offsets, sorted unique frames, finite [N, 5] boxes."""
    n_videos = len(arrays["class_dirs"])
    boxes, frames = arrays["boxes"], arrays["frame_indices"]
    if arrays["class_dirs"].shape != (n_videos,) or arrays["video_ids"].shape != (n_videos,) \
            or arrays["class_dirs"].dtype.kind != "U" or arrays["video_ids"].dtype.kind != "U":
        raise SdnError(f"{path}: 'class_dirs' and 'video_ids' must be 1-D unicode arrays of equal length")
    if frames.ndim != 1 or frames.dtype.kind not in "iu" or (frames.size and frames.max() > _INT64.max):
        raise SdnError(f"{path}: 'frame_indices' must be a 1-D integer array (of at most 64 bits)")
    if boxes.ndim != 2 or boxes.shape[1] != 5 or boxes.dtype != np.float32:
        raise SdnError(f"{path}: 'boxes' must be a float32 array of shape [N, 5]")
    if not _valid_offsets(arrays["video_frame_offsets"], len(frames), n_videos) \
            or not _valid_offsets(arrays["frame_box_offsets"], len(boxes), len(frames)):
        raise SdnError(f"{path}: the offset arrays do not index 'frame_indices'/'boxes' consistently")
    starts = np.zeros(len(frames), dtype=bool)
    starts[arrays["video_frame_offsets"][:-1][np.diff(arrays["video_frame_offsets"]) > 0]] = True
    if np.any((frames[1:] <= frames[:-1]) & ~starts[1:]):
        raise SdnError(f"{path}: 'frame_indices' must be strictly increasing within each video")
    _check_finite(arrays, path)


class HumanDetections:
    """Per-frame human boxes of one subset, looked up by (class directory, YouTube id, frame)."""

    def __init__(self, arrays: dict[str, np.ndarray], path: str):
        """Wrap validated flat arrays (see the module docstring); ``path`` is used in messages."""
        self.path = path
        self._video_frames = arrays["video_frame_offsets"].astype(np.int64)
        self._frames = arrays["frame_indices"].astype(np.int64)
        self._frame_boxes = arrays["frame_box_offsets"].astype(np.int64)
        self._boxes = arrays["boxes"]
        # frame entry of every box, for the vectorised per-video filter
        self._box_frame = np.repeat(np.arange(len(self._frames)), np.diff(self._frame_boxes))
        self._rows: dict[str, dict[str, int]] = {}
        for row, (class_dir, video_id) in enumerate(zip(arrays["class_dirs"].tolist(), arrays["video_ids"].tolist())):
            videos = self._rows.setdefault(class_dir, {})
            if video_id in videos:
                raise SdnError(f"{path}: class {class_dir!r}, video {video_id!r} appears twice")
            videos[video_id] = row

    @classmethod
    def from_path(cls, human_dets_path: str, subset: str) -> "HumanDetections":
        """Load ``detection_<train|val>.npz`` (safe) or else ``detection_<train|val>_merged_rearranged.npy``.

        The safe file wins when both exist, so a converted dataset never needs the unpickler.
        """
        split = split_of(subset)
        safe = os.path.join(str(human_dets_path), SAFE_NAMES[split])
        original = os.path.join(str(human_dets_path), ORIGINAL_NAMES[split])
        if os.path.isfile(safe):
            return cls(read_detections_npz(safe), safe)
        if os.path.isfile(original):
            return cls(_arrays_from_dict(load_pickled_npy(original), original), original)
        raise SdnError(f"{human_dets_path}: no human detection file for {subset!r} "
                       f"(looked for {SAFE_NAMES[split]} and {ORIGINAL_NAMES[split]})")

    @classmethod
    def from_dict(cls, data: Mapping, description: str = "<human detections>") -> "HumanDetections":
        """Build from an in-memory dict of the original layout (tests, conversions)."""
        return cls(_arrays_from_dict(data, description), description)

    def has(self, class_dir: str, video_id: str) -> bool:
        return video_id in self._rows.get(class_dir, {})

    def _frame_range(self, class_dir: str, video_id: str) -> tuple[int, int]:
        try:
            row = self._rows[class_dir][video_id]
        except KeyError:
            raise SdnError(f"{self.path}: no human detections for class {class_dir!r}, video {video_id!r}") from None
        return int(self._video_frames[row]), int(self._video_frames[row + 1])

    def boxes(self, class_dir: str, video_id: str, frame_index: int) -> np.ndarray:
        """float32 ``[N, 5]`` boxes (x1, y1, x2, y2, score) of a 1-based frame; ``N`` may be 0."""
        start, stop = self._frame_range(class_dir, video_id)
        position = start + int(np.searchsorted(self._frames[start:stop], frame_index))
        if position == stop or self._frames[position] != frame_index:
            raise SdnError(f"{self.path}: class {class_dir!r}, video {video_id!r} has no detections "
                           f"for frame {frame_index}")
        return self._boxes[self._frame_boxes[position]:self._frame_boxes[position + 1]].copy()

    def has_enough_detections(self, class_dir: str, video_id: str, n_frames: int,
                              score_th: float = 0.3, ratio_th: float = 0.7) -> bool:
        """The original's video filter: frame entries with a box scoring ``> score_th``, over ``n_frames``, ``>= ratio_th``.

        Every frame entry of the video counts (not only 1..n_frames), divided by the ``n_frames``
        file value, as the original did. Scores are compared in float32, as NumPy compared the
        original float32 arrays with a Python float.
        """
        if n_frames <= 0:
            raise SdnError(f"{self.path}: class {class_dir!r}, video {video_id!r}: n_frames must be positive")
        start, stop = self._frame_range(class_dir, video_id)
        first_box, last_box = self._frame_boxes[start], self._frame_boxes[stop]
        confident = self._boxes[first_box:last_box, 4] > np.float32(score_th)
        n_frames_with_person = np.unique(self._box_frame[first_box:last_box][confident]).size
        return n_frames_with_person / n_frames >= ratio_th


def repeat_to_length(kept: Sequence, total: int, rng: np.random.Generator | random.Random) -> list:
    """Pad the filtered sample list back to ``total`` samples, as the original human-mask dataset did.

    ``kept`` in its original order, then ``ceil(total / len(kept)) - 1`` shuffled copies, truncated
    to exactly ``total``. When nothing was filtered the list is returned as is (the original
    crashed there); when everything was filtered there is nothing to repeat (an SdnError).
    """
    kept = list(kept)
    if len(kept) >= total:
        return kept
    if not kept:
        raise SdnError(f"no video has enough human detections (0 of {total} samples kept by the 0.3/0.7 filter)")
    result = list(kept)
    for _ in range(math.ceil(total / len(kept)) - 1):
        copy = list(kept)
        rng.shuffle(copy)
        result.extend(copy)
    return result[:total]


def save_detections_npz(path: str | os.PathLike, detections: Mapping) -> None:
    """Write ``detections`` (original layout) as sdn's safe ``.npz``, after validating it."""
    arrays = _arrays_from_dict(detections, str(path))
    save_npz(path, arrays)


def save_detections_npy(path: str | os.PathLike, detections: Mapping) -> None:
    """Write ``detections`` as the original pickled ``.npy`` (after validating it)."""
    _arrays_from_dict(detections, str(path))
    save_pickled_npy(path, detections)
