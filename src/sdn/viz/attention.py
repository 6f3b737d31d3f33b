"""Actor attention: how much of a model's activation map falls on the people in the clip.

SDN's aim is a model that looks at the actor, not the scene. With human boxes per frame, the
share of the map's mass inside the boxes turns that into a number: 1 when the model looks only at
people, about the boxes' area share when it looks everywhere alike.

Boxes come in stored-frame pixels (the detection files); :func:`map_boxes` carries them through
the same deterministic resize and crop the clip went through, so they line up with the map.
Frames without a confident person are left out of a clip's share: a detector miss says nothing
about where the model looks.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from sdn.data.datasets import ClipDataset
from sdn.data.detections import HumanDetections
from sdn.data.transforms import CenterCrop, Compose, CornerCrop, Scale
from sdn.data.video import open_video
from sdn.errors import SdnError
from sdn.seeding import mix_seed
from sdn.viz.cam import activation_maps

MIN_SCORE = 0.3  # detections below this score are not people (the original's detection threshold)


def _steps(transform: Any) -> list[Any]:
    """The transform's elementary steps, in order (nested ``Compose`` flattened)."""
    if isinstance(transform, Compose):
        return [step for inner in transform.transforms for step in _steps(inner)]
    return [transform]


def map_boxes(boxes: np.ndarray, frame_size: tuple[int, int], transform: Any) -> np.ndarray:
    """Boxes ``[N, >=4]`` (x1, y1, x2, y2 in pixels of a ``(width, height)`` frame) through ``transform``.

    ``transform`` is a deterministic spatial transform made of ``Scale``, ``CenterCrop`` and
    ``CornerCrop`` (the validation and test pipelines). A resize scales coordinates by the size
    ratio, a crop shifts them and clips them to the crop. Returns float32 ``[N, 4]`` in pixels of
    the transformed frame; a box that leaves the crop becomes empty (zero width or height).
    """
    out = np.asarray(boxes, dtype=np.float64)[:, :4].copy()
    width, height = frame_size
    for step in _steps(transform):
        if isinstance(step, Scale):
            new_width, new_height = step.output_size(width, height)
            out[:, 0::2] *= new_width / width
            out[:, 1::2] *= new_height / height
            width, height = new_width, new_height
        elif isinstance(step, (CenterCrop, CornerCrop)):
            x1, y1, x2, y2 = step.crop_box(width, height)
            width, height = x2 - x1, y2 - y1
            out[:, 0::2] = np.clip(out[:, 0::2] - x1, 0, width)
            out[:, 1::2] = np.clip(out[:, 1::2] - y1, 0, height)
        else:
            raise SdnError(f"cannot map human boxes through {type(step).__name__}: actor attention needs the "
                           "deterministic validation/test transforms (Scale, CenterCrop, CornerCrop)")
    return out.astype(np.float32)


def box_mask(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """bool ``[H, W]``: pixels whose centre lies inside any of the boxes ``[N, >=4]``."""
    ys = np.arange(height)[:, None] + 0.5
    xs = np.arange(width)[None, :] + 0.5
    mask = np.zeros((height, width), dtype=bool)
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64)[:, :4]:
        mask |= (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
    return mask


def actor_attention(cam: torch.Tensor | np.ndarray, boxes_per_frame: Sequence[np.ndarray]) -> float:
    """Share of the map's mass inside the boxes, over the frames that have at least one box.

    ``cam`` is a non-negative map ``[T, H, W]`` (e.g. from :mod:`sdn.viz.cam`); ``boxes_per_frame``
    holds ``T`` arrays ``[N, >=4]`` in the map's pixel coordinates. NaN when no frame has a box or
    the map has no mass on those frames.
    """
    values = cam.detach().cpu().numpy() if isinstance(cam, torch.Tensor) else np.asarray(cam)
    if values.ndim != 3 or len(boxes_per_frame) != values.shape[0]:
        raise ValueError(f"expected a map [T, H, W] and T box arrays, got {values.shape} and {len(boxes_per_frame)}")
    inside = total = 0.0
    for frame, boxes in zip(values, boxes_per_frame):
        if len(boxes) == 0:
            continue
        inside += float(frame[box_mask(boxes, *frame.shape)].sum())
        total += float(frame.sum())
    return inside / total if total > 0 else math.nan


def confident_boxes(boxes: np.ndarray, min_score: float = MIN_SCORE) -> np.ndarray:
    """Detections ``[N, 5]`` (score last) scoring at least ``min_score``."""
    return boxes[boxes[:, 4] >= min_score] if len(boxes) else boxes


class BoxedClips(Dataset):
    """A validation/test ``ClipDataset`` whose items also carry ``boxes``: per clip frame, the
    confident human boxes in clip pixels (float32 ``[N, 4]``).

    The clip's frame indices are recomputed exactly as ``ClipDataset.__getitem__`` draws them
    (its temporal transform, randomised from the same ``(seed, epoch, index)`` generator, first).
    The stored frame size is read from the clip's first frame.
    """

    def __init__(self, dataset: ClipDataset, detections: HumanDetections, min_score: float = MIN_SCORE):
        self.dataset, self.detections, self.min_score = dataset, detections, min_score
        for sample in dataset.samples:
            if not detections.has(sample.video.class_dir, sample.video.video_id):
                raise SdnError(f"{detections.path}: no human detections for class {sample.video.class_dir!r}, "
                               f"video {sample.video.video_id!r} ({sample.video.path})")

    def __len__(self) -> int:
        return len(self.dataset)

    def _frame_indices(self, index: int) -> list[int]:
        rng = random.Random(mix_seed(self.dataset.seed, self.dataset.epoch, index))
        self.dataset.temporal.randomize(rng)
        return self.dataset.temporal(list(self.dataset.samples[index].frame_indices))

    def _frame_boxes(self, class_dir: str, video_id: str, frame_index: int) -> np.ndarray:
        try:
            return confident_boxes(self.detections.boxes(class_dir, video_id, frame_index), self.min_score)
        except SdnError:  # the video is known (checked above): this frame simply has no detection entry
            return np.zeros((0, 5), dtype=np.float32)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        video = self.dataset.samples[index].video
        indices = self._frame_indices(index)
        height, width = open_video(video.path, video.n_frames).read(indices[:1]).shape[-2:]
        item["boxes"] = [map_boxes(self._frame_boxes(video.class_dir, video.video_id, i), (width, height),
                                   self.dataset.spatial) for i in indices]
        return item


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack clips and labels; keep the ragged box lists as they are."""
    return {"clip": torch.stack([item["clip"] for item in items]),
            "label": torch.as_tensor([item["label"] for item in items]),
            "boxes": [item["boxes"] for item in items]}


@dataclass(frozen=True)
class AttentionSummary:
    """Actor attention over a dataset: the mean of the per-clip shares that are defined."""

    mean: float  # NaN when no clip had a box
    shares: list[float]  # per clip, in dataset order (NaN where undefined)

    @property
    def counted(self) -> int:
        return sum(not math.isnan(share) for share in self.shares)


def dataset_actor_attention(model: nn.Module, dataset: Dataset, prepare: Callable[[Tensor], Tensor], *,
                            method: str = "cam",
                            layer: str | None = None, target: str = "label", batch_size: int = 8,
                            device: torch.device | str = "cpu", num_workers: int = 0,
                            progress: bool = True) -> AttentionSummary:
    """Mean actor attention of ``model`` over ``dataset`` (items with ``clip``, ``label``, ``boxes``,
    e.g. :class:`BoxedClips`).

    ``target`` picks the class each map explains: ``label`` (the true class: does the model find
    the action where the actor is?) or ``predicted``. ``prepare`` turns uint8 clips into the
    model's input on ``device`` (``LoadedModel.prepare``).
    """
    if target not in ("label", "predicted"):
        raise SdnError(f"target {target!r}: must be 'label' or 'predicted'")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate)
    shares: list[float] = []
    for batch in tqdm(loader, desc="actor attention", unit="batch", disable=not progress):
        clips = prepare(batch["clip"])
        classes = batch["label"].to(device) if target == "label" else None
        maps = activation_maps(model, clips, method, layer, classes).maps
        shares.extend(actor_attention(cam, boxes) for cam, boxes in zip(maps, batch["boxes"]))
    defined = [share for share in shares if not math.isnan(share)]
    return AttentionSummary(float(np.mean(defined)) if defined else math.nan, shares)
