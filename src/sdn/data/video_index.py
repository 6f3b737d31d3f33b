"""Frame counts of a dataset's video files: counted once, in parallel, and cached in an index file.

Building a dataset needs the frame count of every video. ``frame_counts`` takes a video's count
from the index file when its path, size and modification time are those recorded, counts the
others from their demuxed packets (``sdn.data.video.count_frames``: nothing is decoded where the
packets tell) in worker processes with a progress bar, and rewrites the index atomically. A second
run over the same videos therefore only reads the index and stats the files; a changed or new
video is recounted.

The index is JSON (never a pickle), one per annotation file, next to it:
``{"format": "sdn frame index", "version": 1, "videos": {"/abs/path.mp4": [size, mtime_ns, frames]}}``.
It is a cache: a damaged index is reported in one line and rebuilt, and a folder where it cannot
be written only costs the next run the counting. Videos whose count cannot be established are
returned with the reason, for the caller to report by name and skip; they are not cached, so
that a video fixed in place (or a passing read error) is counted again.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from tqdm import tqdm

from sdn.data.video import count_frames
from sdn.errors import SdnError, first_line, shown
from sdn.io import atomic_write_json

INDEX_FORMAT = "sdn frame index"
INDEX_VERSION = 1
INDEX_SUFFIX = ".frames.json"
# Counting one video in this process takes milliseconds; starting workers only pays beyond a few.
PARALLEL_FROM = 16
PROGRESS_FROM = 50
MAX_INDEXED_FRAMES = 10_000_000  # as annotations.MAX_FRAMES: a larger count is not a real video's

Entry = tuple[int, int, int]  # size in bytes, modification time in ns, frames


@dataclass
class FrameCounts:
    """Frame counts by path (as given), and the videos whose count could not be established."""

    counts: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # path -> reason
    cached: int = 0  # taken from the index
    counted: int = 0  # counted in this call


def index_path_for(annotation: str) -> str:
    """The index of the videos an annotation file lists: ``<annotation>.frames.json``, next to it."""
    return annotation + INDEX_SUFFIX


def default_workers() -> int:
    """Counting processes: the usable cores, at most 8 (the files' reading becomes the limit)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def frame_counts(paths: Sequence[str], index_file: str | None, *, workers: int | None = None,
                 progress: bool = True) -> FrameCounts:
    """The frame count of every video file in ``paths``, from ``index_file`` where it is current.

    ``index_file`` None counts everything and caches nothing. ``workers`` processes count (default:
    ``default_workers()``; in this process when 1 or when few videos need counting).
    """
    result = FrameCounts()
    index = load_index(index_file) if index_file else {}
    stamps: dict[str, tuple[int, int]] = {}
    todo: list[str] = []
    for path in dict.fromkeys(paths):
        try:
            status = os.stat(path)
        except OSError as error:
            result.failures[path] = f"cannot read video ({error.strerror or error})"
            continue
        stamps[path] = (status.st_size, status.st_mtime_ns)
        entry = index.get(os.path.abspath(path))
        if entry is not None and entry[:2] == stamps[path]:
            result.counts[path] = entry[2]
            result.cached += 1
        else:
            todo.append(path)
    for path, frames, reason in _count_all(todo, workers or default_workers(), progress):
        if frames is None:
            result.failures[path] = reason
            continue
        result.counts[path] = frames
        result.counted += 1
        index[os.path.abspath(path)] = (*stamps[path], frames)
    if index_file and result.counted:
        save_index(index_file, index)
    return result


def load_index(index_file: str) -> dict[str, Entry]:
    """The entries of ``index_file`` (none when it does not exist); a damaged index is reported and ignored."""
    try:
        with open(index_file, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as error:  # ValueError: bad JSON or text encoding
        print(f"note: {shown(index_file)}: unreadable frame index ({first_line(error)}); counting its videos again")
        return {}
    videos = data.get("videos") if isinstance(data, dict) else None
    if (not isinstance(data, dict) or data.get("format") != INDEX_FORMAT or data.get("version") != INDEX_VERSION
            or not isinstance(videos, dict)):
        print(f"note: {shown(index_file)}: not an sdn frame index of version {INDEX_VERSION}; counting its videos "
              "again")
        return {}
    entries = {}
    for path, entry in videos.items():
        if (isinstance(entry, list) and len(entry) == 3
                and all(isinstance(value, int) and not isinstance(value, bool) and value >= 0 for value in entry)
                and entry[2] <= MAX_INDEXED_FRAMES):
            entries[path] = (entry[0], entry[1], entry[2])
    if len(entries) < len(videos):
        print(f"note: {shown(index_file)}: {len(videos) - len(entries)} malformed entries ignored; those videos are "
              "counted again")
    return entries


def save_index(index_file: str, entries: dict[str, Entry]) -> None:
    """Write the index atomically; a folder that cannot be written only loses the cache (one note)."""
    data = {"format": INDEX_FORMAT, "version": INDEX_VERSION,
            "videos": {path: list(entry) for path, entry in sorted(entries.items())}}
    try:
        atomic_write_json(index_file, data, separators=(",", ":"))
    except SdnError as error:
        print(f"note: frame counts not cached: {error}")


def _count_all(paths: list[str], workers: int, progress: bool) -> Iterator[tuple[str, int | None, str]]:
    """``(path, frames or None, reason)`` for each path, in worker processes when they pay.

    The pool starts before the progress bar, so that no thread (tqdm's monitor) exists when it forks.
    """
    parallel = workers > 1 and len(paths) >= PARALLEL_FROM
    with contextlib.ExitStack() as stack:
        if parallel:
            pool = stack.enter_context(multiprocessing.Pool(min(workers, len(paths))))
            chunk = max(1, min(16, len(paths) // (workers * 8)))
            outcomes = pool.imap_unordered(_count_one, paths, chunksize=chunk)
        else:
            outcomes = map(_count_one, paths)
        bar = stack.enter_context(tqdm(total=len(paths), desc="counting video frames", unit="video",
                                       disable=not progress or len(paths) < PROGRESS_FROM))
        for outcome in outcomes:
            yield outcome
            bar.update()


def _count_one(path: str) -> tuple[str, int | None, str]:
    """One video's count, or the one-line reason it has none (the workers' task: it must not raise)."""
    try:
        return path, count_frames(path), ""
    except (SdnError, OSError, ValueError) as error:  # ValueError: PyAV on streams it cannot handle
        return path, None, getattr(error, "reason", None) or first_line(error)
