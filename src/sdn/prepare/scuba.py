"""``sdn prepare scuba``: SCUBA and SCUFO scene-bias test splits from a dataset's own test videos.

A model that recognises actions by their scenes keeps its accuracy when the actor is removed and
loses it when the actor is moved elsewhere. The field measures this with two test sets built from
the test videos themselves (StillMix, ICCV 2023; ALBAR, ICLR 2025):

* **SCUBA**: every frame of a video is ``frame * mask + background * (1 - mask)``: the moving
  actor, cut out with its mask, on a background the model never saw. Higher accuracy is better.
* **SCUFO**: one frame of a SCUBA clip repeated for the clip's length: no motion left. A model
  that still recognises the action from it relies on static appearance. Lower is better.
* **Contra. Acc.** (``sdn analyze``): a video counts when its SCUBA prediction is right and its
  SCUFO prediction differs from it; that is why both splits use the same keys.

Each video gets ``--n_images`` backgrounds drawn from a folder of images (Places365's test images
are the usual choice; each image is scaled to cover the frame and centre-cropped, keeping its
aspect ratio) and ``--n_stripes`` generated sinusoidal stripe images (two complementary colours,
stripes bent along a sine wave and rotated; no download needed). The mask is a pixel mask from
``sdn prepare segment-humans`` (or the exact masks ``sdn synth`` writes); without one, the human
detection boxes stand in, and the output and the split descriptions say so: a box carries a
rectangle of the original scene with the actor, which makes the test weaker.

A video is used when at least ``--min_frames`` of its frames show an actor covering at least
``--min_area`` of the frame (StillMix's Kinetics script used 0.9 and 0.1 with masks that also
included salient objects); the others are counted and skipped. ``--smooth k`` takes the union of
the masks within k frames of each frame (StillMix: 1), which hides flicker of a segmentation.

Output, both in ``sdn.data.test_splits``' layout (self-contained: ``sdn analyze --split``, and
``sdn train --test`` / ``sdn eval`` with ``--dataset ucf101``, read them directly)::

    <out>/scuba/split.json  <out>/scuba/<label>/<video id>__<background tag>/image_%05d.jpg + n_frames
    <out>/scufo/split.json  <out>/scufo/<label>/<same key>/...     (one JPEG, hard-linked T times)

A key is ``<video id>__image<i>`` (``i``: the image's position in the sorted list of the folder)
or ``<video id>__stripes<j>``; ``split.json`` keeps each clip's source video and background
(``image:<path in the folder>`` or ``stripes:<parameters>``, from which the image can be remade).

Deterministic: every random choice (images, stripe parameters, the SCUFO frame) is drawn from
``--seed`` and the video's class and id alone, so any number of workers and any interruption give
the same bytes. Resumable: each clip is written into a hidden staging folder and renamed into
place once complete, so a clip folder that exists is finished; a rerun skips finished clips. The
settings are recorded in ``<out>/.scuba-settings.json``; a rerun with other settings is refused
(``--overwrite`` starts afresh).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.io import encode_jpeg
from tqdm import tqdm

from sdn.data.annotations import VideoEntry
from sdn.data.datasets import class_names_for
from sdn.data.detections import HumanDetections
from sdn.data.human_masks import HumanMasks
from sdn.data.masking import box_slices
from sdn.data.test_splits import KNOWN_SPLITS, SplitVideo, write_split_annotation
from sdn.data.video import FRAME_NAME, open_video
from sdn.errors import BadSampleError, SdnError, first_line
from sdn.io import atomic_write_json
from sdn.prepare.common import Failure, exit_status, print_failures
from sdn.prepare.runner import DATASETS, subset_entries

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SETTINGS_FILE = ".scuba-settings.json"
SPLITS = ("scuba", "scufo")
CHUNK = 32  # frames composited at once: bounds the temporaries whatever the video's length
BOXES_NOTE = ("actor masks are human detection BOXES, not pixel masks: each actor carries a rectangle of its own "
              "scene, so this set measures less scene bias than one made from segmentation masks "
              "(sdn prepare segment-humans)")


# ----------------------------------------------------------------------------------------------
# Backgrounds


@dataclass(frozen=True)
class Stripes:
    """A sinusoidal stripe image; lengths are fractions of the frame's short side, so it looks alike at any size."""

    angle: float       # degrees: direction of the stripes
    period: float      # distance between stripes
    width: float       # share of the period painted in the second colour
    amplitude: float   # how far the stripes bend
    wavelength: float  # length of one bend along the stripe
    phase: float       # radians
    colour: tuple[int, int, int]  # the first colour; the second is its complement (255 - c)

    def spec(self) -> str:
        """``stripes:...``: split.json's background; :func:`parse_stripes` gives these exact values back."""
        return ("stripes:" + ",".join(f"{name}={getattr(self, name):.4f}" for name in
                                      ("angle", "period", "width", "amplitude", "wavelength", "phase"))
                + ",colour=" + "/".join(str(c) for c in self.colour))

    @staticmethod
    def draw(rng: np.random.Generator) -> "Stripes":
        """Random parameters, rounded to what the spec stores (so a spec remakes its image exactly)."""
        values = [rng.uniform(0, 180), rng.uniform(0.08, 0.25), rng.uniform(0.3, 0.6), rng.uniform(0, 0.15),
                  rng.uniform(0.3, 1.5), rng.uniform(0, 2 * math.pi)]
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        return Stripes(*(round(float(v), 4) for v in values), colour=colour)  # type: ignore[arg-type]


def parse_stripes(spec: str) -> Stripes:
    """The parameters of a ``stripes:`` background spec (an SdnError if it is malformed)."""
    try:
        fields = dict(part.split("=", 1) for part in spec.split(":", 1)[1].split(","))
        colour = tuple(int(c) for c in fields.pop("colour").split("/"))
        numbers = {name: float(value) for name, value in fields.items()}
        stripes = Stripes(colour=colour, **numbers)  # type: ignore[arg-type]
    except (ValueError, KeyError, TypeError, IndexError):
        raise SdnError(f"malformed stripe background {spec!r}") from None
    if len(stripes.colour) != 3 or not all(0 <= c <= 255 for c in stripes.colour) or stripes.period <= 0 \
            or stripes.wavelength <= 0:
        raise SdnError(f"malformed stripe background {spec!r}")
    return stripes


def render_stripes(stripes: Stripes, height: int, width: int) -> np.ndarray:
    """uint8 ``[H, W, 3]``: the second colour where ``frac((v - A sin(2 pi u / L + phase)) / P) < width``.

    ``u, v`` are pixel-centre coordinates from the image centre, rotated by ``angle``; ``A, L, P``
    are ``amplitude, wavelength, period`` times the short side.
    """
    side = min(height, width)
    y = np.arange(height, dtype=np.float64)[:, None] + 0.5 - height / 2
    x = np.arange(width, dtype=np.float64)[None, :] + 0.5 - width / 2
    theta = math.radians(stripes.angle)
    u = x * math.cos(theta) + y * math.sin(theta)
    v = -x * math.sin(theta) + y * math.cos(theta)
    bend = stripes.amplitude * side * np.sin(2 * math.pi * u / (stripes.wavelength * side) + stripes.phase)
    on = np.mod((v - bend) / (stripes.period * side), 1.0) < stripes.width
    first = np.array(stripes.colour, dtype=np.uint8)
    return np.where(on[..., None], 255 - first, first).astype(np.uint8)


def fit_image(path: str, height: int, width: int) -> np.ndarray:
    """uint8 ``[H, W, 3]``: the image scaled to cover the frame (aspect ratio kept) and centre-cropped."""
    try:
        with Image.open(path) as image:
            fitted = ImageOps.fit(image.convert("RGB"), (width, height), method=Image.Resampling.BILINEAR)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise BadSampleError(path, f"not a readable background image ({first_line(error)})") from None
    return np.asarray(fitted, dtype=np.uint8)


def background_image(spec: str, backgrounds: str | None, height: int, width: int) -> np.ndarray:
    """The background a split.json ``background`` names, at the frame's size."""
    if spec.startswith("stripes:"):
        return render_stripes(parse_stripes(spec), height, width)
    if spec.startswith("image:") and backgrounds:
        return fit_image(os.path.join(backgrounds, spec[len("image:"):]), height, width)
    raise SdnError(f"unknown background {spec!r}")


def list_images(directory: str) -> list[str]:
    """Image files under ``directory`` (any depth), as sorted '/'-separated relative paths."""
    if not os.path.isdir(directory):
        raise SdnError(f"{directory}: --backgrounds is not a directory")
    found = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        found += [os.path.relpath(os.path.join(root, name), directory).replace(os.sep, "/") for name in files
                  if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and not name.startswith(".")]
    if not found:
        raise SdnError(f"{directory}: no background images ({', '.join(IMAGE_EXTENSIONS)}) found")
    return sorted(found)


# ----------------------------------------------------------------------------------------------
# Compositing


def actor_select(mask: np.ndarray) -> np.ndarray:
    """uint8 ``[T, H, W, 3]``: 255 on the actor's pixels, 0 elsewhere (the operand of :func:`composite`).

    Made once per video chunk and shared by all its backgrounds.
    """
    value = np.negative(np.ascontiguousarray(mask, dtype=bool).view(np.uint8))  # True -> 255
    select = np.empty((*mask.shape, 3), dtype=np.uint8)
    for channel in range(3):
        select[..., channel] = value
    return select


def composite(frames: np.ndarray, select: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``frames`` (uint8 ``[T, H, W, 3]``) where ``select`` is 255, ``background`` (``[H, W, 3]``) elsewhere.

    Exactly ``frame * mask + background * (1 - mask)`` for a 0/1 mask, as bit operations
    (``b ^ ((f ^ b) & s)``), about ten times faster than ``np.where`` on uint8 images.
    """
    out = np.bitwise_xor(frames, background)
    np.bitwise_and(out, select, out=out)
    np.bitwise_xor(out, background, out=out)
    return out


def smooth_mask(mask: np.ndarray, reach: int) -> np.ndarray:
    """Frame t's mask becomes the union of the masks of frames t - reach .. t + reach."""
    smoothed = mask.copy()
    for shift in range(1, min(reach, len(mask) - 1) + 1):
        smoothed[shift:] |= mask[:-shift]
        smoothed[:-shift] |= mask[shift:]
    return smoothed


def box_mask(boxes_per_frame: Sequence[np.ndarray], height: int, width: int, threshold: float) -> np.ndarray:
    """bool ``[T, H, W]``: the pixels of every box scoring at least ``threshold``.

    Filled as the human masking fills them (``box_slices``), so a box-made set hides what training's
    human masking hides.
    """
    mask = np.zeros((len(boxes_per_frame), height, width), dtype=bool)
    for t, boxes in enumerate(boxes_per_frame):
        for box in np.asarray(boxes, dtype=np.float32).reshape(-1, 5):
            region = box_slices(box, height, width) if box[4] >= np.float32(threshold) else None
            if region is not None:
                mask[t][region] = True
    return mask


def encode(frame: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of a uint8 ``[H, W, 3]`` frame (libjpeg-turbo through torchvision, as sdn decodes)."""
    return encode_jpeg(torch.from_numpy(frame).permute(2, 0, 1), quality=quality).numpy().tobytes()


# ----------------------------------------------------------------------------------------------
# The plan: which clips, with which backgrounds (made in the main process, deterministic)


@dataclass(frozen=True)
class Clip:
    """One SCUBA clip and its SCUFO twin: their key, background and which frame SCUFO repeats (0-based)."""

    key: str
    background: str
    still: int


@dataclass(frozen=True)
class Job:
    """One source video and its clips (the work of one worker call)."""

    index: int
    entry: VideoEntry
    label: str
    source: str
    frames: tuple[int, ...]
    clips: tuple[Clip, ...]


def clip_frames(n_frames: int, max_frames: int) -> tuple[int, ...]:
    """1-based frames of the clip: all, or the ``max_frames`` consecutive frames in the middle."""
    if max_frames <= 0 or n_frames <= max_frames:
        return tuple(range(1, n_frames + 1))
    start = (n_frames - max_frames) // 2 + 1
    return tuple(range(start, start + max_frames))


def video_rng(seed: int, entry: VideoEntry) -> np.random.Generator:
    """A generator that depends only on the seed and the video (not on its position or on other videos)."""
    digest = hashlib.sha256(f"{entry.class_dir}\0{entry.video_id}".encode()).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng(np.random.SeedSequence([seed, *words]))


def key_bases(entries: Sequence[VideoEntry]) -> list[str]:
    """The first part of each video's keys: its id, made unique (a short hash) when two videos share it."""
    bases = [entry.video_id.replace("/", "_").replace("\\", "_") for entry in entries]
    counts: dict[str, int] = {}
    for base in bases:
        counts[base] = counts.get(base, 0) + 1
    return [base if counts[base] == 1 else
            f"{base}_{hashlib.sha1(f'{entry.class_dir}{chr(0)}{entry.video_id}'.encode()).hexdigest()[:8]}"
            for base, entry in zip(bases, entries)]


def plan_jobs(entries: Sequence[VideoEntry], labels: Sequence[str], images: Sequence[str], args: argparse.Namespace
              ) -> list[Job]:
    """Every video's clips: ``--n_images`` distinct images, ``--n_stripes`` stripe images, SCUFO frames."""
    jobs = []
    for index, (entry, base) in enumerate(zip(entries, key_bases(entries))):
        rng = video_rng(args.seed, entry)
        frames = clip_frames(entry.n_frames, args.max_frames)
        backgrounds = []
        if args.n_images:
            picks = rng.choice(len(images), size=args.n_images, replace=False)
            backgrounds += [(f"image{int(i)}", f"image:{images[int(i)]}") for i in picks]
        backgrounds += [(f"stripes{j}", Stripes.draw(rng).spec()) for j in range(args.n_stripes)]
        stills = rng.integers(0, len(frames), size=len(backgrounds))
        clips = tuple(Clip(f"{base}__{tag}", spec, int(still)) for (tag, spec), still in zip(backgrounds, stills))
        source = os.path.relpath(entry.path, args.video_path).replace(os.sep, "/")
        jobs.append(Job(index, entry, labels[entry.label], source, frames, clips))
    return jobs


def clip_dir(out: str, split: str, job: Job, clip: Clip) -> str:
    return os.path.join(out, split, job.label, clip.key)


def is_finished(out: str, job: Job, clip: Clip) -> bool:
    """Both folders exist: each is renamed into place only once complete."""
    return all(os.path.isdir(clip_dir(out, split, job, clip)) for split in SPLITS)


# ----------------------------------------------------------------------------------------------
# One video (in a worker process)


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker needs besides its job."""

    out: str
    human_masks_path: str | None
    human_dets_path: str | None
    subset: str
    backgrounds: str | None
    min_area: float
    min_frames: float
    smooth: int
    box_threshold: float
    quality: int


@dataclass(frozen=True)
class Result:
    """``done`` (clips written now), ``complete`` (all finished before), ``no_actor`` or ``failed``."""

    index: int
    status: str
    frames: int = 0
    failure: Failure | None = None


class ActorMasks:
    """The actor masks of one subset: pixel masks, or boxes filled as rectangles."""

    def __init__(self, config: WorkerConfig):
        self.config = config
        if config.human_masks_path:
            self.masks: HumanMasks | None = HumanMasks.from_path(config.human_masks_path, config.subset)
            self.source = self.masks.source
        else:
            self.masks = None
            self.detections = HumanDetections.from_path(config.human_dets_path or "", config.subset)
            self.source = "boxes"

    def video(self, job: Job, size: Callable[[], tuple[int, int]]) -> np.ndarray:
        """bool ``[T, H, W]`` for the job's frames; ``size()`` gives the frame size when boxes need it."""
        entry = job.entry
        if self.masks is not None:
            return self.masks.frames(entry.class_dir, entry.video_id, job.frames)
        height, width = size()
        boxes = [self.detections.boxes(entry.class_dir, entry.video_id, t) for t in job.frames]
        return box_mask(boxes, height, width, self.config.box_threshold)


_WORKER: dict[str, Any] = {}


def init_worker(config: WorkerConfig) -> None:
    """Open the mask file once per pool process; one torch thread each (the processes are the parallelism)."""
    torch.set_num_threads(1)
    _WORKER["config"] = config
    _WORKER["masks"] = ActorMasks(config)


def has_actor(mask: np.ndarray, min_area: float, min_frames: float) -> bool:
    """At least ``min_frames`` of the frames show at least ``min_area`` of actor pixels (and some actor at all)."""
    area = mask.reshape(len(mask), -1).mean(axis=1)
    with_actor = (area >= min_area) & (area > 0)
    return bool(with_actor.any()) and float(with_actor.mean()) >= min_frames


def _staging(final: str) -> str:
    parent, name = os.path.split(final)
    return os.path.join(parent, f".{name}.partial")


def _fresh(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)


def _publish(staging: str, final: str, count: int) -> None:
    """``n_frames`` last, then the rename that makes the clip visible: the clip folder is the atomic unit.

    Nothing in a staging folder is ever read, so its files need no atomic writes of their own (an
    fsync per clip cost 8% of the step's time on ext4).
    """
    with open(os.path.join(staging, "n_frames"), "w", encoding="utf-8") as handle:
        handle.write(str(count))
    os.replace(staging, final)


def _repeat(first: str, directory: str, count: int) -> None:
    """Frames 2..count of a SCUFO clip: hard links to the first (a copy where links are not possible)."""
    data = None
    for index in range(2, count + 1):
        target = os.path.join(directory, FRAME_NAME.format(index))
        try:
            os.link(first, target)
        except OSError:
            if data is None:
                with open(first, "rb") as handle:
                    data = handle.read()
            with open(target, "wb") as handle:
                handle.write(data)


def write_video(job: Job, config: WorkerConfig, masks: ActorMasks) -> Result:
    """Composite one video onto each of its backgrounds and write the missing SCUBA and SCUFO clips."""
    todo = [clip for clip in job.clips if not is_finished(config.out, job, clip)]
    if not todo:
        return Result(job.index, "complete")
    video = open_video(job.entry.path, job.entry.n_frames)

    def size() -> tuple[int, int]:  # only boxes need it: pixel masks know their size
        first = video.read([job.frames[0]])
        return int(first.shape[2]), int(first.shape[3])

    mask = masks.video(job, size)
    if config.smooth:
        mask = smooth_mask(mask, config.smooth)
    if not has_actor(mask, config.min_area, config.min_frames):
        return Result(job.index, "no_actor")
    frames = video.read(list(job.frames)).permute(0, 2, 3, 1)  # [T, H, W, 3], the decoder's memory layout
    pixels = np.ascontiguousarray(frames.numpy())
    if pixels.shape[:3] != mask.shape:
        raise BadSampleError(job.entry.path, f"its frames are {pixels.shape[2]}x{pixels.shape[1]} but its actor mask "
                             f"is {mask.shape[2]}x{mask.shape[1]}; make the masks from the same frames")
    height, width = pixels.shape[1:3]
    count = len(job.frames)
    targets = []  # (clip, background, {split: (final, staging)} of the missing folders)
    for clip in todo:
        missing = {}
        for split in SPLITS:
            final = clip_dir(config.out, split, job, clip)
            if not os.path.isdir(final):
                missing[split] = (final, _staging(final))
                _fresh(missing[split][1])
        targets.append((clip, background_image(clip.background, config.backgrounds, height, width), missing))
    written = 0
    for start in range(0, count, CHUNK):
        stop = min(count, start + CHUNK)
        select = actor_select(mask[start:stop])
        for clip, background, missing in targets:
            out = composite(pixels[start:stop], select, background)
            for offset in range(stop - start):
                position = start + offset
                data = None
                if "scuba" in missing:
                    data = encode(out[offset], config.quality)
                    with open(os.path.join(missing["scuba"][1], FRAME_NAME.format(position + 1)), "wb") as handle:
                        handle.write(data)
                    written += 1
                if position == clip.still and "scufo" in missing:
                    data = data if data is not None else encode(out[offset], config.quality)
                    with open(os.path.join(missing["scufo"][1], FRAME_NAME.format(1)), "wb") as handle:
                        handle.write(data)
    for clip, _, missing in targets:
        if "scufo" in missing:
            staging = missing["scufo"][1]
            _repeat(os.path.join(staging, FRAME_NAME.format(1)), staging, count)
        for final, staging in missing.values():
            _publish(staging, final, count)
    return Result(job.index, "done", written)


def run_job(job: Job) -> Result:
    """The pool's work item: a video that cannot be made is a failed result, never an exception."""
    config, masks = _WORKER["config"], _WORKER["masks"]
    try:
        return write_video(job, config, masks)
    except (BadSampleError, SdnError, OSError, ValueError) as error:
        for clip in job.clips:
            for split in SPLITS:
                shutil.rmtree(_staging(clip_dir(config.out, split, job, clip)), ignore_errors=True)
        if isinstance(error, BadSampleError):
            failure = Failure(error.path, error.reason or str(error))
        elif isinstance(error, OSError):
            failure = Failure(job.entry.path, f"cannot write its clips ({error.strerror or error})")
        else:
            failure = Failure(job.entry.path, first_line(error))
        return Result(job.index, "failed", failure=failure)


# ----------------------------------------------------------------------------------------------
# All videos


@contextlib.contextmanager
def _mapper(workers: int, config: WorkerConfig, masks: ActorMasks) -> Iterator[Callable]:
    """``map`` in this process, or the unordered map of a pool (started before any progress bar thread)."""
    if workers <= 1:
        _WORKER.update(config=config, masks=masks)
        yield map
        return
    with multiprocessing.Pool(workers, initializer=init_worker, initargs=(config,)) as pool:
        yield lambda function, items: pool.imap_unordered(function, items, chunksize=1)


def _settings(args: argparse.Namespace, images: Sequence[str], source: str) -> dict[str, Any]:
    """Everything that changes the output; a rerun must match it to resume."""
    return {
        "dataset": args.dataset, "annotation_path": os.path.abspath(args.annotation_path),
        "video_path": os.path.abspath(args.video_path), "subset": args.subset,
        "human_masks_path": args.human_masks_path and os.path.abspath(args.human_masks_path),
        "human_dets_path": args.human_dets_path and os.path.abspath(args.human_dets_path), "mask_source": source,
        "backgrounds": args.backgrounds and os.path.abspath(args.backgrounds),
        "background_images": hashlib.sha256("\n".join(images).encode()).hexdigest() if images else None,
        "n_images": args.n_images, "n_stripes": args.n_stripes, "min_area": args.min_area,
        "min_frames": args.min_frames, "smooth": args.smooth, "max_frames": args.max_frames,
        "box_threshold": args.box_threshold, "quality": args.quality, "seed": args.seed,
    }


def _prepare_out(out: str, settings: dict[str, Any], overwrite: bool) -> None:
    """Create ``out``; refuse to mix with clips made under other settings (unless ``overwrite``)."""
    path = os.path.join(out, SETTINGS_FILE)
    if overwrite:
        for split in SPLITS:
            shutil.rmtree(os.path.join(out, split), ignore_errors=True)
    elif os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as handle:
                previous = json.load(handle)
        except (OSError, ValueError) as error:
            raise SdnError(f"{path}: unreadable ({first_line(error)}); pass --overwrite to start afresh") from None
        if previous != settings:
            changed = sorted(name for name in set(settings) | set(previous if isinstance(previous, dict) else {})
                             if not isinstance(previous, dict) or previous.get(name) != settings.get(name))
            raise SdnError(f"{out}: holds SCUBA/SCUFO clips made with other settings (differing: "
                           f"{', '.join(changed)}); use another --out, or --overwrite to start afresh")
    elif any(os.path.exists(os.path.join(out, split)) for split in SPLITS):
        raise SdnError(f"{out}: has scuba/ or scufo/ folders not made by sdn prepare scuba (no {SETTINGS_FILE}); "
                       "use another --out, or --overwrite to replace them")
    os.makedirs(out, exist_ok=True)
    atomic_write_json(path, settings, indent=1, sort_keys=True)


def _mask_description(args: argparse.Namespace, source: str) -> str:
    if source == "boxes":
        where = args.human_dets_path or args.human_masks_path
        return f"Actor masks: {BOXES_NOTE} (from {os.path.basename(os.path.abspath(where))})."
    kind = {"segmentation": "person segmentation masks", "exact": "the exact masks the generator rendered"}[source]
    return f"Actor masks: {kind} (from {os.path.basename(os.path.abspath(args.human_masks_path))})."


def _descriptions(args: argparse.Namespace, source: str) -> dict[str, str]:
    kinds = []
    if args.n_images:
        kinds.append(f"{args.n_images} images from {os.path.basename(os.path.abspath(args.backgrounds))}")
    if args.n_stripes:
        kinds.append(f"{args.n_stripes} sinusoidal stripe images")
    origin = (f"the {args.subset} videos of {os.path.basename(args.annotation_path)}, each on "
              f"{' and '.join(kinds)} (key: <video>__<background>)")
    masks = _mask_description(args, source)
    return {"scuba": f"SCUBA: {KNOWN_SPLITS['scuba']}; {origin}. {masks}",
            "scufo": f"SCUFO: {KNOWN_SPLITS['scufo']}; the twin of the SCUBA split, same keys; {origin}. {masks}"}


def _check(args: argparse.Namespace) -> None:
    for name in ("n_images", "n_stripes", "smooth", "max_frames", "workers"):
        if getattr(args, name) < 0:
            raise SdnError(f"--{name} must be 0 or more, got {getattr(args, name)}")
    if args.n_images + args.n_stripes < 1:
        raise SdnError("no backgrounds: --n_images and --n_stripes are both 0")
    if args.n_images and not args.backgrounds:
        raise SdnError(f"--n_images {args.n_images} needs --backgrounds DIR (a folder of images, e.g. Places365's "
                       "test images); pass --n_images 0 for stripe backgrounds only")
    if not 1 <= args.quality <= 95:
        raise SdnError(f"--quality must be between 1 and 95, got {args.quality}")
    for name in ("min_area", "min_frames"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise SdnError(f"--{name} must be between 0 and 1, got {getattr(args, name)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdn prepare scuba",
        description="Write the SCUBA scene-bias test split (each test video's actor, cut out with its mask, on "
        "backgrounds the model never saw) and its SCUFO twin (one SCUBA frame repeated: no motion) as "
        "OUT/scuba and OUT/scufo, for sdn analyze CHECKPOINT --split OUT/scuba --split OUT/scufo. "
        "Deterministic, parallel and resumable: rerun the same command after an interruption.")
    parser.add_argument("--video_path", required=True,
                        help="Frame (or video) root as passed to training (Kinetics: the folder with train/ and val/)")
    parser.add_argument("--annotation_path", required=True,
                        help="Annotation JSON (Diving48: the annotation directory) as passed to training")
    parser.add_argument("--dataset", default="kinetics", choices=DATASETS, help="Annotation format (default kinetics)")
    parser.add_argument("--subset", default="validation", choices=("validation", "training"),
                        help="Videos to use (default validation: UCF-101's and HMDB-51's test lists)")
    masks = parser.add_mutually_exclusive_group(required=True)
    masks.add_argument("--human_masks_path", help="Folder of masks_{train,val}.npz (sdn prepare segment-humans)")
    masks.add_argument("--human_dets_path",
                       help="Folder of the human detections (sdn prepare detect-humans): boxes as masks, a weaker test")
    parser.add_argument("--out", required=True, help="Output folder: OUT/scuba and OUT/scufo are written (created)")
    parser.add_argument("--backgrounds", help="Folder of background images (any depth), e.g. Places365's test images")
    parser.add_argument("--n_images", type=int,
                        help="Background images per video (default 3 with --backgrounds, else 0)")
    parser.add_argument("--n_stripes", type=int, default=2, help="Generated stripe backgrounds per video (default 2)")
    parser.add_argument("--min_area", type=float, default=0.01,
                        help="A frame shows the actor when its mask covers at least this share of it (default 0.01)")
    parser.add_argument("--min_frames", type=float, default=0.5,
                        help="Skip videos where fewer than this share of frames show the actor (default 0.5)")
    parser.add_argument("--smooth", type=int, default=0,
                        help="Each frame's mask is the union of the masks within this many frames (default 0)")
    parser.add_argument("--max_frames", type=int, default=0,
                        help="At most this many consecutive frames from the middle of each video (default 0: all)")
    parser.add_argument("--box_threshold", type=float, default=0.3,
                        help="With --human_dets_path: boxes scoring at least this are the actor (default 0.3, as "
                        "training's human masking)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality 1..95 (default 90)")
    parser.add_argument("--seed", type=int, default=0, help="Seed of every random choice (default 0)")
    parser.add_argument("--workers", type=int, default=max(1, min(8, os.cpu_count() or 1)),
                        help="Videos composited in parallel (default: CPU count, at most 8)")
    parser.add_argument("--overwrite", action="store_true", help="Delete OUT/scuba and OUT/scufo and start afresh")
    parser.add_argument("--no_progress", action="store_true", help="No progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.n_images is None:
        args.n_images = 3 if args.backgrounds else 0
    _check(args)
    config = WorkerConfig(os.path.abspath(args.out), args.human_masks_path, args.human_dets_path, args.subset,
                          args.backgrounds and os.path.abspath(args.backgrounds), args.min_area, args.min_frames,
                          args.smooth, args.box_threshold, args.quality)
    masks = ActorMasks(config)  # an unreadable mask file fails here, before any work
    source = masks.source
    if source == "boxes":
        print(f"note: {BOXES_NOTE}")
    images = list_images(args.backgrounds) if args.n_images else []
    if len(images) < args.n_images:
        raise SdnError(f"{args.backgrounds}: {len(images)} images, fewer than --n_images {args.n_images}")
    labels = class_names_for(SimpleNamespace(dataset=args.dataset, annotation_path=args.annotation_path))
    bad = [name for name in labels if "/" in name or name in (".", "..")]
    if bad:
        raise SdnError(f"{args.annotation_path}: class {bad[0]!r} cannot be a folder name of the split")
    entries = subset_entries(args.dataset, args.annotation_path, args.video_path, args.subset)
    _prepare_out(config.out, _settings(args, images, source), args.overwrite)
    jobs = plan_jobs(entries, labels, images, args)
    pending = [job for job in jobs if not all(is_finished(config.out, job, clip) for clip in job.clips)]
    counts = {"done": 0, "complete": len(jobs) - len(pending), "no_actor": 0, "failed": 0}
    failures: list[Failure] = []
    written = 0
    total = sum(len(job.frames) * len(job.clips) for job in pending)
    with _mapper(min(args.workers, len(pending)), config, masks) as mapper:
        results = mapper(run_job, pending)
        with tqdm(total=total, desc="scuba", unit="frame", disable=args.no_progress or not total) as bar:
            for result in results:
                counts[result.status] += 1
                written += result.frames
                if result.failure:
                    failures.append(result.failure)
                job = jobs[result.index]
                bar.update(len(job.frames) * len(job.clips))
    failures.sort(key=lambda failure: failure.path)
    videos = [SplitVideo(clip.key, job.label, job.source, clip.background)
              for job in jobs for clip in job.clips if is_finished(config.out, job, clip)]
    if not videos:
        print_failures(failures)
        raise SdnError(f"{args.annotation_path}: no SCUBA clip could be made from the {len(jobs)} {args.subset} videos "
                       f"({counts['no_actor']} with an actor of at least {args.min_area:g} of the frame in fewer than "
                       f"{args.min_frames:g} of their frames, "
                       f"{counts['failed']} failed)")
    descriptions = _descriptions(args, source)
    for split in SPLITS:
        write_split_annotation(os.path.join(config.out, split), split, labels, videos, descriptions[split])
    per_video = args.n_images + args.n_stripes
    print(f"scuba: {len(videos)} clips ({per_video} backgrounds per video) of {len(jobs)} {args.subset} videos: "
          f"{counts['done']} videos now ({written} frames), {counts['complete']} from an earlier run, "
          f"{counts['no_actor']} skipped (an actor of at least {args.min_area:g} of the frame in fewer than "
          f"{args.min_frames:g} of their frames), "
          f"{counts['failed']} failed -> {os.path.join(args.out, 'scuba')}, {os.path.join(args.out, 'scufo')}")
    if source == "boxes":
        print(f"note: {BOXES_NOTE}")
    print_failures(failures)
    return exit_status(failures)
