"""``sdn prepare scuba`` per core, beside decoding the same frames.

Making a SCUBA set reads each test video once and writes it once per background, so its cost per
written frame should be close to what reading a frame costs: compositing is a few bit operations
per pixel, and the JPEG encoder costs about what the decoder does. This part measures that, in
this process with one thread (so the rates are per core; ``sdn prepare scuba --workers N`` runs
N such processes):

* ``decode only``: ``FrameFolder.read`` of every frame of every video: the ceiling of any step
  that reads the videos.
* ``composite only``: decode, the actor masks (read from the masks file), the backgrounds (images
  scaled to the frame, stripe images generated) and the composite for every background, without
  encoding or writing: what compositing itself adds.
* ``sdn prepare scuba``: the step's own per-video function (``sdn.prepare.scuba.write_video``):
  all of the above, plus JPEG encoding and writing of the SCUBA clips and their SCUFO twins into a
  fresh output folder, staging and renaming included.

Rates are in frames per second: source frames read for ``decode only``, SCUBA frames written (one
per source frame and background) for the others. The videos are generated (gradients, shapes,
noise: they compress like real frames) at 320x240 and saved at JPEG quality 90, as ``sdn prepare
frames`` writes them; the actor is an ellipse covering about an eighth of the frame, moving; the
background images are 256x256 (the size of Places365's small test images).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from sdn.bench.common import Panel, interleaved, table, target
from sdn.data.annotations import VideoEntry
from sdn.data.human_masks import save_human_masks
from sdn.data.video import FRAME_NAME, FrameFolder
from sdn.prepare import scuba

DECODE_PATH = "decode only"
COMPOSITE_PATH = "composite only"
SCUBA_PATH = "sdn prepare scuba"
JPEG_QUALITY = 90
LABEL = "bench"


@dataclass
class ScubaSettings:
    videos: int = 4
    frames: int = 32
    width: int = 320
    height: int = 240
    n_images: int = 3
    n_stripes: int = 2
    rounds: int = 5
    statistic: str = "best"


def _frame(seed: int, width: int, height: int) -> np.ndarray:
    """Gradients, hard-edged shapes and noise: a JPEG that compresses like a real frame."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([128 + 90 * np.sin(x / 37 + seed % 11), 110 + 80 * np.cos(y / 23 - seed % 7),
                     255 * (x + y) / (width + height)], axis=-1)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        x0, y0 = int(rng.integers(0, max(1, width - 40))), int(rng.integers(0, max(1, height - 40)))
        box = (x0, y0, x0 + int(rng.integers(10, 90)), y0 + int(rng.integers(10, 70)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    noisy = np.asarray(image).astype(np.float32) + rng.normal(0, 6, (height, width, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _actor(n_frames: int, width: int, height: int, video: int) -> np.ndarray:
    """bool [T, H, W]: an upright ellipse (a third of the height, a quarter of the width) moving right."""
    y, x = np.mgrid[0:height, 0:width]
    mask = np.zeros((n_frames, height, width), dtype=bool)
    for t in range(n_frames):
        cx = width * (0.2 + 0.6 * t / max(1, n_frames - 1))
        cy = height * (0.5 + 0.05 * np.sin(t + video))
        mask[t] = ((x - cx) / (width / 8)) ** 2 + ((y - cy) / (height / 3)) ** 2 <= 1
    return mask


def make_inputs(root: Path, s: ScubaSettings) -> tuple[list[scuba.Job], scuba.WorkerConfig]:
    """Frame folders, their masks and background images under ``root``; the step's plan and worker settings."""
    entries, masks = [], {}
    for v in range(s.videos):
        folder = root / "jpg" / LABEL / f"video_{v:03d}"
        folder.mkdir(parents=True)
        for t in range(1, s.frames + 1):
            Image.fromarray(_frame(1000 * v + t, s.width, s.height)).save(folder / FRAME_NAME.format(t),
                                                                           quality=JPEG_QUALITY)
        (folder / "n_frames").write_text(str(s.frames))
        entries.append(VideoEntry(str(folder), folder.name, 0, LABEL, s.frames))
        masks[(LABEL, folder.name)] = _actor(s.frames, s.width, s.height, v)
    (root / "masks").mkdir()
    save_human_masks(root / "masks" / "masks_val.npz", masks, "exact")
    (root / "places").mkdir()
    for i in range(max(s.n_images, 1)):
        Image.fromarray(_frame(10_000 + i, 256, 256)).save(root / "places" / f"{i:08d}.jpg", quality=JPEG_QUALITY)
    options = argparse.Namespace(seed=0, max_frames=0, n_images=s.n_images, n_stripes=s.n_stripes,
                                 video_path=str(root / "jpg"))
    jobs = scuba.plan_jobs(entries, [LABEL], scuba.list_images(str(root / "places")), options)
    config = scuba.WorkerConfig(str(root / "out"), str(root / "masks"), None, "validation", str(root / "places"),
                                min_area=0.0, min_frames=0.0, smooth=0, box_threshold=0.3, quality=JPEG_QUALITY)
    return jobs, config


def composite_only(job: scuba.Job, config: scuba.WorkerConfig, masks: scuba.ActorMasks) -> int:
    """Everything ``write_video`` computes, nothing it encodes or writes; returns the composited frames."""
    mask = masks.video(job, lambda: (0, 0))
    pixels = np.ascontiguousarray(FrameFolder(job.entry.path, job.entry.n_frames).read(list(job.frames))
                                  .permute(0, 2, 3, 1).numpy())
    height, width = pixels.shape[1:3]
    backgrounds = [scuba.background_image(clip.background, config.backgrounds, height, width) for clip in job.clips]
    made = 0
    for start in range(0, len(pixels), scuba.CHUNK):
        select = scuba.actor_select(mask[start:start + scuba.CHUNK])
        for background in backgrounds:
            made += len(scuba.composite(pixels[start:start + scuba.CHUNK], select, background))
    return made


def run(settings: ScubaSettings, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time the three paths (one thread) on the same generated videos."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(settings, progress)
    finally:
        torch.set_num_threads(threads)


def _run(s: ScubaSettings, progress: Callable[[str], None] | None) -> dict[str, Any]:
    if s.n_images + s.n_stripes < 1:
        raise ValueError("at least one background per video")
    with tempfile.TemporaryDirectory(prefix="sdn-bench-scuba-") as tmp:
        if progress:
            progress(f"scuba: writing {s.videos} videos x {s.frames} JPEG frames of {s.width}x{s.height}, masks, "
                     f"{max(s.n_images, 1)} background images")
        jobs, config = make_inputs(Path(tmp), s)
        masks = scuba.ActorMasks(config)
        calls = iter(range(1_000_000))

        def prepare() -> int:
            # a fresh output folder per call: nothing is skipped as finished
            fresh = scuba.WorkerConfig(**{**vars(config), "out": os.path.join(tmp, "out", str(next(calls)))})
            return sum(scuba.write_video(job, fresh, masks).frames for job in jobs)

        written = prepare()
        paths: dict[str, Callable[[], Any]] = {
            DECODE_PATH: lambda: [FrameFolder(job.entry.path, job.entry.n_frames).read(list(job.frames))
                                  for job in jobs],
            COMPOSITE_PATH: lambda: [composite_only(job, config, masks) for job in jobs],
            SCUBA_PATH: prepare,
        }
        samples = interleaved(paths, s.rounds, warmup=1,
                              progress=(lambda m: progress(f"scuba: {m}")) if progress else None)
    source_frames = s.videos * s.frames
    output_frames = source_frames * (s.n_images + s.n_stripes)
    if written != output_frames:
        raise RuntimeError(f"sdn prepare scuba wrote {written} frames, expected {output_frames}")
    rows = {}
    for name, sample in samples.items():
        frames = source_frames if name == DECODE_PATH else output_frames
        seconds = sample.seconds(s.statistic)
        rows[name] = {"frames": frames, "frames_per_s": frames / seconds, "ms_per_frame": 1000 * seconds / frames,
                      "cpu_ms_per_frame": 1000 * sample.cpu_seconds(s.statistic) / frames,
                      "source_frames_per_s": source_frames / seconds, "rounds": sample.as_dict()}
    decode = rows[DECODE_PATH]["frames_per_s"]
    for row in rows.values():
        row["of_decode_only"] = row["frames_per_s"] / decode
    targets = [target("scuba: written frames/s per core, share of the decode-only rate",
                      rows[SCUBA_PATH]["of_decode_only"], 0.5, at_least=True)]
    return {"settings": vars(s).copy(), "threads": 1, "paths": rows, "targets": targets}


def render(result: dict[str, Any]) -> str:
    s = result["settings"]
    per_video = s["n_images"] + s["n_stripes"]
    lines = [
        f"sdn prepare scuba, 1 thread: {s['videos']} videos x {s['frames']} JPEG frames {s['width']}x{s['height']}, "
        f"{per_video} backgrounds each ({s['n_images']} images, {s['n_stripes']} stripes), {s['statistic']} of "
        f"{s['rounds']} interleaved rounds; frames/s = source frames read (decode only) or SCUBA frames made",
        table(["path", "frames/s", "ms/frame", "CPU ms/frame", "source frames/s", "of decode only"], [
            [name, f"{row['frames_per_s']:.0f}", f"{row['ms_per_frame']:.3f}", f"{row['cpu_ms_per_frame']:.3f}",
             f"{row['source_frames_per_s']:.0f}", f"{100 * row['of_decode_only']:.0f}%"]
            for name, row in result["paths"].items()
        ]),
    ]
    return "\n".join(lines)


def panel(result: dict[str, Any]) -> Panel:
    rows = result["paths"]
    names = list(rows)
    return Panel(
        title=f"sdn prepare scuba, frames/s per core ({result['settings']['statistic']} of "
              f"{result['settings']['rounds']} rounds)",
        xlabel="frames/s (1 thread)",
        labels=names,
        values=[rows[n]["frames_per_s"] for n in names],
        notes=[f"{rows[n]['frames_per_s']:.0f}/s, {100 * rows[n]['of_decode_only']:.0f}% of decode" for n in names],
    )
