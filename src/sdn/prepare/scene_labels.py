"""``sdn prepare scene-labels``: Places365 scene pseudo labels for every video.

The released labels came from a Places365-trained ResNet run on a few frames per video. This
step does the same with the public checkpoints (``resnet18_places365.pth.tar``,
``resnet50_places365.pth.tar``: torchvision ResNets with 365 outputs whose ``state_dict`` keys
carry DataParallel's ``module.`` prefix), loaded without unpickling code. For each video it
classifies K evenly spaced frames (5 by default, like the released labels) and stores the
multiple-frame layout ``{class: {video id: {'pred_cls': int64 [K], 'probs': float32 [K, 365]}}}``:
``probs`` are softmax probabilities, ``pred_cls`` their arg-max. Training averages ``probs``
over frames (soft labels) or takes the most frequent ``pred_cls`` (hard labels).

Preprocessing is the Places365 demo's: resize to 256x256, centre crop 224, ImageNet mean/std
(``--resize short`` keeps the aspect ratio and resizes the short side to 256 instead).
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from collections.abc import Callable

import numpy as np
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from sdn.checkpoint import model_state, read_checkpoint
from sdn.data.annotations import VideoEntry
from sdn.data.video import open_video
from sdn.errors import BadSampleError, SdnError, first_line
from sdn.prepare import formats, runner
from sdn.prepare.common import Failure, evenly_spaced, resolve_device

RESIZE, CROP = 256, 224
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# blocks per stage and block type of torchvision's ResNets
RESNETS = {((2, 2, 2, 2), False): "resnet18", ((3, 4, 6, 3), False): "resnet34", ((3, 4, 6, 3), True): "resnet50",
           ((3, 4, 23, 3), True): "resnet101", ((3, 8, 36, 3), True): "resnet152"}
SAFE_NAMES = {"train": "places_train.npz", "val": "places_val.npz"}
ORIGINAL_NAMES = {"train": "places_train.npy", "val": "places_val.npy"}


# ----------------------------------------------------------------------------------------------
# The scene model


def resnet_name(state: dict[str, torch.Tensor], path: str) -> str:
    """Which torchvision ResNet a state dict belongs to, from its blocks per stage and block type."""
    blocks = tuple(len({key.split(".")[1] for key in state if key.startswith(f"layer{stage}.")})
                   for stage in range(1, 5))
    name = RESNETS.get((blocks, "layer1.0.conv3.weight" in state))
    if name is None or "fc.weight" not in state:
        raise SdnError(f"{path}: not a torchvision ResNet state dict (blocks per stage {blocks}); the "
                       "Places365 ResNet checkpoints (resnet18/resnet50_places365.pth.tar) are supported")
    return name


def load_scene_model(path: str) -> nn.Module:
    """A torchvision ResNet with the checkpoint's weights (``{'state_dict': ...}`` or a bare state dict).

    Loaded with ``weights_only``, so a tampered file cannot run code; ``module.`` prefixes are dropped.
    """
    state = model_state(read_checkpoint(path), path)
    name = resnet_name(state, path)
    model = torchvision.models.get_model(name, weights=None, num_classes=state["fc.weight"].shape[0])
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise SdnError(f"{path}: weights do not fit a {name} ({first_line(error)})") from None
    return model.eval()


def read_categories(path: str, n_classes: int) -> list[str]:
    """Scene names from ``categories_places365.txt`` ("/a/airfield 0" lines) for the summary."""
    try:
        with open(path, encoding="utf-8") as handle:
            names = [line.split()[0] for line in handle if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise SdnError(f"{path}: cannot read the category names ({error})") from None
    if len(names) != n_classes:
        raise SdnError(f"{path}: {len(names)} category names, but the model has {n_classes} outputs")
    return [name[3:] if name[:1] == "/" and name[2:3] == "/" else name for name in names]


# ----------------------------------------------------------------------------------------------
# Frames


def preprocess(frames: torch.Tensor, resize: str) -> torch.Tensor:
    """uint8 ``[K, 3, H, W]`` frames to uint8 ``[K, 3, 224, 224]`` model inputs (normalised on the device)."""
    size = [RESIZE, RESIZE] if resize == "square" else RESIZE
    return TF.center_crop(TF.resize(frames.contiguous(), size, antialias=True), [CROP, CROP])


class SceneFrames(Dataset):
    """The K preprocessed frames of each video; a video that cannot be read yields a Failure instead."""

    def __init__(self, entries: list[VideoEntry], frames: int, resize: str):
        self.entries, self.frames, self.resize = entries, frames, resize

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, Failure | None]:
        entry = self.entries[index]
        try:
            frames = open_video(entry.path, entry.n_frames).read(evenly_spaced(entry.n_frames, self.frames))
        except BadSampleError as error:
            return index, None, Failure(error.path, error.reason)
        return index, preprocess(frames, self.resize), None


def normalise(batch: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std of uint8 inputs, done on the device so that workers ship 4x fewer bytes."""
    mean = torch.tensor(MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=batch.device).view(1, 3, 1, 1)
    return (batch.float() / 255.0 - mean) / std


@torch.inference_mode()
def classify(model: nn.Module, frames: torch.Tensor, device: torch.device) -> np.ndarray:
    """Softmax probabilities ``[N, classes]`` (float32) of uint8 model inputs."""
    return torch.softmax(model(normalise(frames.to(device))).float(), dim=1).cpu().numpy()


def label_videos(model: nn.Module, device: torch.device, args: argparse.Namespace, entries: list[VideoEntry],
                 save: runner.Save, progress: bool) -> list[Failure]:
    """Classify K frames of every video, about ``batch_size`` frames per forward pass."""
    videos_per_batch = max(1, args.batch_size // args.frames)
    loader = DataLoader(SceneFrames(entries, args.frames, args.resize), batch_size=videos_per_batch, collate_fn=list,
                        num_workers=args.workers)
    failures: list[Failure] = []
    with tqdm(total=len(entries), desc="scene labels", unit="video", disable=not progress) as bar:
        for items in loader:
            readable = [(index, frames) for index, frames, _ in items if frames is not None]
            failures += [failure for _, _, failure in items if failure is not None]
            if readable:
                probs = classify(model, torch.cat([frames for _, frames in readable]), device)
                bounds = np.cumsum([0] + [len(frames) for _, frames in readable])
                for (index, _), start, stop in zip(readable, bounds[:-1], bounds[1:]):
                    video = probs[start:stop]
                    save(entries[index], {"pred_cls": video.argmax(axis=1).astype(np.int64), "probs": video})
            bar.update(len(items))
    return failures


def describe(categories: list[str] | None) -> Callable[[dict], str]:
    """The summary's most frequent scenes (each video's majority scene), to eyeball the labels."""
    def summary(results: dict) -> str:
        votes = Counter(int(np.bincount(value["pred_cls"]).argmax())
                        for videos in results.values() for value in videos.values())
        top = [f"{categories[c] if categories else f'place {c}'} {n / sum(votes.values()):.0%}"
               for c, n in votes.most_common(5)]
        return f"; most frequent scenes: {', '.join(top)}"
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdn prepare scene-labels",
        description="Run a Places365 scene classifier on K frames of every training and validation video and "
        "write scene pseudo labels (--place_pred_path) as places_{train,val}.npz (and, with --original, the "
        "released .npy layout). Resumable: rerun the same command after an interruption.")
    parser.add_argument("--checkpoint", required=True,
                        help="Places365 ResNet checkpoint (resnet18_places365.pth.tar, resnet50_places365.pth.tar) "
                        "or a plain torchvision ResNet state dict")
    parser.add_argument("--categories", help="categories_places365.txt, to name the scenes in the summary")
    parser.add_argument("--frames", type=int, default=5, help="Frames per video, evenly spaced (default 5)")
    parser.add_argument("--resize", choices=("square", "short"), default="square",
                        help="square: 256x256 as the Places365 demo (default); short: short side 256")
    runner.add_common_arguments(parser, 64, "Frames per forward pass (default 64)")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.frames < 1:
        raise SdnError(f"--frames must be at least 1, got {args.frames}")
    model = load_scene_model(args.checkpoint)
    device = resolve_device(args.device)
    model.to(device)
    n_classes = model.fc.out_features
    categories = read_categories(args.categories, n_classes) if args.categories else None
    settings = {"checkpoint": os.path.abspath(args.checkpoint), "frames": args.frames, "resize": args.resize}
    task = runner.Task(formats.SCENE_LABELS, SAFE_NAMES, ORIGINAL_NAMES, settings,
                       lambda entries, save, progress: label_videos(model, device, args, entries, save, progress),
                       describe(categories))
    return runner.run_task(args, task)
