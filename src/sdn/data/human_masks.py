"""Per-frame actor masks (``--human_masks_path``): pixel masks of the people in each video.

Boxes leak background into anything built from them (a pasted actor carries a rectangle of its
own scene with it), so methods that move actors between backgrounds, and test sets that put
actors onto new backgrounds (SCUBA), want pixel masks. ``sdn synth`` writes the exact masks it
rendered; a segmentation model can write the same format for real videos.

One file per split, ``<dir>/masks_train.npz`` and ``<dir>/masks_val.npz``, a plain (no pickle)
zip of NumPy arrays::

    format       'sdn-human-masks'     version 1
    source       unicode scalar: how the masks were made ('exact', 'segmentation', 'boxes')
    class_dirs   unicode [V]           video_ids  unicode [V]   (as the detections are keyed)
    shapes       int64 [V, 3]          frames T, height H, width W of each video's mask
    mask_<v>     uint8 [ceil(T*H*W/8)] np.packbits of video v's bool [T, H, W] mask (row-major)

Row ``t`` of a video's mask is frame ``t + 1`` (the 1-based ``image_%05d.jpg`` numbering). Each
video's mask is its own compressed member, read only when a clip of that video is asked for, so
a dataset's masks never have to fit in memory.
"""

from __future__ import annotations

import os
import zipfile
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from numpy.lib import format as npy_format

from sdn.data.detections import split_of
from sdn.data.safe_pickle import load_npz
from sdn.errors import SdnError, first_line
from sdn.io import atomic_open

NPZ_FORMAT = "sdn-human-masks"
NPZ_VERSION = 1
SOURCES = ("exact", "segmentation", "boxes")
FILE_NAMES = {"train": "masks_train.npz", "val": "masks_val.npz"}
_INDEX_KEYS = ("class_dirs", "video_ids", "shapes")


def _member(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    with archive.open(info, "w", force_zip64=True) as handle:
        npy_format.write_array(handle, np.asanyarray(array), allow_pickle=False)


def save_human_masks(path: str | os.PathLike, masks: Mapping[tuple[str, str], np.ndarray], source: str) -> None:
    """Write ``{(class_dir, video_id): bool [T, H, W]}`` atomically (byte-reproducible for the same input)."""
    keys = list(masks)
    for key in keys:
        if masks[key].ndim != 3 or 0 in masks[key].shape:
            raise SdnError(f"{path}: the mask of class {key[0]!r}, video {key[1]!r} must be a non-empty "
                           "[T, H, W] array")
    write_packed_human_masks(path, [(key[0], key[1], tuple(masks[key].shape)) for key in keys],
                             (pack_mask(masks[key]) for key in keys), source)


def pack_mask(mask: np.ndarray) -> np.ndarray:
    """The stored form of one video's bool ``[T, H, W]`` mask: ``np.packbits`` of it, row-major."""
    return np.packbits(np.asarray(mask, dtype=bool).reshape(-1))


def write_packed_human_masks(path: str | os.PathLike, index: Sequence[tuple[str, str, tuple[int, int, int]]],
                             packed: Iterable[np.ndarray], source: str) -> None:
    """Write the file from already packed masks, one video at a time (atomically).

    ``index`` lists (class_dir, video_id, (T, H, W)) per video and ``packed`` yields each video's
    :func:`pack_mask` in the same order, so a whole dataset's masks (far more than memory holds
    once unpacked) are written without ever being held together. The bytes are those
    :func:`save_human_masks` writes for the same masks.
    """
    if source not in SOURCES:
        raise SdnError(f"{path}: mask source must be one of {', '.join(SOURCES)}, not {source!r}")
    shapes = np.array([shape for _, _, shape in index], dtype=np.int64).reshape(len(index), 3)
    if np.any(shapes < 1):
        raise SdnError(f"{path}: every mask must be a non-empty [T, H, W] array")
    with atomic_open(path, "wb") as handle, zipfile.ZipFile(handle, "w", allowZip64=True) as archive:
        _member(archive, "format", np.array(NPZ_FORMAT))
        _member(archive, "version", np.array(NPZ_VERSION, dtype=np.int64))
        _member(archive, "source", np.array(source))
        _member(archive, "class_dirs", np.array([k[0] for k in index], dtype=str).reshape(len(index)))
        _member(archive, "video_ids", np.array([k[1] for k in index], dtype=str).reshape(len(index)))
        _member(archive, "shapes", shapes)
        count = 0
        for v, bits in enumerate(packed):
            if v >= len(index):
                raise SdnError(f"{path}: more masks than index entries")
            size = int(np.prod(shapes[v]))
            if bits.dtype != np.uint8 or bits.shape != ((size + 7) // 8,):
                raise SdnError(f"{path}: the packed mask of class {index[v][0]!r}, video {index[v][1]!r} does not "
                               f"match its shape {shapes[v].tolist()}")
            _member(archive, f"mask_{v}", bits)
            count += 1
        if count != len(index):
            raise SdnError(f"{path}: {count} masks for {len(index)} index entries")


class HumanMasks:
    """The masks of one split, looked up by (class directory, video id); a video is decoded on demand."""

    def __init__(self, path: str):
        self.path = path
        arrays = load_npz(path, _INDEX_KEYS, NPZ_FORMAT, NPZ_VERSION, text_keys=("source",))
        self.source = str(arrays["source"])
        class_dirs, video_ids, shapes = arrays["class_dirs"], arrays["video_ids"], arrays["shapes"]
        count = len(class_dirs)
        if class_dirs.dtype.kind != "U" or video_ids.dtype.kind != "U" or class_dirs.shape != (count,) \
                or video_ids.shape != (count,) or shapes.shape != (count, 3) or shapes.dtype.kind not in "iu" \
                or np.any(shapes < 1) or np.any(shapes > 1_000_000):
            raise SdnError(f"{path}: the index arrays (class_dirs, video_ids, shapes [V, 3]) are inconsistent")
        if self.source not in SOURCES:
            raise SdnError(f"{path}: unknown mask source {self.source!r} (expected one of {', '.join(SOURCES)})")
        self._shapes = shapes.astype(np.int64)
        self._rows: dict[tuple[str, str], int] = {}
        for row, key in enumerate(zip(class_dirs.tolist(), video_ids.tolist())):
            if key in self._rows:
                raise SdnError(f"{path}: class {key[0]!r}, video {key[1]!r} appears twice")
            self._rows[key] = row

    @classmethod
    def from_path(cls, human_masks_path: str, subset: str) -> "HumanMasks":
        """Load ``<human_masks_path>/masks_<train|val>.npz``."""
        name = FILE_NAMES[split_of(subset, "human masks")]
        path = os.path.join(str(human_masks_path), name)
        if not os.path.isfile(path):
            raise SdnError(f"{human_masks_path}: no human mask file for {subset!r} (looked for {name})")
        return cls(path)

    def __len__(self) -> int:
        return len(self._rows)

    def has(self, class_dir: str, video_id: str) -> bool:
        return (class_dir, video_id) in self._rows

    def shape(self, class_dir: str, video_id: str) -> tuple[int, int, int]:
        """(frames, height, width) of a video's mask."""
        return tuple(int(n) for n in self._shapes[self._row(class_dir, video_id)])  # type: ignore[return-value]

    def _row(self, class_dir: str, video_id: str) -> int:
        try:
            return self._rows[(class_dir, video_id)]
        except KeyError:
            raise SdnError(f"{self.path}: no human mask for class {class_dir!r}, video {video_id!r}") from None

    def packed(self, class_dir: str, video_id: str) -> tuple[tuple[int, int, int], np.ndarray]:
        """``((T, H, W), packed bits)`` of a video as stored: copying masks between files needs no unpacking."""
        row = self._row(class_dir, video_id)
        shape = tuple(int(n) for n in self._shapes[row])
        try:
            packed = self._archive()[f"mask_{row}"]
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
            raise SdnError(f"{self.path}: cannot read the mask of class {class_dir!r}, video {video_id!r} "
                           f"({first_line(error)})") from error
        size = shape[0] * shape[1] * shape[2]
        if packed.dtype != np.uint8 or packed.shape != ((size + 7) // 8,):
            raise SdnError(f"{self.path}: the mask of class {class_dir!r}, video {video_id!r} does not match its "
                           f"shape {list(shape)}")
        return shape, packed  # type: ignore[return-value]

    def _archive(self) -> Any:
        """The open archive of this process: its directory is read once, not once per clip (a training step
        reads a mask per clip). Loader workers are forked processes, so each opens its own file handle."""
        if getattr(self, "_opened_by", None) != os.getpid():
            self._npz = np.load(self.path, allow_pickle=False)
            self._opened_by = os.getpid()
        return self._npz

    def __getstate__(self) -> dict[str, Any]:  # spawned loader workers reopen the file themselves
        return {key: value for key, value in self.__dict__.items() if key not in ("_npz", "_opened_by")}

    def video(self, class_dir: str, video_id: str) -> np.ndarray:
        """The whole bool ``[T, H, W]`` mask of a video."""
        shape, packed = self.packed(class_dir, video_id)
        return np.unpackbits(packed, count=int(np.prod(shape))).astype(bool).reshape(shape)

    def frames(self, class_dir: str, video_id: str, frame_indices: Sequence[int]) -> np.ndarray:
        """bool ``[len(frame_indices), H, W]`` for 1-based frame numbers; a frame past the last repeats the last.

        Frame counts of a mask and of its decoded video can differ by a frame or two (containers
        disagree on the last frame), hence the clamp rather than an error.
        """
        mask = self.video(class_dir, video_id)
        rows = np.clip(np.asarray(list(frame_indices), dtype=np.int64) - 1, 0, len(mask) - 1)
        return mask[rows]
