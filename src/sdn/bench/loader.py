"""Clip loading per core: sdn's loader path against the original per-frame PIL pipeline.

It writes a few frame folders of real-looking JPEGs (320x240 by default, quality 90 as
``sdn prepare frames`` writes them) to a temporary directory and times, in this process with one
thread (so the rates are per core), ways of turning ``sample_duration`` frame indices into the
default training clip (multi-scale corner crop to ``sample_size``, horizontal flip, normalisation):

* ``PIL (original)``: the original per frame: PIL open + convert('RGB'), crop, resize BILINEAR,
  flip, ToTensor, Normalize; then stack and permute.
* ``sdn worker (uint8)``: what a DataLoader worker of sdn does: ``FrameFolder.read`` (libjpeg-turbo
  straight into one tensor) then ``MultiScaleCornerCrop`` + flip on the whole clip, as uint8.
  Training normalises whole batches afterwards, on the device.
* ``sdn + normalise on CPU``: the same plus ``ClipNormalize`` per clip: all the CPU work when the
  model also trains on the CPU.
* ``decode only``: read and decode the same JPEGs, nothing else: the ceiling of any loader that
  decodes every pixel.
* with ``draft=True``, also ``sdn + DCT 1/2 decode (approx.)``: PIL's draft mode (libjpeg's
  DCT-domain downscaling) whenever the crop side is at least twice the output side. It is not
  sdn's loader: it is here so that the investigation in docs/performance.md can be repeated.

Every path gets the same clips and the same random draws, and the paths run interleaved in rounds.
The default normalisation is the original's default (mean subtraction, std 1, ``norm_value`` 1).
"""

from __future__ import annotations

import random
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from sdn.bench.common import Panel, Samples, interleaved, table, target
from sdn.config import compute_scales
from sdn.data.mean_std import get_mean
from sdn.data.transforms import (CROP_POSITIONS, ClipNormalize, Compose, MultiScaleCornerCrop, TemporalRandomCrop,
                                 train_spatial_transform, val_spatial_transform)
from sdn.data.video import FRAME_NAME, FrameFolder

PIL_PATH = "PIL (original)"
SDN_PATH = "sdn worker (uint8)"
SDN_NORMALISED = "sdn + normalise on CPU"
DECODE_PATH = "decode only"
DRAFT_PATH = "sdn + DCT 1/2 decode (approx.)"
JPEG_QUALITY = 90  # what `sdn prepare frames` and `sdn synth` write


@dataclass
class LoaderSettings:
    sample_size: int = 112
    sample_duration: int = 16
    width: int = 320
    height: int = 240
    videos: int = 8
    frames: int = 64
    clips: int = 48
    rounds: int = 5
    statistic: str = "best"
    draft: bool = False
    fidelity_clips: int = 8


# ----------------------------------------------------------------------------------------------
# Test frames


def natural_frame(seed: int, width: int = 320, height: int = 240) -> Image.Image:
    """Gradients, hard-edged shapes, text and noise: JPEGs that compress like real frames."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = seed % 17
    base = np.stack(
        [128 + 90 * np.sin(x / 41 + phase), 110 + 80 * np.cos(y / 29 - phase), 255 * (x + y) / (width + height)],
        axis=-1,
    )
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        x0, y0 = int(rng.integers(0, max(1, width - 40))), int(rng.integers(0, max(1, height - 40)))
        box = (x0, y0, x0 + int(rng.integers(10, 90)), y0 + int(rng.integers(10, 70)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    for row in range(4):
        draw.text((int(rng.integers(0, max(1, width // 2))), 20 + 55 * row), "SDN scene 0123 ABC", fill=(250, 250, 240))
    noisy = np.asarray(image).astype(np.float32) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_videos(root: Path, videos: int, frames: int, width: int = 320, height: int = 240) -> list[Path]:
    """``videos`` frame folders of ``frames`` JPEGs each, in the original layout."""
    folders = []
    for v in range(videos):
        folder = root / f"video_{v:03d}"
        folder.mkdir()
        for i in range(1, frames + 1):
            natural_frame(v * 1000 + i, width, height).save(folder / FRAME_NAME.format(i), quality=JPEG_QUALITY)
        (folder / "n_frames").write_text(str(frames))
        folders.append(folder)
    return folders


Plan = list[tuple[Path, list[int], int]]


def plan_clips(folders: list[Path], frames: int, clips: int, duration: int) -> Plan:
    """(folder, frame indices, seed of the spatial draws) per clip, the same for every path."""
    plan = []
    for k in range(clips):
        temporal = TemporalRandomCrop(duration)
        temporal.randomize(random.Random(k))
        plan.append((folders[k % len(folders)], temporal(list(range(1, frames + 1))), 10_000 + k))
    return plan


# ----------------------------------------------------------------------------------------------
# The paths


def sdn_uint8_clip(folder: Path, indices: list[int], seed: int, transform: Compose) -> torch.Tensor:
    """sdn's worker: decode into one tensor, crop + resize + flip the whole clip, uint8 [3,T,S,S]."""
    frames = FrameFolder(folder, n_frames=max(indices)).read(indices)
    transform.randomize(random.Random(seed))
    return transform(frames).permute(1, 0, 2, 3)


def pil_clip(folder: Path, indices: list[int], seed: int, size: int, scales: list[float],
             mean: list[float], std: list[float]) -> torch.Tensor:
    """The original: the same draws (scale, position, flip), then everything per PIL frame."""
    rng = random.Random(seed)
    scale = scales[rng.randint(0, len(scales) - 1)]
    position = CROP_POSITIONS[rng.randint(0, len(CROP_POSITIONS) - 1)]
    flip = rng.random() < 0.5
    tensors = []
    for index in indices:
        with open(folder / FRAME_NAME.format(index), "rb") as handle:
            with Image.open(handle) as opened:
                image = opened.convert("RGB")
        w, h = image.size
        side = int(min(w, h) * scale)
        if position == "c":
            cx, cy, half = w // 2, h // 2, side // 2
            box = (cx - half, cy - half, cx + half, cy + half)
        else:
            x1 = 0 if position in ("tl", "bl") else w - side
            y1 = 0 if position in ("tl", "tr") else h - side
            box = (x1, y1, x1 + side, y1 + side)
        image = image.crop(box).resize((size, size), Image.BILINEAR)
        if flip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        tensors.append(_pil_to_tensor(image, mean, std))
    return torch.stack(tensors, 0).permute(1, 0, 2, 3)


def _pil_to_tensor(image: Image.Image, mean: list[float], std: list[float], norm_value: float = 1) -> torch.Tensor:
    """The original ToTensor (bytes -> ByteTensor -> float / norm_value) and Normalize (per channel)."""
    width, height = image.size
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(height, width, 3)
    tensor = pixels.permute(2, 0, 1).contiguous().float().div(norm_value)
    for channel, m, s in zip(tensor, mean, std):
        channel.sub_(m).div_(s)
    return tensor


def decode_only(folder: Path, indices: list[int]) -> list[torch.Tensor]:
    """Read and decode each frame with the same decoder as sdn, nothing else."""
    from torchvision.io import ImageReadMode, decode_jpeg

    decoded = []
    for index in indices:
        with open(folder / FRAME_NAME.format(index), "rb") as handle:
            data = torch.frombuffer(bytearray(handle.read()), dtype=torch.uint8)
        decoded.append(decode_jpeg(data, mode=ImageReadMode.RGB))
    return decoded


def draft_frames(folder: Path, indices: list[int], reduce: int) -> torch.Tensor:
    """Frames decoded by PIL at 1/``reduce`` size in the DCT domain (draft mode), uint8 [T,3,h,w]."""
    frames = []
    for index in dict.fromkeys(indices):
        with Image.open(folder / FRAME_NAME.format(index)) as image:
            if reduce > 1:
                image.draft("RGB", (image.width // reduce, image.height // reduce))
            frames.append((index, torch.from_numpy(np.array(image.convert("RGB")))))
    by_index = dict(frames)
    return torch.stack([by_index[index] for index in indices]).permute(0, 3, 1, 2)


def draft_reduction(short_side: int, scale: float, size: int) -> int:
    """2 when the crop side (``scale`` of the short side) is at least twice the output ``size``, else 1:
    only then does a 1/2 DCT-domain decode not go below the output resolution."""
    return 2 if int(short_side * scale) >= 2 * size else 1


def draft_uint8_clip(folder: Path, indices: list[int], seed: int, transform: Compose, width: int, height: int,
                     size: int) -> torch.Tensor:
    """The training clip with a 1/2 DCT-domain decode when the crop side is at least twice ``size``.

    A crop of a half-size frame at the same relative place is the half-size crop box (exact for
    even frame sizes), so the transform runs unchanged on the reduced frames.
    """
    transform.randomize(random.Random(seed))
    crop = transform.transforms[0]
    assert isinstance(crop, MultiScaleCornerCrop) and crop.scale is not None
    reduce = draft_reduction(min(width, height), crop.scale, size)
    if reduce == 1:
        frames = FrameFolder(folder, n_frames=max(indices)).read(indices)
    else:
        frames = draft_frames(folder, indices, reduce)
    return transform(frames).permute(1, 0, 2, 3)


# ----------------------------------------------------------------------------------------------
# Fidelity of the deterministic validation pipeline (for the DCT-domain investigation)


def pil_val_frame(path: Path, size: int) -> torch.Tensor:
    """The original validation transform of one frame: Scale(size) BILINEAR, CenterCrop(size), uint8 [3,S,S]."""
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    w, h = image.size
    if (w <= h and w != size) or (h <= w and h != size):
        ow, oh = (size, int(size * h / w)) if w < h else (int(size * w / h), size)
        image = image.resize((ow, oh), Image.BILINEAR)
    w, h = image.size
    x1, y1 = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
    image = image.crop((x1, y1, x1 + size, y1 + size))
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def val_fidelity(folders: list[Path], size: int, frames_per_video: int, draft: bool) -> dict[str, float]:
    """Mean and largest absolute difference (grey levels) of sdn's validation frames vs the original's.

    With ``draft``, the frames are decoded at 1/2 in the DCT domain whenever the short side is at
    least twice ``size`` (the condition under which such a path could be offered).
    """
    transform = val_spatial_transform(size)
    differences = []
    for folder in folders:
        indices = list(range(1, frames_per_video + 1))
        if draft:
            with Image.open(folder / FRAME_NAME.format(1)) as first:
                reduce = draft_reduction(min(first.size), 1.0, size)
            frames = draft_frames(folder, indices, reduce)
        else:
            frames = FrameFolder(folder, n_frames=len(indices)).read(indices)
        ours = transform(frames).to(torch.int16)
        original = torch.stack([pil_val_frame(folder / FRAME_NAME.format(i), size) for i in indices]).to(torch.int16)
        differences.append((ours - original).abs().float())
    stacked = torch.cat([d.flatten() for d in differences])
    return {"mean_abs_diff": stacked.mean().item(), "max_abs_diff": stacked.max().item()}


# ----------------------------------------------------------------------------------------------
# The benchmark


def run(settings: LoaderSettings, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time every path (one thread) and check that sdn and the original give the same clips."""
    warnings.filterwarnings("ignore", message="The image decoding and encoding", category=DeprecationWarning)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(settings, progress)
    finally:
        torch.set_num_threads(threads)


def _run(s: LoaderSettings, progress: Callable[[str], None] | None) -> dict[str, Any]:
    if s.frames <= s.sample_duration:
        raise ValueError(f"frames per video ({s.frames}) must exceed sample_duration ({s.sample_duration})")
    mean, std = get_mean(1, "activitynet"), [1.0, 1.0, 1.0]
    scales = compute_scales(1.0, 5, 0.84089641525)
    transform = train_spatial_transform("corner", scales, s.sample_size)
    normalize = ClipNormalize(mean, std, 1)

    with tempfile.TemporaryDirectory(prefix="sdn-bench-") as tmp:
        if progress:
            progress(f"loader: writing {s.videos} videos x {s.frames} JPEG frames of {s.width}x{s.height}")
        folders = write_videos(Path(tmp), s.videos, s.frames, s.width, s.height)
        plan = plan_clips(folders, s.frames, s.clips, s.sample_duration)

        def sdn_normalised(folder: Path, indices: list[int], seed: int) -> torch.Tensor:
            return normalize(sdn_uint8_clip(folder, indices, seed, transform))

        def pil(folder: Path, indices: list[int], seed: int) -> torch.Tensor:
            return pil_clip(folder, indices, seed, s.sample_size, scales, mean, std)

        # Same clips, same draws: the two full paths must agree up to resampling rounding.
        checked = plan[: s.fidelity_clips]
        gaps = torch.cat([(sdn_normalised(*clip) - pil(*clip)).abs().flatten() for clip in checked])
        fidelity: dict[str, Any] = {
            "train_clips_checked": len(checked),
            "train_max_abs_diff": gaps.max().item(),
            "train_mean_abs_diff": gaps.mean().item(),
            "val_sdn": val_fidelity(folders, s.sample_size, min(s.frames, s.sample_duration), draft=False),
        }

        paths: dict[str, Callable[[], Any]] = {
            PIL_PATH: lambda: [pil(*clip) for clip in plan],
            SDN_PATH: lambda: [sdn_uint8_clip(f, i, seed, transform) for f, i, seed in plan],
            SDN_NORMALISED: lambda: [sdn_normalised(*clip) for clip in plan],
            DECODE_PATH: lambda: [decode_only(f, i) for f, i, _ in plan],
        }
        if s.draft:
            def draft(folder: Path, indices: list[int], seed: int) -> torch.Tensor:
                return draft_uint8_clip(folder, indices, seed, transform, s.width, s.height, s.sample_size)

            def draft_applies(seed: int) -> bool:
                crop = MultiScaleCornerCrop(scales, s.sample_size)
                crop.randomize(random.Random(seed))
                return draft_reduction(min(s.width, s.height), crop.scale, s.sample_size) == 2

            paths[DRAFT_PATH] = lambda: [draft(*clip) for clip in plan]
            # fidelity where the approximate decode is used (all clips when it never is)
            applied = [clip for clip in plan if draft_applies(clip[2])][: s.fidelity_clips] or checked
            draft_gaps = torch.cat([(normalize(draft(*clip)) - pil(*clip)).abs().flatten() for clip in applied])
            fidelity["train_draft_clips_checked"] = len(applied)
            fidelity["train_draft_mean_abs_diff"] = draft_gaps.mean().item()
            fidelity["train_draft_max_abs_diff"] = draft_gaps.max().item()
            fidelity["val_draft"] = val_fidelity(folders, s.sample_size, min(s.frames, s.sample_duration), draft=True)
            fidelity["draft_share_of_clips"] = sum(
                draft_reduction(min(s.width, s.height), scale, s.sample_size) == 2 for scale in scales) / len(scales)

        samples = interleaved(paths, s.rounds, warmup=1,
                              progress=(lambda m: progress(f"loader: {m}")) if progress else None)
    return summarise(s, samples, fidelity)


def summarise(s: LoaderSettings, samples: dict[str, Samples], fidelity: dict[str, Any]) -> dict[str, Any]:
    rows = {}
    for name, sample in samples.items():
        seconds = sample.seconds(s.statistic)
        rows[name] = {
            "clips_per_s": s.clips / seconds,
            "ms_per_clip": 1000 * seconds / s.clips,
            "cpu_ms_per_clip": 1000 * sample.cpu_seconds(s.statistic) / s.clips,
            "rounds": sample.as_dict(),
        }
    pil, decode = rows[PIL_PATH]["clips_per_s"], rows[DECODE_PATH]["clips_per_s"]
    for row in rows.values():
        row["vs_pil"] = row["clips_per_s"] / pil
        row["of_decode_only"] = row["clips_per_s"] / decode
    targets = [
        target("loader: sdn worker (uint8) vs PIL, per core", rows[SDN_PATH]["vs_pil"], 3.0, at_least=True),
        target("loader: sdn worker (uint8) share of decode-only rate", rows[SDN_PATH]["of_decode_only"], 0.75,
               at_least=True),
        target("loader: sdn + normalise on CPU vs PIL, per core", rows[SDN_NORMALISED]["vs_pil"], 3.0, at_least=True),
        target("loader: sdn + normalise on CPU share of decode-only rate", rows[SDN_NORMALISED]["of_decode_only"],
               0.75, at_least=True),
    ]
    return {"settings": vars(s).copy(), "threads": 1, "paths": rows, "fidelity": fidelity, "targets": targets}


def render(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        f"(a) loader, 1 thread: {s['clips']} clips of {s['sample_duration']} frames {s['width']}x{s['height']} JPEG "
        f"-> [3, {s['sample_duration']}, {s['sample_size']}, {s['sample_size']}], {s['statistic']} of "
        f"{s['rounds']} interleaved rounds",
        table(["path", "clips/s", "ms/clip", "CPU ms/clip", "vs PIL", "of decode only"], [
            [name, f"{row['clips_per_s']:.1f}", f"{row['ms_per_clip']:.2f}", f"{row['cpu_ms_per_clip']:.2f}",
             f"{row['vs_pil']:.2f}x", f"{100 * row['of_decode_only']:.0f}%"]
            for name, row in result["paths"].items()
        ]),
    ]
    f = result["fidelity"]
    lines.append(f"sdn vs PIL on {f['train_clips_checked']} training clips: largest difference "
                 f"{f['train_max_abs_diff']:.3f}, mean {f['train_mean_abs_diff']:.4f} grey levels; validation "
                 f"pipeline: mean {f['val_sdn']['mean_abs_diff']:.4f}, largest {f['val_sdn']['max_abs_diff']:.0f}")
    if "val_draft" in f:
        lines.append(f"DCT 1/2 decode (applies to {100 * f['draft_share_of_clips']:.0f}% of training clips): "
                     f"{f['train_draft_clips_checked']} such training clips vs PIL mean {f['train_draft_mean_abs_diff']:.3f}, largest "
                     f"{f['train_draft_max_abs_diff']:.1f}; validation pipeline mean "
                     f"{f['val_draft']['mean_abs_diff']:.3f}, largest {f['val_draft']['max_abs_diff']:.0f} "
                     "grey levels (bound: mean <= 0.5)")
    return "\n".join(lines)


def panel(result: dict[str, Any]) -> Panel:
    names = list(result["paths"])
    rows = result["paths"]
    return Panel(
        title=f"(a) loader, clips/s per core ({result['settings']['statistic']} of {result['settings']['rounds']} rounds)",
        xlabel="clips/s (1 thread)",
        labels=names,
        values=[rows[n]["clips_per_s"] for n in names],
        notes=[f"{rows[n]['clips_per_s']:.0f}/s, {rows[n]['vs_pil']:.2f}x PIL" for n in names],
    )
