"""A 2D network trained on single frames: how far the static cue alone gets.

StillMix (Li et al., ICCV 2023) trains such a *reference network* on frames of the training set
to find the frames that carry static bias; a scene-bias benchmark reports one beside the video
models, as the "biased by design" model that sees no motion. Both uses go through this module:

* :func:`train_frame_reference` trains it from the clips of a dataset (every frame of a clip is a
  sample with the clip's label);
* :class:`FrameReference` scores frames (:meth:`~FrameReference.frame_logits`) and clips
  (:meth:`~FrameReference.clip_logits`, the mean of the per-frame logits);
* :meth:`FrameReference.save` / :meth:`FrameReference.load` keep it as a checksummed,
  weights-only file.

The network is a small 2D CNN of our own (four stride-2 stages of two 3x3 convolutions with
BatchNorm, widths w, 2w, 4w, 8w, global average pooling, one linear layer) rather than the
paper's ImageNet-pretrained ResNet-50: sdn downloads no weights, a network trained from scratch
on the training frames only learns what those frames say (which is the point of a reference),
and at the default width 32 it costs a few MFLOPs per 112x112 frame, cheap beside the 3D model.

Inputs are clips normalised as the training pipeline normalises them (``ClipNormalize``):
pass the same ``normalize`` to :func:`train_frame_reference` that the clips given to
:meth:`~FrameReference.clip_logits` went through.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm import tqdm

from sdn.checkpoint import read_checkpoint, save_checkpoint
from sdn.data.mean_std import get_mean
from sdn.data.transforms import ClipNormalize
from sdn.errors import SdnError
from sdn.seeding import mix_seed

FORMAT = "sdn-frame-reference"
VERSION = 1
DEFAULT_WIDTH = 32
FORMAT_STREAM = 0x2D  # the reference's shuffling, apart from the run's other seeded streams


def _block(inputs: int, outputs: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(outputs),
            nn.ReLU(inplace=True)]


class FrameNet(nn.Module):
    """The small 2D CNN: ``[N, 3, H, W]`` frames -> ``[N, n_classes]`` logits."""

    def __init__(self, n_classes: int, width: int = DEFAULT_WIDTH):
        super().__init__()
        layers: list[nn.Module] = _block(3, width, 1)
        channels = width
        for stage in range(4):
            out = width * 2 ** stage
            layers += _block(channels, out, 2) + _block(out, out, 1)
            channels = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels, n_classes)

    def forward(self, frames: Tensor) -> Tensor:
        return self.fc(self.features(frames))


class FrameReference:
    """A trained :class:`FrameNet` and what it was trained for."""

    def __init__(self, net: FrameNet, n_classes: int, width: int):
        self.net, self.n_classes, self.width = net, n_classes, width

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: torch.device) -> "FrameReference":
        self.net.to(device)
        return self

    @torch.no_grad()
    def frame_logits(self, frames: Tensor) -> Tensor:
        """Logits ``[N, K]`` of normalised frames ``[N, 3, H, W]`` (evaluation mode)."""
        self.net.eval()
        return self.net(frames.to(self.device))

    @torch.no_grad()
    def clip_logits(self, normalized_clips: Tensor) -> Tensor:
        """Mean over frames of the per-frame logits of normalised clips ``[B, 3, T, H, W]`` -> ``[B, K]``."""
        batch, _, frames = normalized_clips.shape[:3]
        logits = self.frame_logits(frames_of(normalized_clips))
        return logits.view(batch, frames, -1).mean(dim=1)

    def save(self, path: str) -> None:
        """Write atomically, with a checksum (read back by :meth:`load`, weights only)."""
        save_checkpoint(path, {"format": FORMAT, "version": VERSION, "n_classes": self.n_classes,
                               "width": self.width,
                               "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()}})

    @classmethod
    def load(cls, path: str, n_classes: int | None = None) -> "FrameReference":
        """Read a file :meth:`save` wrote; ``n_classes``, when given, must match."""
        data = read_checkpoint(path)
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise SdnError(f"{path}: not a frame reference network (expected format {FORMAT!r} version {VERSION})")
        classes, width = data.get("n_classes"), data.get("width")
        if not isinstance(classes, int) or not isinstance(width, int) or classes < 1 or not 1 <= width <= 4096:
            raise SdnError(f"{path}: the frame reference's n_classes/width are not positive integers")
        if n_classes is not None and classes != n_classes:
            raise SdnError(f"{path}: the frame reference was trained for {classes} classes, this run has {n_classes}")
        net = FrameNet(classes, width)
        try:
            net.load_state_dict(data["state_dict"])
        except (KeyError, RuntimeError, TypeError) as error:
            raise SdnError(f"{path}: the frame reference's weights do not fit its network ({str(error).splitlines()[0]})"
                           ) from None
        return cls(net, classes, width)


def frames_of(clips: Tensor) -> Tensor:
    """``[B, 3, T, H, W]`` -> ``[B*T, 3, H, W]`` (clip-major: the frames of clip 0 first)."""
    return clips.transpose(1, 2).flatten(0, 1)


def default_normalize() -> ClipNormalize:
    """sdn's default training normalisation: mean subtraction on the 0..255 scale."""
    return ClipNormalize(get_mean(1, "activitynet"), [1.0, 1.0, 1.0], 1)


class _Indexed(Dataset):
    """A dataset's items with their index (so skipped unreadable clips cannot shift the others)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, dict[str, Any]]:
        return index, self.dataset[index]


def _collate_labelled(items: list[tuple[int, dict[str, Any]]]) -> dict[str, Tensor]:
    """Indices, clips and labels of the readable items (unreadable ones, when a dataset skips them, are dropped)."""
    good = [{"index": index, "clip": item["clip"], "label": item["label"]} for index, item in items if "clip" in item]
    return default_collate(good) if good else {}


def clip_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int, epoch: int,
                workers: int = 0) -> DataLoader:
    """Batches ``{index, clip, label}`` of ``dataset`` at ``epoch`` (its random crops, and the order, fixed by the seed)."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    order = torch.Generator().manual_seed(mix_seed(seed, FORMAT_STREAM, epoch))
    return DataLoader(_Indexed(dataset), batch_size=batch_size, shuffle=shuffle, generator=order if shuffle else None,
                      num_workers=workers, collate_fn=_collate_labelled)


def train_frame_reference(dataset: Dataset, n_classes: int, *, epochs: int, learning_rate: float, batch_size: int,
                          seed: int, device: torch.device, progress: bool = False, width: int = DEFAULT_WIDTH,
                          weight_decay: float = 1e-5, normalize: Callable[[Tensor], Tensor] | None = None,
                          workers: int = 0) -> FrameReference:
    """Train a :class:`FrameReference` on every frame of ``dataset``'s clips (uint8 ``[3, T, S, S]``).

    Each epoch visits one clip per item (the dataset's own random crop of that epoch) and treats
    its T frames as T samples with the clip's label. SGD with momentum 0.9 and weight decay; the
    learning rate drops tenfold at 40% and 80% of the epochs (StillMix's schedule, 20 and 40 of 50).
    Deterministic for a seed on the CPU.
    """
    if epochs < 1 or batch_size < 1 or n_classes < 1:
        raise SdnError(f"frame reference: epochs, batch size and classes must be >= 1 "
                       f"(got {epochs}, {batch_size}, {n_classes})")
    normalize = normalize or default_normalize().to(device)
    with torch.random.fork_rng(devices=[]):  # the run's own random streams stay where they were
        torch.manual_seed(seed)
        net = FrameNet(n_classes, width).to(device)
        optimizer = torch.optim.SGD(net.parameters(), lr=learning_rate, momentum=0.9, weight_decay=weight_decay)
        milestones = sorted({max(1, math.ceil(epochs * share)) for share in (0.4, 0.8)})
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
        loss_fn = nn.CrossEntropyLoss()
        for epoch in range(1, epochs + 1):
            net.train()
            loader = clip_loader(dataset, batch_size, shuffle=True, seed=seed, epoch=epoch, workers=workers)
            for batch in tqdm(loader, desc=f"frame reference {epoch}/{epochs}", disable=not progress, unit="it"):
                if not batch:
                    continue
                clips = normalize(batch["clip"].to(device, non_blocking=True))
                labels = batch["label"].to(device).repeat_interleave(clips.shape[2])
                loss = loss_fn(net(frames_of(clips)), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            schedule.step()
    return FrameReference(net.eval(), n_classes, width)
