"""Clip loading speed: the sdn path against the original per-frame PIL path and a decode-only ceiling.

Run as ``.venv/bin/python bench/bench_loader.py``. It writes a few frame folders of real-looking
320x240 JPEGs to a temporary directory and times, in one process with one thread, three ways of
turning 16 frame indices into a normalised training clip [3, 16, 112, 112]:

* sdn:    FrameFolder.read -> MultiScaleCornerCrop(112) + flip on the whole clip -> ClipNormalize
* sdn uint8: the same without ClipNormalize: what a loader worker does, since training
          normalises whole batches on the device
* PIL:    the original: per frame PIL open + convert('RGB'), crop, resize BILINEAR, flip,
          ToTensor, Normalize; then stack and permute
* decode: read and decode the same 16 JPEGs, nothing else (the ceiling for any JPEG loader)

Every path gets the same clips and the same random draws; the best of several rounds counts.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image, ImageDraw
from torchvision.io import ImageReadMode, decode_jpeg

from sdn.data.mean_std import get_mean, get_std
from sdn.data.transforms import ClipNormalize, TemporalRandomCrop, train_spatial_transform
from sdn.data.video import FrameFolder

SIZE, DURATION = 112, 16
SCALES = [1.0, 0.84089641525, 0.7071067811803005, 0.5946035574934808, 0.4999999999911653]
POSITIONS = ["c", "tl", "tr", "bl", "br"]


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
        x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        box = (x0, y0, x0 + int(rng.integers(10, 90)), y0 + int(rng.integers(10, 70)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    for row in range(4):
        draw.text((int(rng.integers(0, width // 2)), 20 + 55 * row), "SDN scene 0123 ABC", fill=(250, 250, 240))
    noisy = np.asarray(image).astype(np.float32) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_videos(root: Path, videos: int, frames: int) -> list[Path]:
    folders = []
    for v in range(videos):
        folder = root / f"video_{v:03d}"
        folder.mkdir()
        for i in range(1, frames + 1):
            natural_frame(v * 1000 + i).save(folder / f"image_{i:05d}.jpg", quality=90)
        folders.append(folder)
    return folders


def plan_clips(folders: list[Path], frames: int, clips: int) -> list[tuple[Path, list[int], int]]:
    """(folder, 16 frame indices, seed of the spatial draws) per clip, the same for every path."""
    plan = []
    for k in range(clips):
        temporal = TemporalRandomCrop(DURATION)
        temporal.randomize(random.Random(k))
        plan.append((folders[k % len(folders)], temporal(list(range(1, frames + 1))), 10_000 + k))
    return plan


def sdn_uint8_clip(folder: Path, indices: list[int], seed: int, transform) -> torch.Tensor:
    frames = FrameFolder(folder, n_frames=len(indices)).read(indices)
    transform.randomize(random.Random(seed))
    return transform(frames).permute(1, 0, 2, 3)


def sdn_clip(folder: Path, indices: list[int], seed: int, transform, normalize: ClipNormalize) -> torch.Tensor:
    return normalize(sdn_uint8_clip(folder, indices, seed, transform))


def pil_clip(folder: Path, indices: list[int], seed: int, mean: list[float], std: list[float]) -> torch.Tensor:
    """The original: same draws (scale, position, flip), then everything per PIL frame."""
    rng = random.Random(seed)
    scale = SCALES[rng.randint(0, len(SCALES) - 1)]
    position = POSITIONS[rng.randint(0, len(POSITIONS) - 1)]
    flip = rng.random() < 0.5
    tensors = []
    for index in indices:
        with open(folder / f"image_{index:05d}.jpg", "rb") as handle:
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
        image = image.crop(box).resize((SIZE, SIZE), Image.BILINEAR)
        if flip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        pixels = np.frombuffer(image.tobytes(), dtype=np.uint8).reshape(SIZE, SIZE, 3)
        tensor = torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous().float().div(1)
        for channel, m, s in zip(tensor, mean, std):
            channel.sub_(m).div_(s)
        tensors.append(tensor)
    return torch.stack(tensors, 0).permute(1, 0, 2, 3)


def decode_only(folder: Path, indices: list[int]) -> list[torch.Tensor]:
    decoded = []
    for index in indices:
        with open(folder / f"image_{index:05d}.jpg", "rb") as handle:
            data = torch.frombuffer(bytearray(handle.read()), dtype=torch.uint8)
        decoded.append(decode_jpeg(data, mode=ImageReadMode.RGB))
    return decoded


def best_time(run_all: Callable[[], None], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run_all()
        best = min(best, time.perf_counter() - start)
    return best


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=64, help="frames per video")
    parser.add_argument("--clips", type=int, default=48, help="clips per timed round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    warnings.filterwarnings("ignore", message="The image decoding and encoding", category=DeprecationWarning)
    torch.set_num_threads(1)
    mean, std = get_mean(1, "activitynet"), get_std(1)
    transform = train_spatial_transform("corner", SCALES, SIZE)
    normalize = ClipNormalize(mean, std, 1)

    with tempfile.TemporaryDirectory() as tmp:
        folders = write_videos(Path(tmp), args.videos, args.frames)
        plan = plan_clips(folders, args.frames, args.clips)

        # Same clips, same draws: the two full paths must agree up to resampling rounding.
        worst = max(
            (sdn_clip(f, i, s, transform, normalize) - pil_clip(f, i, s, mean, std)).abs().max().item()
            for f, i, s in plan[:8]
        )

        paths = {
            "sdn": lambda: [sdn_clip(f, i, s, transform, normalize) for f, i, s in plan],
            "sdn uint8": lambda: [sdn_uint8_clip(f, i, s, transform) for f, i, s in plan],
            "PIL (original)": lambda: [pil_clip(f, i, s, mean, std) for f, i, s in plan],
            "decode only": lambda: [decode_only(f, i) for f, i, _ in plan],
        }
        for run_all in paths.values():  # warm up caches and lazy initialisation
            run_all()
        best = {name: float("inf") for name in paths}
        for _ in range(args.rounds):  # interleaved, so that background load hits every path alike
            for name, run_all in paths.items():
                best[name] = min(best[name], best_time(run_all, 1))

    clips_per_s = {name: args.clips / seconds for name, seconds in best.items()}
    print(f"machine: {cpu_model()}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"Pillow {PIL.__version__}, 1 thread")
    print(f"{args.clips} clips of {DURATION} frames 320x240 -> [3, {DURATION}, {SIZE}, {SIZE}], "
          f"best of {args.rounds} rounds")
    pil, decode = clips_per_s["PIL (original)"], clips_per_s["decode only"]
    print(f"{'path':<16}{'clips/s':>10}{'ms/clip':>10}{'vs PIL':>10}{'of decode':>11}")
    for name, rate in clips_per_s.items():
        print(f"{name:<16}{rate:>10.1f}{1000 / rate:>10.2f}{rate / pil:>9.2f}x{100 * rate / decode:>10.0f}%")
    print("targets: sdn >= 3x PIL and >= 75% of decode only")
    print(f"largest difference sdn vs PIL on 8 clips: {worst:.3f} grey levels")


if __name__ == "__main__":
    main()
