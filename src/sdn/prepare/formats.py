"""Both file formats of both label kinds, as plain dicts of the original layout.

Scene labels and human detections exist as the original pickled ``.npy`` (read only through
sdn's restricted unpickler) and as sdn's safe ``.npz``. The data modules read either into
lookup structures for training; preparation and conversion need the original nested dict
back, which is what this module gives, for either file and either kind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from sdn.data import detections, scene_labels
from sdn.data.detections import ORIGINAL_NAMES, SAFE_NAMES, save_detections_npy, save_detections_npz
from sdn.data.safe_pickle import load_pickled_npy
from sdn.data.scene_labels import save_scene_labels_npy, save_scene_labels_npz
from sdn.errors import SdnError

SCENE_LABELS = "scene labels"
DETECTIONS = "human detections"
NPZ_KINDS = {scene_labels.NPZ_FORMAT: SCENE_LABELS, detections.NPZ_FORMAT: DETECTIONS}
SAVERS: dict[str, dict[str, Callable[[str, Mapping], None]]] = {
    SCENE_LABELS: {".npz": save_scene_labels_npz, ".npy": save_scene_labels_npy},
    DETECTIONS: {".npz": save_detections_npz, ".npy": save_detections_npy},
}


def _npz_kind(path: str) -> str:
    """The kind named by an sdn ``.npz``'s ``format`` member."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            found = str(npz["format"]) if "format" in npz.files else None
    except Exception as error:  # zip, header and pickle-refusal errors alike: name the file
        raise SdnError(f"{path}: not a readable .npz file ({error})") from error
    if found not in NPZ_KINDS:
        raise SdnError(f"{path}: not an sdn scene-label or detection file (format {found!r})")
    return NPZ_KINDS[found]


def _dict_kind(data: Any, path: str) -> str:
    """Scene labels map videos to ``{'pred_cls', 'probs'}``, detections map them to frame dicts."""
    for videos in data.values() if isinstance(data, Mapping) else ():
        for value in videos.values() if isinstance(videos, Mapping) else ():
            if isinstance(value, Mapping) and "pred_cls" in value:
                return SCENE_LABELS
            if isinstance(value, Mapping):
                return DETECTIONS
    raise SdnError(f"{path}: neither scene labels nor human detections (or no video in it)")


def _scene_labels_from_npz(path: str) -> dict[str, dict[str, dict[str, Any]]]:
    entries = scene_labels.read_scene_labels_npz(path)
    return {class_dir: {video_id: {"pred_cls": entry.pred_cls, "probs": entry.probs}
                        for video_id, entry in videos.items()}
            for class_dir, videos in entries.items()}


def _detections_from_npz(path: str) -> dict[str, dict[str, dict[int, dict[str, np.ndarray]]]]:
    """Unflatten the safe arrays (offsets into frames, frames into boxes) into the nested dict."""
    arrays = detections.read_detections_npz(path)
    video_frames, frame_boxes = arrays["video_frame_offsets"], arrays["frame_box_offsets"]
    frame_indices, boxes = arrays["frame_indices"], arrays["boxes"]
    result: dict[str, dict] = {}
    for row, (class_dir, video_id) in enumerate(zip(arrays["class_dirs"].tolist(), arrays["video_ids"].tolist())):
        frames = range(video_frames[row], video_frames[row + 1])
        result.setdefault(class_dir, {})[video_id] = {
            int(frame_indices[f]): {"human_boxes": boxes[frame_boxes[f]:frame_boxes[f + 1]].copy()} for f in frames}
    return result


def load(path: str | os.PathLike) -> tuple[str, dict]:
    """(kind, nested dict of the original layout) of a ``.npy`` or ``.npz`` file of either kind."""
    path = os.fspath(path)
    extension = os.path.splitext(path)[1]
    if extension == ".npy":
        data = load_pickled_npy(path)
        return _dict_kind(data, path), data
    if extension == ".npz":
        kind = _npz_kind(path)
        return kind, (_scene_labels_from_npz(path) if kind == SCENE_LABELS else _detections_from_npz(path))
    raise SdnError(f"{path}: expected a .npy or .npz file")


def save(path: str | os.PathLike, kind: str, data: Mapping) -> None:
    """Write ``data`` in the format the extension of ``path`` names (validated by the data modules)."""
    extension = os.path.splitext(os.fspath(path))[1]
    if extension not in SAVERS[kind]:
        raise SdnError(f"{path}: expected a .npy or .npz file name")
    SAVERS[kind][extension](path, data)


def converted_name(name: str, kind: str, extension: str) -> str:
    """The file name in the other format: detection files swap the fixed names the loader looks for."""
    if kind == DETECTIONS:
        for split in ("train", "val"):
            if name in (ORIGINAL_NAMES[split], SAFE_NAMES[split]):
                return (SAFE_NAMES if extension == ".npz" else ORIGINAL_NAMES)[split]
    return os.path.splitext(name)[0] + extension
