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

import contextlib
import math
import random
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from PIL import Image, ImageDraw

from sdn.bench.common import Panel, Samples, interleaved, number, table, target
from sdn.config import compute_scales
from sdn.data.mean_std import get_mean
from sdn.data.transforms import (CROP_POSITIONS, ClipNormalize, Compose, MultiScaleCornerCrop, TemporalRandomCrop,
                                 train_spatial_transform, val_spatial_transform)
from sdn.data.video import FRAME_NAME, FrameFolder, VideoFile
from sdn.data.video_index import INDEX_SUFFIX, FrameCounts, frame_counts
from sdn.prepare.frames import FrameJob, extract

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
    video: bool = False  # also the video-file comparison (VideoSettings), after the frame folders
    video_clips: int = 8
    video_rounds: int = 3


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
    """Time every path (one thread) and check that sdn and the original give the same clips; with
    ``settings.video`` also the video-file comparison (``run_video``)."""
    warnings.filterwarnings("ignore", message="The image decoding and encoding", category=DeprecationWarning)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = _run(settings, progress)
    finally:
        torch.set_num_threads(threads)
    if settings.video:
        result["video"] = run_video(VideoSettings(clips=settings.video_clips, sample_duration=settings.sample_duration,
                                                  rounds=settings.video_rounds, statistic=settings.statistic), progress)
        result["targets"] += result["video"]["targets"]
    return result


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
    if "video" in result:
        lines += ["", render_video(result["video"])]
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


# ----------------------------------------------------------------------------------------------
# Video files (--video): sequential decoding, seeking and frame folders; counting frames

VIDEO_SEQUENTIAL = "sequential decoding"
VIDEO_SEEKING = "seeking (sdn)"
VIDEO_FOLDER = "frame folder"
COUNT_DECODING = "decoding every frame"
COUNT_DEMUXING = "demuxing the packets"
COUNT_SDN = "sdn, first run"  # MP4 sample table, else the packets; and the file's stat
COUNT_INDEX = "sdn, second run (index)"
COUNT_WAYS = (COUNT_DECODING, COUNT_DEMUXING, COUNT_SDN, COUNT_INDEX)
PAN_PIXELS_PER_FRAME = 2


@dataclass
class VideoSettings:
    """The generated videos (one per size and keyframe interval) and the clips read from each."""

    sizes: tuple[tuple[int, int], ...] = ((1280, 720), (320, 240))
    keyframe_seconds: tuple[float, ...] = (0.5, 2.0, 5.0)
    seconds: int = 10
    fps: int = 30
    clips: int = 8
    sample_duration: int = 16
    rounds: int = 3
    statistic: str = "best"


@dataclass(frozen=True)
class BenchVideo:
    """A generated video file, the frame folder made from it, and the clips read from both."""

    name: str
    size: tuple[int, int]
    keyframe_seconds: float
    path: Path
    folder: Path
    frames: int
    clips: tuple[tuple[int, ...], ...]


def write_video_files(paths: dict[float, Path], width: int, height: int, seconds: int, fps: int,
                      seed: int) -> None:
    """The same scene encoded once per keyframe interval (seconds -> file), H.264 as cameras and YouTube store it.

    libx264, CRF 23, preset veryfast, up to 3 B-frames, a keyframe exactly every interval (no scene
    cuts). The scene: a textured picture (gradients, shapes, text, noise) panning sideways, two
    objects crossing it and a little sensor noise that changes every frame, so that inter frames
    carry real residuals as camera footage does.
    """
    frames = seconds * fps
    background = np.asarray(natural_frame(seed, width + PAN_PIXELS_PER_FRAME * frames, height)).astype(np.int16)
    rng = np.random.default_rng(seed)
    noise = [rng.normal(0, 3, (height, width, 3)).astype(np.int16) for _ in range(5)]
    side = max(8, height // 6)
    with contextlib.ExitStack() as stack:
        streams = []
        for interval, path in paths.items():
            container = stack.enter_context(av.open(str(path), "w"))
            keyint = max(1, round(interval * fps))
            stream = container.add_stream("libx264", rate=fps, options={
                "preset": "veryfast", "crf": "23", "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.max_b_frames = 3
            streams.append((container, stream))
        for i in range(frames):
            offset = PAN_PIXELS_PER_FRAME * i
            image = background[:, offset:offset + width] + noise[i % len(noise)]
            x = (7 * i) % max(1, width - side)
            y = int((height - side) * (0.5 + 0.4 * math.sin(i / 9)))
            image[y:y + side, x:x + side] = (230, 40, 40)
            image[height - side - y // 2:height - y // 2, width - side - x:width - x] = (40, 60, 220)
            picture = np.clip(image, 0, 255).astype(np.uint8)
            for container, stream in streams:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        for container, stream in streams:
            container.mux(stream.encode())


def make_bench_videos(root: Path, s: VideoSettings, progress: Callable[[str], None] | None) -> list[BenchVideo]:
    """Write the videos and, with ``sdn prepare frames``' own code, a JPEG frame folder of each."""
    videos = []
    for number, (width, height) in enumerate(s.sizes):
        if progress:
            progress(f"video: encoding {len(s.keyframe_seconds)} H.264 videos of {width}x{height}, {s.seconds} s")
        paths = {interval: root / f"{height}p_key{interval:g}s.mp4" for interval in s.keyframe_seconds}
        write_video_files(paths, width, height, s.seconds, s.fps, seed=number)
        for interval, path in paths.items():
            if progress:
                progress(f"video: frame folder of {path.name}")
            folder = root / path.stem
            outcome = extract(FrameJob(str(path), str(folder), 0, "height", JPEG_QUALITY, False))
            if outcome.status != "done":
                raise RuntimeError(f"{path}: frame extraction failed ({outcome.reason})")
            videos.append(BenchVideo(f"{width}x{height}, keyframe every {interval:g} s", (width, height), interval,
                                     path, folder, outcome.frames,
                                     random_windows(outcome.frames, s.sample_duration, s.clips)))
    return videos


def random_windows(frames: int, duration: int, count: int, seed: int = 0) -> tuple[tuple[int, ...], ...]:
    """``count`` windows of ``duration`` frames at uniformly random starts, one start in each of ``count``
    equal parts of the range TemporalRandomCrop draws from (stratified: a few windows then average
    like many). The same seed gives every video of the same length the same windows."""
    rng = random.Random(seed)
    starts = max(1, frames - duration)  # TemporalRandomCrop's starts: 1 .. frames - duration
    windows = []
    for k in range(count):
        start = rng.randint(1 + starts * k // count, max(1 + starts * k // count, starts * (k + 1) // count))
        windows.append(tuple(range(start, min(frames, start + duration - 1) + 1)))
    return tuple(windows)


def run_video(s: VideoSettings, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time reading clips and counting frames of generated videos, one thread (rates per core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="sdn-bench-video-") as tmp:
            return _run_video(s, Path(tmp), progress)
    finally:
        torch.set_num_threads(threads)


def _run_video(s: VideoSettings, root: Path, progress: Callable[[str], None] | None) -> dict[str, Any]:
    videos = make_bench_videos(root, s, progress)
    readers: dict[str, Callable[[BenchVideo, tuple[int, ...]], torch.Tensor]] = {
        VIDEO_SEQUENTIAL: lambda v, clip: VideoFile(v.path, v.frames).read_sequential(clip),
        VIDEO_SEEKING: lambda v, clip: VideoFile(v.path, v.frames).read(clip),
        VIDEO_FOLDER: lambda v, clip: FrameFolder(v.folder, v.frames).read(clip),
    }
    if progress:
        progress("video: checking that seeking gives the frames of sequential decoding (the warm-up)")
    identical = sum(torch.equal(readers[VIDEO_SEEKING](v, clip), readers[VIDEO_SEQUENTIAL](v, clip))
                    for v in videos for clip in v.clips)
    counts_equal = sum(VideoFile(v.path).num_frames() == sum(1 for _ in VideoFile(v.path).decoded_frames()) == v.frames
                       for v in videos)
    for v in videos:
        for clip in v.clips:
            readers[VIDEO_FOLDER](v, clip)
    runs: dict[str, Callable[[], Any]] = {}
    for v in videos:
        for path, reader in readers.items():
            runs[f"{v.name}: {path}"] = (lambda v=v, reader=reader: [reader(v, clip) for clip in v.clips])
    reading = interleaved(runs, s.rounds, warmup=0, progress=(lambda m: progress(f"video reads: {m}")) if progress
                          else None)

    counting_runs: dict[str, Callable[[], Any]] = {}
    groups = {size: [str(v.path) for v in videos if v.size == size] for size in s.sizes}
    for size, paths in groups.items():
        index = str(root / f"{size[1]}p{INDEX_SUFFIX}")
        if frame_counts(paths, index, workers=1, progress=False).counted != len(paths):
            raise RuntimeError("the benchmark videos could not all be counted from their packets")

        def decode_counts(paths: list[str] = paths) -> list[int]:
            return [sum(1 for _ in VideoFile(path).decoded_frames()) for path in paths]

        def demux_counts(paths: list[str] = paths) -> list[int | None]:
            return [VideoFile(path).packet_table().frames for path in paths]

        def first_run(paths: list[str] = paths) -> FrameCounts:  # the index is written once per dataset: not here
            return frame_counts(paths, None, workers=1, progress=False)

        label = f"{size[0]}x{size[1]}"
        counting_runs[f"{label}: {COUNT_DECODING}"] = decode_counts
        counting_runs[f"{label}: {COUNT_DEMUXING}"] = demux_counts
        counting_runs[f"{label}: {COUNT_SDN}"] = first_run
        counting_runs[f"{label}: {COUNT_INDEX}"] = lambda paths=paths, index=index: _cached_counts(paths, index)
    counting = interleaved(counting_runs, s.rounds, warmup=1,
                           progress=(lambda m: progress(f"video counts: {m}")) if progress else None)
    return summarise_video(s, videos, reading, counting, identical, counts_equal)


def _cached_counts(paths: list[str], index: str) -> FrameCounts:
    counts = frame_counts(paths, index, workers=1, progress=False)
    if counts.cached != len(paths):
        raise RuntimeError(f"{index}: the second run counted again")
    return counts


def summarise_video(s: VideoSettings, videos: list[BenchVideo], reading: dict[str, Samples],
                    counting: dict[str, Samples], identical: int, counts_equal: int) -> dict[str, Any]:
    rows = []
    for v in videos:
        rates = {path: s.clips / reading[f"{v.name}: {path}"].seconds(s.statistic)
                 for path in (VIDEO_SEQUENTIAL, VIDEO_SEEKING, VIDEO_FOLDER)}
        rows.append({"video": v.name, "size": list(v.size), "keyframe_seconds": v.keyframe_seconds, "frames": v.frames,
                     "clips_per_s": rates, "seeking_vs_sequential": rates[VIDEO_SEEKING] / rates[VIDEO_SEQUENTIAL],
                     "seeking_vs_folder": rates[VIDEO_SEEKING] / rates[VIDEO_FOLDER],
                     "rounds": {path: reading[f"{v.name}: {path}"].as_dict() for path in rates}})
    construction = []
    for size in s.sizes:
        label = f"{size[0]}x{size[1]}"
        count = sum(1 for v in videos if v.size == size)
        ms = {way: 1000 * counting[f"{label}: {way}"].seconds(s.statistic) / count for way in COUNT_WAYS}
        construction.append({"size": list(size), "videos": count, "ms_per_video": ms,
                             "demuxing_vs_decoding": ms[COUNT_DECODING] / ms[COUNT_DEMUXING],
                             "first_run_vs_decoding": ms[COUNT_DECODING] / ms[COUNT_SDN],
                             "index_vs_decoding": ms[COUNT_DECODING] / ms[COUNT_INDEX],
                             "rounds": {way: counting[f"{label}: {way}"].as_dict() for way in ms}})
    clips = sum(len(v.clips) for v in videos)
    targets = [target(f"video: frames identical to sequential decoding ({identical}/{clips} clips)",
                      identical / clips, 1.0, at_least=True)]
    for row in rows:
        if tuple(row["size"]) == (1280, 720) and row["keyframe_seconds"] == 2.0:
            targets.append(target("video: random 16-frame window, 10 s 720p H.264, 2 s keyframes: seeking vs "
                                  "decoding from the start", row["seeking_vs_sequential"], 3.0, at_least=True))
    for entry in construction:
        label = f"{entry['size'][0]}x{entry['size'][1]}"
        targets.append(target(f"video: dataset construction per {label} video, first run vs decoding the counts",
                              entry["first_run_vs_decoding"], 20.0, at_least=True))
        targets.append(target(f"video: dataset construction per {label} video, second run (index) vs decoding",
                              entry["index_vs_decoding"], 100.0, at_least=True))
    return {"settings": vars(s).copy(), "threads": 1, "videos": rows, "construction": construction,
            "identical_clips": identical, "clips_checked": clips, "counts_equal": counts_equal,
            "videos_counted": len(videos), "targets": targets}


def render_video(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        f"(a') video files, 1 thread: {s['clips']} random {s['sample_duration']}-frame windows per video (one per "
        f"{s['clips']}th of it, the same in every video), {s['seconds']} s, {s['fps']} fps, H.264 CRF 23 with "
        f"B-frames, read as uint8 frames; frame folders are JPEG q{JPEG_QUALITY} at the video's size; "
        f"{s['statistic']} of {s['rounds']} interleaved rounds",
        table(["video", "sequential clips/s", "seeking clips/s", "folder clips/s", "seeking vs sequential",
               "seeking vs folder"], [
            [row["video"], number(row["clips_per_s"][VIDEO_SEQUENTIAL]), number(row["clips_per_s"][VIDEO_SEEKING]),
             number(row["clips_per_s"][VIDEO_FOLDER]), f"{row['seeking_vs_sequential']:.2f}x",
             f"{row['seeking_vs_folder']:.2f}x"] for row in result["videos"]]),
        f"seeking gave exactly the frames of sequential decoding in {result['identical_clips']}/"
        f"{result['clips_checked']} clips; counts from packets equal decoded counts in {result['counts_equal']}/"
        f"{result['videos_counted']} videos",
        "",
        "dataset construction: frame count per video, 1 process (sdn: the MP4 sample table, else the packets, "
        "and the file's stat; 2nd run: the index file read, the file's stat)",
        table(["video", "decoding ms", "demuxing ms", "sdn 1st run ms", "sdn 2nd run ms", "demuxing vs decoding",
               "1st run vs decoding", "2nd run vs decoding"], [
            [f"{entry['size'][0]}x{entry['size'][1]}",
             *[number(entry["ms_per_video"][way]) for way in COUNT_WAYS],
             f"{entry['demuxing_vs_decoding']:.0f}x", f"{entry['first_run_vs_decoding']:.0f}x",
             f"{entry['index_vs_decoding']:.0f}x"]
            for entry in result["construction"]]),
    ]
    return "\n".join(lines)
