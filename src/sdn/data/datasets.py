"""Clip datasets and the ``--dataset`` factories of the original.

One ``ClipDataset`` serves every dataset name; what differs is which clips it holds and which
targets it adds. An item is a dict:

* ``clip``: uint8 ``[3, T, S, S]`` (normalisation happens once per batch, on the device);
* ``label``: the class index (-1 when unlabelled);
* ``place``: the scene target, when scene labels are attached (soft float32 ``[P]`` or hard index);
* ``is_masking``: whether the clip counts as human-masked, for the human-mask dataset;
* ``video_id``: for test sets;
* ``actor_mask``: bool ``[T, S, S]``, the actor's pixels cropped and flipped with the clip, only
  for training sets of a method that moves actors (``--debias actorcutmix``).

Randomness (temporal crop, mask draw, spatial crop and flip) comes from a ``random.Random``
seeded by (seed, epoch, index), so clips do not depend on worker count or on what ran before.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from sdn.config import Options
from sdn.data.annotations import (ClipSample, VideoEntry, activitynet_class_names, count_clips,
                                  diving48_class_names, load_json, make_clips, read_activitynet, read_diving48,
                                  read_kinetics, read_labels_database, read_ucf_hmdb)
from sdn.data.detections import HumanDetections, repeat_to_length
from sdn.data.human_masks import HumanMasks
from sdn.data.masking import box_slices, is_masking, mask_background, mask_humans
from sdn.data.scene_labels import SceneLabels
from sdn.data.video import open_video
from sdn.errors import BadSampleError, SdnError
from sdn.methods import needs_actor_mask
from sdn.seeding import mix_seed

MASK_MODES = (None, "human", "background")
KINETICS_FAMILY = ("kinetics", "kinetics_adv", "kinetics_adv_msk", "kinetics_bkgmsk")
MASK_TH = 0.5  # share of masked frames that makes a clip "masked" (a constructor default in the original)


class ActorMasks:
    """Where the actor is in each frame: per-pixel masks when there are some, else detection boxes.

    Masks are returned at the decoded frames' size, before any crop, so the clip's spatial
    transform can move them with the frames.
    """

    def __init__(self, masks: HumanMasks | None = None, detections: HumanDetections | None = None,
                 box_threshold: float = 0.4):
        if (masks is None) == (detections is None):
            raise ValueError("ActorMasks takes either pixel masks or detections")
        self.masks, self.detections, self.box_threshold = masks, detections, box_threshold

    @property
    def path(self) -> str:
        return (self.masks or self.detections).path

    def has(self, class_dir: str, video_id: str) -> bool:
        return (self.masks or self.detections).has(class_dir, video_id)

    def frames(self, video: VideoEntry, indices: Sequence[int], height: int, width: int) -> torch.Tensor:
        """bool ``[len(indices), height, width]`` actor pixels of the 1-based frames ``indices``."""
        if self.masks is not None:
            mask = torch.from_numpy(self.masks.frames(video.class_dir, video.video_id, indices))
            if mask.shape[1:] != (height, width):  # masks stored at another resolution than the decoded frames
                mask = F.interpolate(mask[None].float(), size=(height, width), mode="nearest")[0] > 0.5
            return mask
        mask = torch.zeros((len(indices), height, width), dtype=torch.bool)
        for t, index in enumerate(indices):
            for box in self._boxes(video, index):
                region = box_slices(box, height, width)
                if region is not None:
                    mask[t, region[0], region[1]] = True
        return mask

    def _boxes(self, video: VideoEntry, index: int) -> np.ndarray:
        """Boxes scoring at least the threshold; a frame the detector skipped has none."""
        try:
            boxes = self.detections.boxes(video.class_dir, video.video_id, index)
        except SdnError:  # the video is known (checked at construction); only this frame has no entry
            return np.zeros((0, 5), dtype=np.float32)
        return boxes[boxes[:, -1] >= np.float32(self.box_threshold)]


class ClipDataset(Dataset):
    """Clips of one subset with their targets."""

    def __init__(self, samples: Sequence[ClipSample], class_names: Sequence[str], spatial, temporal, *,
                 seed: int = 0, scene_labels: SceneLabels | None = None, soft_places: bool = False,
                 detections: HumanDetections | None = None, mask_mode: str | None = None, mask_ratio: float = 0.5,
                 return_video_id: bool = False, skip_bad_samples: bool = False,
                 actor_masks: ActorMasks | None = None):
        if mask_mode not in MASK_MODES:
            raise ValueError(f"mask_mode must be one of {MASK_MODES}, got {mask_mode!r}")
        if mask_mode is not None and detections is None:
            raise ValueError(f"mask_mode {mask_mode!r} needs detections")
        self.samples = list(samples)
        self.class_names = list(class_names)
        self.spatial, self.temporal = spatial, temporal
        self.seed, self.epoch = seed, 0
        self.scene_labels, self.soft_places = scene_labels, soft_places
        self.detections, self.mask_mode, self.mask_ratio = detections, mask_mode, mask_ratio
        self.return_video_id = return_video_id
        self.skip_bad_samples = skip_bad_samples
        self.actor_masks = actor_masks
        if scene_labels is not None:
            self._check_lookups("scene label", scene_labels.has)
        if detections is not None:
            self._check_lookups("human detection", detections.has)
        if actor_masks is not None:
            self._check_lookups(f"actor mask in {actor_masks.path}", actor_masks.has)

    def _check_lookups(self, what: str, has) -> None:
        """Fail at construction, not mid-epoch, when a video has no entry in a label file."""
        for sample in self.samples:
            video = sample.video
            if not has(video.class_dir, video.video_id):
                raise SdnError(f"no {what} for class {video.class_dir!r}, video {video.video_id!r} "
                               f"({video.path}); the label file and the annotation do not match")

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose random clips ``__getitem__`` returns."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """The clip at ``index``; ``key`` may be ``(epoch, index)`` (what training samplers pass)."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        try:
            return self._item(epoch, index)
        except BadSampleError as error:
            if not self.skip_bad_samples:
                raise
            return {"bad_sample": f"{error.path}\t{error.reason}"}

    def _item(self, epoch: int, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        video = sample.video
        rng = random.Random(mix_seed(self.seed, epoch, index))
        self.temporal.randomize(rng)
        indices = self.temporal(list(sample.frame_indices))
        frames = open_video(video.path, video.n_frames).read(indices)
        item: dict[str, Any] = {"label": video.label}
        if self.mask_mode is not None:
            frames, item = self._mask(frames, video, indices, rng, item)
        self.spatial.randomize(rng)
        item["clip"] = self.spatial(frames).permute(1, 0, 2, 3).contiguous()
        if self.actor_masks is not None:
            item["actor_mask"] = self._actor_mask(video, indices, frames.shape[2], frames.shape[3])
        if self.scene_labels is not None:
            item["place"] = self.scene_labels.target(video.class_dir, video.video_id, self.soft_places)
        if self.return_video_id:
            item["video_id"] = video.video_id
        return item

    def _actor_mask(self, video: VideoEntry, indices: list[int], height: int, width: int) -> torch.Tensor:
        """The actor's pixels through the clip's (already drawn) crop, scale and flip: bool ``[T, S, S]``."""
        mask = self.actor_masks.frames(video, indices, height, width)
        as_image = (mask.to(torch.uint8) * 255).unsqueeze(1)  # [T, 1, H, W], scaled like a frame
        return self.spatial(as_image)[:, 0] >= 128

    def _mask(self, frames, video: VideoEntry, indices: list[int], rng: random.Random, item: dict):
        """Mask before cropping, in stored-frame pixels; one draw per clip decides (human or background)."""
        boxes = [self.detections.boxes(video.class_dir, video.video_id, i) for i in indices]
        apply = rng.random() < self.mask_ratio
        if self.mask_mode == "background":
            return mask_background(frames, boxes, apply), item
        frames, n_masked = mask_humans(frames, boxes, apply)
        item["is_masking"] = is_masking(n_masked, len(indices), MASK_TH)
        return frames, item


# ----------------------------------------------------------------------------------------------
# What each --dataset name reads


def _subset_for_test(test_subset: str) -> str:
    return {"val": "validation", "test": "testing"}[test_subset]


def _video_root(opt: Options, phase: str) -> str:
    """Kinetics family: ``/train`` and ``/val`` below ``--video_path``; test reads ``--video_path`` itself."""
    if opt.dataset not in KINETICS_FAMILY:
        return opt.video_path
    if phase == "test":
        # The original read val-subset test clips from <video_path>/<label>/<key>, which does not
        # exist in the README's layout; fall back to <video_path>/val when it does not.
        if opt.test_subset == "val" and not _any_label_dir(opt.video_path, opt.annotation_path):
            return os.path.join(opt.video_path, "val")
        return opt.video_path
    return os.path.join(opt.video_path, "train" if phase == "training" else "val")


def _any_label_dir(video_path: str, annotation_path: str) -> bool:
    labels, _ = read_labels_database(annotation_path)
    return any(os.path.isdir(os.path.join(video_path, label)) for label in labels)


def read_entries(opt: Options, subset: str, root: str) -> tuple[list[str], list[VideoEntry]]:
    """Class names and videos of ``subset`` for every ``--dataset`` except ActivityNet."""
    if opt.dataset == "diving48":
        return read_diving48(opt.annotation_path, root, subset)
    if opt.dataset in ("ucf101", "hmdb51"):
        return read_ucf_hmdb(opt.annotation_path, root, subset)
    return read_kinetics(opt.annotation_path, root, subset)


def class_names_for(opt: Options) -> list[str]:
    """Index-to-name mapping of the dataset's classes (Diving48: vocabulary rows joined by ``_``)."""
    if opt.dataset == "diving48":
        return diving48_class_names(opt.annotation_path)
    if opt.dataset == "activitynet":
        data = load_json(opt.annotation_path)
        return activitynet_class_names(data.get("taxonomy") if isinstance(data, dict) else None, opt.annotation_path)
    return read_labels_database(opt.annotation_path)[0]


def _human_masked(opt: Options, subset: str, names: list[str], entries: list[VideoEntry],
                  n_samples: int, spatial, temporal, seed: int) -> ClipDataset:
    """The human-mask dataset (``kinetics_adv_msk``).

    Videos with enough detections, repeated to the unfiltered length.
    """
    detections = HumanDetections.from_path(opt.human_dets_path, subset)
    total = sum(count_clips(entry, n_samples, opt.sample_duration) for entry in entries)
    kept_entries = [entry for entry in entries
                    if detections.has_enough_detections(entry.class_dir, entry.video_id, entry.n_frames)]
    kept = make_clips(kept_entries, n_samples, opt.sample_duration)
    print(f"len(dataset) after filtering the videos without sufficient detections: [{len(kept)}/{total}]")
    samples = repeat_to_length(kept, total, random.Random(mix_seed(seed, 1)))
    return ClipDataset(samples, names, spatial, temporal, seed=mix_seed(seed, 2), detections=detections,
                       mask_mode="human", mask_ratio=opt.mask_ratio, skip_bad_samples=opt.on_bad_sample == "skip")


def _build(opt: Options, phase: str, spatial, temporal) -> ClipDataset | list[ClipDataset]:
    subset = {"training": "training", "validation": "validation"}.get(phase) or _subset_for_test(opt.test_subset)
    n_samples = {"training": 1, "validation": opt.n_val_samples, "test": 0}[phase]
    root = _video_root(opt, phase)
    seed = mix_seed(opt.manual_seed, {"training": 0, "validation": 1, "test": 2}[phase])
    if opt.dataset == "activitynet":
        names, samples = read_activitynet(opt.annotation_path, root, subset, n_samples, opt.sample_duration)
    else:
        names, entries = read_entries(opt, subset, root)
        samples = make_clips(entries, n_samples, opt.sample_duration)
    dataset = opt.dataset if phase != "test" else _test_dataset_name(opt.dataset)
    extra: dict[str, Any] = {}
    if dataset in ("kinetics_adv", "kinetics_adv_msk"):
        extra = {"scene_labels": SceneLabels.from_path(opt.place_pred_path, subset), "soft_places": opt.is_place_soft}
        _check_num_places(opt, extra["scene_labels"])
    elif dataset == "kinetics_bkgmsk":
        extra = {"detections": HumanDetections.from_path(opt.human_dets_path, subset), "mask_mode": "background",
                 "mask_ratio": opt.mask_ratio}
    extra["skip_bad_samples"] = opt.on_bad_sample == "skip"
    if phase == "training" and needs_actor_mask(opt):
        extra["actor_masks"] = actor_masks_for(opt, subset)
    main = ClipDataset(samples, names, spatial, temporal, seed=seed, return_video_id=phase == "test", **extra)
    if dataset != "kinetics_adv_msk":
        return main
    return [main, _human_masked(opt, subset, names, entries, n_samples, spatial, temporal, seed)]


def actor_masks_for(opt: Options, subset: str) -> ActorMasks:
    """The actor of each clip: ``--human_masks_path`` when given, else the ``--human_dets_path`` boxes."""
    if opt.human_masks_path:
        return ActorMasks(masks=HumanMasks.from_path(opt.human_masks_path, subset))
    return ActorMasks(detections=HumanDetections.from_path(opt.human_dets_path, subset),
                      box_threshold=opt.actorcutmix_det_threshold)


def _test_dataset_name(dataset: str) -> str:
    """Test clips are plain clips; the original rejected the adversarial names here."""
    return "kinetics" if dataset in KINETICS_FAMILY else dataset


def _check_num_places(opt: Options, labels: SceneLabels) -> None:
    if labels.num_places != opt.num_places_classes:
        raise SdnError(f"{opt.place_pred_path}: the scene labels have {labels.num_places} places but "
                       f"--num_places_classes is {opt.num_places_classes}")


def get_training_set(opt: Options, spatial, temporal) -> ClipDataset | list[ClipDataset]:
    """The training set of ``--dataset``; ``kinetics_adv_msk`` gives [unmasked, human-masked]."""
    return _build(opt, "training", spatial, temporal)


def get_validation_set(opt: Options, spatial, temporal) -> ClipDataset | list[ClipDataset]:
    """The validation set (about ``--n_val_samples`` windows per video)."""
    return _build(opt, "validation", spatial, temporal)


def get_test_set(opt: Options, spatial, temporal) -> ClipDataset:
    """The ``--test_subset`` clips, consecutive windows per video, with video ids."""
    return _build(opt, "test", spatial, temporal)

