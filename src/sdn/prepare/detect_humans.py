"""``sdn prepare detect-humans``: per-frame human boxes for the human-mask loss.

A torchvision Faster R-CNN (ResNet-50 FPN by default) runs on the stored frames; only the COCO
``person`` class (label 1) with score >= ``--score_threshold`` is kept. Boxes come back in the
pixels of the frames as stored (torchvision maps them back from its internal resize), which is
what the masking code expects. The output is the original layout ``{class: {video id: {frame
(1-based): {'human_boxes': float32 [N, 5]}}}}`` with columns x1, y1, x2, y2, score, an entry for
every frame 1..n_frames and ``[0, 5]`` arrays for frames without a person.

``--every k`` runs the detector on frames 1, 1+k, 1+2k, ... and the last frame only, and fills
the frames between two keyframes a < b by linear interpolation:

* boxes of a and b are paired greedily by IoU: the pair with the highest IoU first, then the next
  highest among unpaired boxes, down to ``--match_iou`` (ties: lower index in a, then in b);
* a paired box at frame t is ``(1 - w) * box_a + w * box_b`` with ``w = (t - a) / (b - a)``, for the
  four coordinates and the score alike;
* an unpaired box is held unchanged over the half of the gap nearer to its own keyframe
  (frames with ``t - a <= b - t`` for boxes of a, the others for boxes of b): a person entering or
  leaving is neither stretched across the gap nor dropped.

Weights come from ``--weights`` or torchvision's cache (``$TORCH_HOME/hub/checkpoints``); nothing
is downloaded.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from sdn.checkpoint import model_state, read_checkpoint
from sdn.data.annotations import VideoEntry
from sdn.data.detections import ORIGINAL_NAMES, SAFE_NAMES
from sdn.data.video import open_video
from sdn.errors import BadSampleError, SdnError, first_line
from sdn.prepare import formats, runner
from sdn.prepare.common import Failure, resolve_device

DETECTORS = ("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn",
             "fasterrcnn_mobilenet_v3_large_320_fpn")
PERSON = 1  # COCO category id of 'person' in torchvision's detection models

Detector = Callable[[list[torch.Tensor]], list[dict[str, torch.Tensor]]]


# ----------------------------------------------------------------------------------------------
# Boxes


def person_boxes(output: dict[str, torch.Tensor], threshold: float) -> np.ndarray:
    """float32 ``[N, 5]`` (x1, y1, x2, y2, score) of the person detections scoring at least ``threshold``."""
    keep = (output["labels"] == PERSON) & (output["scores"] >= threshold)
    boxes = torch.cat([output["boxes"][keep], output["scores"][keep, None]], dim=1)
    return boxes.detach().cpu().numpy().astype(np.float32).reshape(-1, 5)


def keyframes(n_frames: int, every: int) -> list[int]:
    """1, 1+every, ... and always the last frame, so every frame lies between two keyframes."""
    frames = list(range(1, n_frames + 1, every))
    return frames if frames[-1] == n_frames else frames + [n_frames]


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[len(a), len(b)]`` of x1, y1, x2, y2 boxes (0 where a union is empty)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter, dtype=np.float64), where=union > 0)


def greedy_match(a: np.ndarray, b: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """Pairs (i, j) of boxes, highest IoU first, each box used once, IoU at least ``min_iou``."""
    iou = box_iou(a[:, :4].astype(np.float64), b[:, :4].astype(np.float64))
    candidates = sorted(((-iou[i, j], i, j) for i in range(len(a)) for j in range(len(b)) if iou[i, j] >= min_iou))
    used_a, used_b, pairs = set(), set(), []
    for _, i, j in candidates:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    return sorted(pairs)


def _between(a: int, boxes_a: np.ndarray, b: int, boxes_b: np.ndarray, min_iou: float) -> dict[int, np.ndarray]:
    """Boxes of the frames strictly between keyframes a and b (see the module docstring)."""
    pairs = greedy_match(boxes_a, boxes_b, min_iou)
    lone_a = np.delete(boxes_a, [i for i, _ in pairs], axis=0)
    lone_b = np.delete(boxes_b, [j for _, j in pairs], axis=0)
    start = boxes_a[[i for i, _ in pairs]].astype(np.float64)
    stop = boxes_b[[j for _, j in pairs]].astype(np.float64)
    frames = {}
    for t in range(a + 1, b):
        w = (t - a) / (b - a)
        held = lone_a if t - a <= b - t else lone_b
        frames[t] = np.concatenate([(1 - w) * start + w * stop, held]).astype(np.float32).reshape(-1, 5)
    return frames


def interpolate(detected: dict[int, np.ndarray], n_frames: int, min_iou: float) -> dict[int, np.ndarray]:
    """Boxes for every frame 1..n_frames from the boxes of the keyframes in ``detected``."""
    frames = dict(detected)
    marks = sorted(detected)
    for a, b in zip(marks[:-1], marks[1:]):
        frames.update(_between(a, detected[a], b, detected[b], min_iou))
    return {t: frames[t] for t in range(1, n_frames + 1)}


# ----------------------------------------------------------------------------------------------
# The detector


def cached_weights(name: str) -> str | None:
    """torchvision's cache file of the default COCO weights of ``name``, if it was downloaded before."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    return path if os.path.isfile(path) else None


def load_detector(name: str, weights: str | None, score_threshold: float, min_size: int | None,
                  options: Mapping[str, Any] | None = None) -> nn.Module:
    """A torchvision detector with weights from ``weights`` or the cache, read without unpickling code.

    Any torchvision detection model works (``segment-humans`` loads Mask R-CNN here too);
    ``options`` are further keyword arguments of its constructor (e.g. ``box_detections_per_img``).
    """
    path = weights or cached_weights(name)
    if path is None:
        url = torchvision.models.get_model_weights(name).DEFAULT.url
        raise SdnError(f"no weights for {name}: pass --weights PATH, or put {os.path.basename(url)} (from {url}) "
                       f"in {os.path.join(torch.hub.get_dir(), 'checkpoints')}; nothing is downloaded")
    checkpoint = read_checkpoint(path)
    state = model_state(checkpoint.get("model", checkpoint), path)  # torchvision reference scripts save 'model'
    options = {"box_score_thresh": score_threshold, **({"min_size": min_size} if min_size else {}), **(options or {})}
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None, **options)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise SdnError(f"{path}: weights do not fit a {name} ({first_line(error)})") from None
    return model.eval()


# ----------------------------------------------------------------------------------------------
# Videos


class KeyframeChunks(Dataset):
    """Keyframes of the videos in chunks of ``batch_size``: (video, frame indices, frames or a Failure, last)."""

    def __init__(self, entries: list[VideoEntry], every: int, batch_size: int):
        self.entries = entries
        self.chunks = []
        for video, entry in enumerate(entries):
            marks = keyframes(entry.n_frames, every)
            starts = range(0, len(marks), batch_size)
            self.chunks += [(video, marks[s:s + batch_size], s + batch_size >= len(marks)) for s in starts]

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, index: int) -> tuple[int, list[int], torch.Tensor | Failure, bool]:
        video, marks, last = self.chunks[index]
        entry = self.entries[video]
        try:
            return video, marks, open_video(entry.path, entry.n_frames).read(marks), last
        except BadSampleError as error:
            return video, marks, Failure(error.path, error.reason), last


@torch.inference_mode()
def detect(detector: Detector, frames: torch.Tensor, device: torch.device, threshold: float) -> list[np.ndarray]:
    """Person boxes of each uint8 ``[3, H, W]`` frame, in that frame's pixels."""
    outputs = detector([frame.to(device).float() / 255.0 for frame in frames])
    return [person_boxes(output, threshold) for output in outputs]


def keyframe_loop(entries: list[VideoEntry], args: argparse.Namespace, infer: Callable[[torch.Tensor], list[Any]],
                  finish: Callable[[VideoEntry, dict[int, Any]], None], progress: bool, desc: str) -> list[Failure]:
    """Run ``infer`` on the keyframes of every video; call ``finish(entry, {keyframe: result})`` per video.

    Shared by ``detect-humans`` (boxes, interpolated) and ``segment-humans`` (masks, nearest
    keyframe): frames are read by ``--workers`` loader processes in chunks of ``--batch_size``
    keyframes, a video that cannot be read (or that ``finish`` rejects with a BadSampleError) is a
    Failure (its other chunks are skipped), and each video is finished as soon as its last chunk
    is done, so a run can be resumed video by video.
    """
    dataset = KeyframeChunks(entries, args.every, args.batch_size)
    loader = DataLoader(dataset, batch_size=None, num_workers=args.workers)
    found: dict[int, dict[int, Any]] = {}
    failed: dict[int, Failure] = {}
    with tqdm(total=sum(len(marks) for _, marks, _ in dataset.chunks), desc=desc, unit="frame",
              disable=not progress) as bar:
        for video, marks, frames, last in loader:
            bar.update(len(marks))
            if video in failed:
                continue
            if isinstance(frames, Failure):
                failed[video] = frames
                found.pop(video, None)
                continue
            found.setdefault(video, {}).update(zip(marks, infer(frames)))
            if last:
                try:
                    finish(entries[video], found.pop(video))
                except BadSampleError as error:
                    failed[video] = Failure(error.path, error.reason or str(error))
    return list(failed.values())


def detect_videos(detector: Detector, device: torch.device, args: argparse.Namespace, entries: list[VideoEntry],
                  save: runner.Save, progress: bool) -> list[Failure]:
    """Detect on the keyframes of every video, interpolate the rest, save each video when its last chunk is done."""
    def finish(entry: VideoEntry, detected: dict[int, np.ndarray]) -> None:
        per_frame = interpolate(detected, entry.n_frames, args.match_iou)
        save(entry, {t: {"human_boxes": b} for t, b in per_frame.items()})

    return keyframe_loop(entries, args, lambda frames: detect(detector, frames, device, args.score_threshold),
                         finish, progress, "human detections")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdn prepare detect-humans",
        description="Detect people on the stored frames of every training and validation video with a torchvision "
        "detector and write the human detections (--human_dets_path) as detection_{train,val}.npz (and, with "
        "--original, detection_{train,val}_merged_rearranged.npy). Resumable: rerun the same command after an "
        "interruption.")
    parser.add_argument("--model", choices=DETECTORS, default=DETECTORS[0], help=f"Detector (default {DETECTORS[0]})")
    parser.add_argument("--weights", help="Detector weights (a torchvision state dict); default: torchvision's cache")
    parser.add_argument("--score_threshold", type=float, default=0.1,
                        help="Keep person boxes scoring at least this (default 0.1; training uses those above 0.3)")
    parser.add_argument("--every", type=int, default=1,
                        help="Detect on every k-th frame (and the last), interpolate between (default 1: every frame)")
    parser.add_argument("--match_iou", type=float, default=0.3,
                        help="Least IoU for two keyframe boxes to be interpolated as one person (default 0.3)")
    parser.add_argument("--min_size", type=int, help="Detector's internal short-side size (default: the model's)")
    runner.add_common_arguments(parser, 16, "Frames per forward pass (default 16)")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.every < 1:
        raise SdnError(f"--every must be at least 1, got {args.every}")
    detector = load_detector(args.model, args.weights, args.score_threshold, args.min_size)
    device = resolve_device(args.device)
    detector.to(device)
    settings = {"model": args.model, "weights": os.path.abspath(args.weights or cached_weights(args.model)),
                "score_threshold": args.score_threshold, "every": args.every, "match_iou": args.match_iou,
                "min_size": args.min_size}
    task = runner.Task(formats.DETECTIONS, SAFE_NAMES, ORIGINAL_NAMES, settings,
                       lambda entries, save, progress: detect_videos(detector, device, args, entries, save, progress))
    return runner.run_task(args, task)
