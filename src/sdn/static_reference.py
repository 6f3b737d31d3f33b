"""The static reference: how far a model that sees no motion gets on the same data.

A 2D network trained on single frames of the training set (the "biased by design" model of
ReBias, ICML 2020, and StillMix, ICCV 2023) can only use what one frame shows: the scene, the
actor's appearance, where the actor stands. Its accuracy on a test split is the static cue's
share of that split; a video model near it there has learned little beyond the static cue.
``sdn analyze --static_reference`` and ``sdn demo`` report it beside the video models.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader

from sdn.analysis import Outputs, read_splits, split_clips, split_results, training_clips
from sdn.config import Options
from sdn.data.transforms import ClipNormalize
from sdn.methods.frame_reference import FrameReference, clip_loader, train_frame_reference

EPOCHS = 9  # as the demo's video models: three phases of three epochs
LEARNING_RATE = 0.02
BATCH_SIZE = 16  # clips: every frame of a clip is a sample
TRAINING_FRAMES = 2  # frames per training video and epoch: one still frame says all a frame model can learn
WIDTH = 16  # a narrow frame network: at 32x32 it fits the static cue of the demo's benchmark


def fit_static_reference(opt: Options, normalize: ClipNormalize, *, seed: int,
                         epochs: int = EPOCHS, progress: bool = False) -> FrameReference:
    """Train the frame model on the centred ``TRAINING_FRAMES`` frames of every training video of ``opt``'s dataset."""
    dataset = training_clips(opt.replace(sample_duration=TRAINING_FRAMES))
    return train_frame_reference(dataset, len(dataset.class_names), epochs=epochs, learning_rate=LEARNING_RATE,
                                 batch_size=BATCH_SIZE, seed=seed, device=torch.device("cpu"), progress=progress,
                                 normalize=normalize, width=WIDTH)


@torch.no_grad()
def reference_outputs(reference: FrameReference, dataset: Any, normalize: ClipNormalize) -> Outputs:
    """Clip logits of the reference over a dataset, in dataset order."""
    loader: DataLoader = clip_loader(dataset, BATCH_SIZE, shuffle=False, seed=0, epoch=0)
    logits, labels = [], []
    for batch in loader:
        logits.append(reference.clip_logits(normalize(batch["clip"].to(reference.device))).cpu())
        labels.append(batch["label"])
    return Outputs(torch.zeros(len(dataset), 0), torch.cat(logits), torch.cat(labels),
                   [sample.video.path for sample in dataset.samples])


def measure_static_reference(opt: Options, normalize: ClipNormalize, split_dirs: Sequence[str], *,
                             seed: int, progress: bool = False, save_path: str | None = None) -> dict[str, Any]:
    """Train the reference on ``opt``'s training set and measure it on the splits, in ``sdn analyze``'s layout;
    ``save_path`` keeps the network (StillMix can use it as its reference: ``--stillmix_reference``)."""
    reference = fit_static_reference(opt, normalize, seed=seed, progress=progress)
    if save_path is not None:
        reference.save(save_path)
    splits = read_splits(split_dirs)
    outputs = {name: reference_outputs(reference, split_clips(opt, split, split.class_names), normalize)
               for name, split in splits.items()}
    return {"model": f"2D frame network (width {reference.width}), {EPOCHS} epochs on {TRAINING_FRAMES} frames of "
                     "every training video",
            "splits": split_results(splits, outputs)}
