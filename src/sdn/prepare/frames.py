"""``sdn prepare frames``: videos to ``image_%05d.jpg`` folders with ``n_frames`` (and ``fps``).

The original ran ``ffmpeg -vf scale=-1:240`` through a shell, one video at a time, and decided
that a folder was done when ``image_00001.jpg`` existed, so an interrupted video stayed
truncated forever. Here frames are decoded with PyAV (no ffmpeg binary), videos run in parallel
processes, and a video counts as done only when its ``n_frames`` file names exactly the images
present. Each video is written into a hidden staging folder and renamed into place once
complete, so a crash never leaves a half-written folder under the final name.

Frames are decoded by ``VideoFile.decoded_frames``, the one decoding path of sdn: frame ``i`` is
the ``i``-th decoded frame, the numbering ``VideoFile.read`` uses, so frame folders and the videos
they came from give the same clips.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tqdm import tqdm

from sdn.data.video import FRAME_NAME, VIDEO_EXTENSIONS, VideoFile, read_n_frames_file
from sdn.errors import BadSampleError, SdnError
from sdn.io import atomic_write_text
from sdn.prepare.common import Failure, exit_status, print_failures

LAYOUTS = ("kinetics", "ucf101", "hmdb51", "diving48", "activitynet")
CLASS_FOLDER_LAYOUTS = ("kinetics", "ucf101", "hmdb51")
IMAGE_PATTERN = re.compile(r"image_\d{5,}\.jpg")


@dataclass(frozen=True)
class FrameJob:
    """One video to turn into a frame folder, with the output settings."""

    source: str
    target: str
    size: int
    side: str
    quality: int
    write_fps: bool


@dataclass(frozen=True)
class FrameResult:
    """What happened to one video: ``done``, ``skipped`` (complete before) or ``failed``."""

    job: FrameJob
    status: str
    frames: int = 0
    reason: str = ""


@dataclass
class FramesSummary:
    """Counts of a run and the videos that failed."""

    done: int = 0
    skipped: int = 0
    frames: int = 0
    failures: list[Failure] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# Which videos go where


def _video_files(directory: str) -> list[str]:
    """Video files directly in ``directory`` (sorted; other files are ignored, as the original did)."""
    names = sorted(os.listdir(directory))
    return [os.path.join(directory, name) for name in names
            if os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS and os.path.isfile(os.path.join(directory, name))]


def detect_layout(src: str) -> tuple[str, str]:
    """The layout of ``src`` when ``--layout`` is not given, and the line that says why.

    Class folders with videos (``SRC/<class>/<video>``, as Kinetics, UCF-101 and HMDB-51 share;
    the three are converted alike) give ``kinetics``; videos directly in ``SRC`` give ``diving48``
    (ActivityNet is flat too, but needs ``--layout activitynet`` for its ``v_`` names and ``fps``
    files). Both at once, or neither, is an error: guessing would silently skip videos.
    """
    if not os.path.isdir(src):
        raise SdnError(f"{src}: source video directory does not exist")
    flat = len(_video_files(src))
    class_folders = sum(1 for name in os.listdir(src)
                        if os.path.isdir(os.path.join(src, name)) and _video_files(os.path.join(src, name)))
    if flat and class_folders:
        raise SdnError(f"{src}: cannot tell the layout: it holds videos ({flat}) and subfolders with videos "
                       f"({class_folders}); keep one of SRC/<class>/<video> or SRC/<video>, or pass --layout")
    if class_folders:
        return "kinetics", (f"layout: class folders SRC/<class>/<video>, as kinetics/ucf101/hmdb51 "
                            f"(detected: {class_folders} class folders with videos)")
    if flat:
        return "diving48", (f"layout: flat SRC/<video>, as diving48 (detected: {flat} videos directly in SRC; "
                            f"ActivityNet needs --layout activitynet)")
    raise SdnError(f"{src}: cannot tell the layout: no video files ({', '.join(VIDEO_EXTENSIONS)}) in it or in "
                   f"its subfolders")


def _target_name(source: str, layout: str) -> str:
    """The frame folder's name: the file name without extension (ActivityNet folders need ``v_``)."""
    stem = os.path.splitext(os.path.basename(source))[0]
    if layout == "activitynet" and not stem.startswith("v_"):
        return f"v_{stem}"
    return stem


def plan(src: str, dst: str, layout: str) -> tuple[list[tuple[str, str]], list[Failure]]:
    """(video, frame folder) pairs for ``layout``, and the videos two of which map to the same folder.

    Kinetics, UCF-101 and HMDB-51: ``SRC/<class>/<video>`` to ``DST/<class>/<name>/``.
    Diving48 and ActivityNet: ``SRC/<video>`` to ``DST/<name>/``.
    """
    if not os.path.isdir(src):
        raise SdnError(f"{src}: source video directory does not exist")
    if layout in CLASS_FOLDER_LAYOUTS:
        folders = [(os.path.join(src, name), os.path.join(dst, name)) for name in sorted(os.listdir(src))
                   if os.path.isdir(os.path.join(src, name))]
    else:
        folders = [(src, dst)]
    pairs, failures, owners = [], [], {}
    for source_dir, target_dir in folders:
        for source in _video_files(source_dir):
            target = os.path.join(target_dir, _target_name(source, layout))
            if target in owners:
                failures.append(Failure(source, f"same frame folder as {owners[target]}; rename one of them"))
                continue
            owners[target] = source
            pairs.append((source, target))
    if not pairs and not failures:
        where = "SRC/<class>/<video>" if layout in CLASS_FOLDER_LAYOUTS else "SRC/<video>"
        raise SdnError(f"{src}: no video files ({', '.join(VIDEO_EXTENSIONS)}) found; the {layout} layout "
                       f"expects {where}")
    return pairs, failures


# ----------------------------------------------------------------------------------------------
# One video


def is_complete(directory: str, needs_fps: bool) -> bool:
    """A folder is complete when ``n_frames`` exists and names exactly the ``image_*.jpg`` files there.

    ``n_frames`` is written last, so a folder without it (or one that disagrees with the images,
    e.g. from the original tool after an interruption) is redone.
    """
    if not os.path.isdir(directory):
        return False
    try:
        n_frames = read_n_frames_file(directory)
    except SdnError:
        return False
    names = os.listdir(directory)
    images = sum(1 for name in names if IMAGE_PATTERN.fullmatch(name))
    return (n_frames > 0 and images == n_frames and FRAME_NAME.format(n_frames) in names
            and (not needs_fps or "fps" in names))


def output_size(width: int, height: int, size: int, side: str) -> tuple[int, int]:
    """Frame size after scaling ``side`` (``height`` or ``short``) to ``size``; 0 keeps the size."""
    if size <= 0:
        return width, height
    scale = size / (height if side == "height" else min(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _write_frames(job: FrameJob, directory: str) -> tuple[int, float]:
    """Decode, scale and save every frame; return the frame count and the frames per second.

    Frames come from ``VideoFile.decoded_frames``, the decoding every sdn reader uses, so frame
    ``i`` here is frame ``i`` of ``VideoFile.read`` on the same video.
    """
    video = VideoFile(job.source)
    count = 0
    for count, frame in enumerate(video.decoded_frames(), start=1):
        width, height = output_size(frame.width, frame.height, job.size, job.side)
        # swscale bicubic, the scaler ffmpeg's -vf scale used in the original scripts
        frame.to_image(width=width, height=height, interpolation="BICUBIC").save(
            os.path.join(directory, FRAME_NAME.format(count)), quality=job.quality)
    if count == 0:
        raise BadSampleError(job.source, "no frame can be decoded")
    return count, video.frames_per_second(count)


def extract(job: FrameJob) -> FrameResult:
    """Make one frame folder (the pool's work item); a video that cannot be decoded is a failed result."""
    if is_complete(job.target, job.write_fps):
        return FrameResult(job, "skipped")
    parent, name = os.path.split(job.target)
    staging = os.path.join(parent, f".{name}.partial")
    try:
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        count, fps = _write_frames(job, staging)
        if job.write_fps:
            atomic_write_text(os.path.join(staging, "fps"), f"{round(fps, 2)}\n")
        atomic_write_text(os.path.join(staging, "n_frames"), str(count))  # last: the completion mark
        shutil.rmtree(job.target, ignore_errors=True)  # an incomplete folder from an earlier run
        os.replace(staging, job.target)
    except (BadSampleError, OSError, ValueError) as error:  # ValueError: PyAV/PIL on unusual frames
        shutil.rmtree(staging, ignore_errors=True)
        reason = error.reason if isinstance(error, BadSampleError) else f"cannot convert frames ({error})"
        return FrameResult(job, "failed", reason=reason)
    return FrameResult(job, "done", frames=count)


# ----------------------------------------------------------------------------------------------
# All videos


@contextlib.contextmanager
def _mapper(workers: int) -> Iterator[Callable]:
    """``map`` in this process, or the unordered map of a pool of ``workers`` processes.

    The pool is started before any progress bar so that no thread exists when it forks.
    """
    if workers <= 1:
        yield map
        return
    with multiprocessing.Pool(workers) as pool:
        yield pool.imap_unordered


def extract_all(src: str, dst: str, layout: str, *, size: int = 240, side: str = "height", quality: int = 90,
                workers: int = 1, progress: bool = True) -> FramesSummary:
    """Convert every video of ``src`` into ``dst`` in the ``layout``; complete folders are kept as they are."""
    if layout not in LAYOUTS:
        raise SdnError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if not 1 <= quality <= 95:
        raise SdnError(f"--quality must be between 1 and 95, got {quality}")
    pairs, failures = plan(src, dst, layout)
    jobs = [FrameJob(source, target, size, side, quality, layout == "activitynet") for source, target in pairs]
    for directory in sorted({os.path.dirname(job.target) for job in jobs}):
        os.makedirs(directory, exist_ok=True)
    summary = FramesSummary(failures=failures)
    with _mapper(workers) as mapper:
        for result in tqdm(mapper(extract, jobs), total=len(jobs), desc="frames", unit="video", disable=not progress):
            if result.status == "failed":
                summary.failures.append(Failure(result.job.source, result.reason))
            elif result.status == "skipped":
                summary.skipped += 1
            else:
                summary.done += 1
                summary.frames += result.frames
    summary.failures.sort(key=lambda failure: failure.path)
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdn prepare frames",
        description="Decode videos into image_%%05d.jpg frame folders with an n_frames file (ActivityNet: and an "
        "fps file), in the layout each dataset reader expects. Rerunning skips complete folders and redoes "
        "incomplete ones; videos that cannot be decoded are listed at the end (exit status 1).")
    parser.add_argument("src", help="Video directory: SRC/<class>/<video> (kinetics, ucf101, hmdb51) or "
                        "SRC/<video> (diving48, activitynet)")
    parser.add_argument("dst", help="Frame directory (created): DST/<class>/<name>/ or DST/<name>/ "
                        "(activitynet: DST/v_<name>/)")
    parser.add_argument("--layout", choices=LAYOUTS,
                        help="Dataset layout (default: detected from SRC: class folders with videos -> kinetics, "
                        "the same for ucf101 and hmdb51; videos directly in SRC -> diving48; ActivityNet needs "
                        "--layout activitynet)")
    parser.add_argument("--size", type=int, default=240,
                        help="Scale frames so that --side is this many pixels (default 240, the original's "
                        "height; the original used 360 for ActivityNet); 0 keeps the video's size")
    parser.add_argument("--side", choices=("height", "short"), default="height",
                        help="Which side --size sets: the height as the original scripts (default), or the short side")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality 1..95 (default 90)")
    parser.add_argument("--workers", type=int, default=max(1, min(8, os.cpu_count() or 1)),
                        help="Videos decoded in parallel (default: CPU count, at most 8)")
    parser.add_argument("--no_progress", action="store_true", help="No progress bar")
    return parser


def _layout(args: argparse.Namespace) -> str:
    """``--layout`` as given, or detected from ``SRC`` with one line saying which and why."""
    if args.layout is not None:
        return args.layout
    layout, reason = detect_layout(args.src)
    print(reason, flush=True)  # before the progress bar and the pool
    return layout


def run(args: argparse.Namespace) -> int:
    summary = extract_all(args.src, args.dst, _layout(args), size=args.size, side=args.side, quality=args.quality,
                          workers=args.workers, progress=not args.no_progress)
    print(f"frames: {summary.done} videos converted ({summary.frames} frames), {summary.skipped} already complete, "
          f"{len(summary.failures)} failed; frame folders in {args.dst}")
    print_failures(summary.failures)
    return exit_status(summary.failures)
