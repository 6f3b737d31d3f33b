"""``sdn prepare segment-humans``: per-frame pixel masks of the people in every video (``--human_masks_path``).

Boxes carry a rectangle of background with the actor, so a test set that moves actors onto new
backgrounds (``sdn prepare scuba``) built from them still shows part of the original scene;
pixel masks do not. A torchvision Mask R-CNN (``maskrcnn_resnet50_fpn`` or its ``_v2``) runs on
the stored frames, loaded exactly as ``detect-humans`` loads its detector (``--weights`` or
torchvision's cache, read with ``torch.load(weights_only=True)``; nothing is downloaded). A
frame's mask is the union of the instance masks (probability >= ``--mask_threshold``) of every
COCO ``person`` detection scoring at least ``--score_threshold``, in the pixels of the frames as
stored (torchvision pastes each instance mask back at the input's size).

``--every k`` segments frames 1, 1+k, 1+2k, ... and the last frame only; every other frame takes
the mask of the nearest segmented frame (the earlier one when two are equally near). Masks are
not interpolated: a blend of two silhouettes is not a silhouette.

Output: ``masks_train.npz`` / ``masks_val.npz`` in ``sdn.data.human_masks``' format (source
``segmentation``), keyed by (class directory, video id) as the human detections are. The run is
resumable like the other model steps: each finished video is kept as a one-video mask file in
``.<output name>.partial/`` and the final file is assembled from those one video at a time, so
a dataset's masks never have to fit in memory.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from sdn.data.annotations import VideoEntry
from sdn.data.human_masks import FILE_NAMES, HumanMasks, pack_mask, write_packed_human_masks
from sdn.errors import BadSampleError, SdnError
from sdn.prepare import runner
from sdn.prepare.common import Failure, resolve_device
from sdn.prepare.detect_humans import PERSON, Detector, cached_weights, keyframe_loop, load_detector

MODELS = ("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2")
KIND = "human masks"
SOURCE = "segmentation"


# ----------------------------------------------------------------------------------------------
# Masks


def person_mask(output: Mapping[str, torch.Tensor], threshold: float, mask_threshold: float,
                height: int, width: int) -> np.ndarray:
    """bool ``[H, W]``: pixels of any person instance scoring at least ``threshold`` (all False without one)."""
    keep = (output["labels"] == PERSON) & (output["scores"] >= threshold)
    masks = output["masks"][keep]
    if masks.shape[0] == 0:
        return np.zeros((height, width), dtype=bool)
    return (masks[:, 0] >= mask_threshold).any(dim=0).cpu().numpy()


@torch.inference_mode()
def segment(model: Detector, frames: torch.Tensor, device: torch.device, threshold: float,
            mask_threshold: float) -> list[np.ndarray]:
    """The person mask of each uint8 ``[3, H, W]`` frame, at the frame's size."""
    height, width = frames.shape[-2:]
    outputs = model([frame.to(device).float() / 255.0 for frame in frames])
    return [person_mask(output, threshold, mask_threshold, height, width) for output in outputs]


def nearest_keyframe_masks(found: Mapping[int, np.ndarray], n_frames: int, path: str) -> np.ndarray:
    """bool ``[n_frames, H, W]``: frame t takes the mask of the nearest keyframe (ties: the earlier).

    ``path`` names the video if its keyframes differ in size (a BadSampleError: the video is listed
    as failed, the run goes on).
    """
    marks = sorted(found)
    shapes = {found[t].shape for t in marks}
    if len(shapes) > 1:
        raise BadSampleError(path, f"frames have different sizes {sorted(shapes)}")
    stacked = np.stack([found[t] for t in marks])
    frames = np.arange(1, n_frames + 1)
    after = np.clip(np.searchsorted(marks, frames), 0, len(marks) - 1)  # first keyframe >= t
    before = np.clip(after - 1, 0, len(marks) - 1)
    keys = np.asarray(marks)
    nearer_before = (frames - keys[before]) <= (keys[after] - frames)
    choice = np.where((keys[after] == frames) | ~nearer_before, after, before)
    return stacked[choice]


def segment_videos(model: Detector, device: torch.device, args: argparse.Namespace, entries: list[VideoEntry],
                   save: runner.Save, progress: bool) -> list[Failure]:
    """Segment the keyframes of every video, fill the other frames, save each video when it is done."""
    def infer(frames: torch.Tensor) -> list[np.ndarray]:
        return segment(model, frames, device, args.score_threshold, args.mask_threshold)

    def finish(entry: VideoEntry, found: dict[int, np.ndarray]) -> None:
        save(entry, nearest_keyframe_masks(found, entry.n_frames, entry.path))

    return keyframe_loop(entries, args, infer, finish, progress, "human masks")


# ----------------------------------------------------------------------------------------------
# Resumable storage


class MaskShards(runner.ShardStore):
    """One finished video = a one-video mask file; the subset's file is assembled from them in a stream."""

    def save(self, entry: VideoEntry, value: Any) -> None:
        mask = np.asarray(value, dtype=bool)
        write_packed_human_masks(self.path(entry), [(entry.class_dir, entry.video_id, tuple(mask.shape))],
                                 [pack_mask(mask)], SOURCE)

    def finish(self, args: argparse.Namespace, task: runner.Task, split: str,
               done: list[VideoEntry]) -> tuple[list[str], str]:
        final = os.path.join(args.out, task.safe_names[split])
        index, frames, with_person = [], 0, 0
        for entry in done:
            shape = HumanMasks(self.path(entry)).shape(entry.class_dir, entry.video_id)
            index.append((entry.class_dir, entry.video_id, shape))

        def packed():
            nonlocal frames, with_person
            for entry, (_, _, shape) in zip(done, index):
                _, bits = HumanMasks(self.path(entry)).packed(entry.class_dir, entry.video_id)
                per_frame = np.unpackbits(bits, count=int(np.prod(shape))).reshape(shape[0], -1)
                frames += shape[0]
                with_person += int(per_frame.any(axis=1).sum())
                yield bits

        write_packed_human_masks(final, index, packed(), SOURCE)
        return [final], f"; a person in {with_person} of {frames} frames ({100 * with_person / max(frames, 1):.0f}%)"


# ----------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdn prepare segment-humans",
        description="Segment people on the stored frames of every training and validation video with a torchvision "
        "Mask R-CNN and write per-frame person masks (--human_masks_path) as masks_{train,val}.npz, the input of "
        "sdn prepare scuba. Resumable: rerun the same command after an interruption.")
    parser.add_argument("--model", choices=MODELS, default=MODELS[0], help=f"Segmentation model (default {MODELS[0]})")
    parser.add_argument("--weights", help="Model weights (a torchvision state dict); default: torchvision's cache")
    parser.add_argument("--score_threshold", type=float, default=0.5,
                        help="Keep person instances scoring at least this (default 0.5)")
    parser.add_argument("--mask_threshold", type=float, default=0.5,
                        help="A pixel belongs to an instance when its mask probability is at least this (default 0.5)")
    parser.add_argument("--every", type=int, default=1,
                        help="Segment every k-th frame (and the last); the others take the nearest one's mask "
                        "(default 1: every frame)")
    parser.add_argument("--min_size", type=int, help="Model's internal short-side size (default: the model's, 800)")
    parser.add_argument("--max_detections", type=int,
                        help="Instances kept per frame before the person filter (default: the model's, 100); "
                        "lower is faster, as the mask head runs once per instance")
    runner.add_common_arguments(parser, 8, "Frames per forward pass (default 8)", original=False)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.every < 1:
        raise SdnError(f"--every must be at least 1, got {args.every}")
    if not 0.0 <= args.mask_threshold <= 1.0:
        raise SdnError(f"--mask_threshold must be between 0 and 1, got {args.mask_threshold}")
    if args.max_detections is not None and args.max_detections < 1:
        raise SdnError(f"--max_detections must be at least 1, got {args.max_detections}")
    options = {"box_detections_per_img": args.max_detections} if args.max_detections else {}
    model = load_detector(args.model, args.weights, args.score_threshold, args.min_size, options)
    device = resolve_device(args.device)
    model.to(device)
    settings = {"model": args.model, "weights": os.path.abspath(args.weights or cached_weights(args.model)),
                "score_threshold": args.score_threshold, "mask_threshold": args.mask_threshold,
                "every": args.every, "min_size": args.min_size, "max_detections": args.max_detections}
    task = runner.Task(KIND, FILE_NAMES, {}, settings,
                       lambda entries, save, progress: segment_videos(model, device, args, entries, save, progress),
                       store=MaskShards)
    return runner.run_task(args, task)
