"""The driver of the model steps (scene-labels, detect-humans, segment-humans): videos, resuming, outputs.

Each step runs a model over the videos of the training and validation subsets of an annotation
file, exactly as training will look them up (class directory and video id from sdn's readers),
and writes one file per subset under the names the loaders glob for.

Resuming: each finished video is saved at once as a tiny safe ``.npz`` in a hidden folder next to
the output (``.<output name>.partial/``), so an interrupted run continues where it stopped. The
folder records the settings; different settings start it afresh. When every video succeeded the
folder is removed; when some failed it is kept, and the next run retries only those. An output
whose run finished cleanly is skipped unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sdn.data.annotations import VideoEntry
from sdn.data.datasets import KINETICS_FAMILY, read_entries
from sdn.data.scene_labels import subset_pattern
from sdn.errors import SdnError
from sdn.io import atomic_write_json
from sdn.prepare import formats
from sdn.prepare.common import Failure, exit_status, print_failures

DATASETS = (*KINETICS_FAMILY, "ucf101", "hmdb51", "diving48")
SETTINGS_FILE = "settings.json"

Save = Callable[[VideoEntry, Any], None]


@dataclass(frozen=True)
class Task:
    """What a step runs: its file kind and names, settings that make results differ, and the work.

    ``process(entries, save, progress)`` runs the model over ``entries``, calls ``save(entry,
    value)`` once per finished video (``value`` is that video's entry in the original layout)
    and returns the videos that failed.
    """

    kind: str
    safe_names: Mapping[str, str]
    original_names: Mapping[str, str]
    settings: Mapping[str, Any]
    process: Callable[[list[VideoEntry], Save, bool], list[Failure]]
    describe: Callable[[dict], str] = lambda results: ""
    # How finished videos are kept and assembled: a step whose results are not the scene-label or
    # detection layouts (segment-humans' masks) brings its own ShardStore subclass.
    store: Callable[[str, str, Mapping[str, Any]], "ShardStore"] = lambda *args: ShardStore(*args)


def add_common_arguments(parser: argparse.ArgumentParser, batch_size: int, batch_help: str,
                         original: bool = True) -> None:
    """The options the model steps share: where the videos are, where results go, how to run.

    ``original=False`` leaves out ``--original`` for a step whose output has no original format.
    """
    parser.add_argument("--video_path", required=True,
                        help="Frame (or video) root as passed to training (Kinetics: the folder with train/ and val/)")
    parser.add_argument("--annotation_path", required=True,
                        help="Annotation JSON (Diving48: the annotation directory) as passed to training")
    parser.add_argument("--dataset", default="kinetics", choices=DATASETS, help="Annotation format (default kinetics)")
    parser.add_argument("--out", required=True, help="Output directory for the safe .npz files (created)")
    if original:
        parser.add_argument("--original", metavar="DIR",
                            help="Also write the original pickled .npy files into DIR")
    parser.add_argument("--subsets", nargs="+", choices=("training", "validation"), default=["training", "validation"],
                        help="Subsets to process (default: both)")
    parser.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda or cuda:N")
    parser.add_argument("--batch_size", type=int, default=batch_size, help=batch_help)
    parser.add_argument("--workers", type=int, default=2,
                        help="Frame-loading processes (default 2; 0 loads in this one)")
    parser.add_argument("--overwrite", action="store_true", help="Redo subsets whose output file already exists")
    parser.add_argument("--no_progress", action="store_true", help="No progress bar")


def subset_entries(dataset: str, annotation_path: str, video_path: str, subset: str) -> list[VideoEntry]:
    """The videos of ``subset`` as the training readers find them, one per (class, video id)."""
    root = video_path
    if dataset in KINETICS_FAMILY:
        root = os.path.join(video_path, "train" if subset == "training" else "val")
    _, entries = read_entries(SimpleNamespace(dataset=dataset, annotation_path=annotation_path), subset, root)
    unique: dict[tuple[str, str], VideoEntry] = {}
    for entry in entries:
        unique.setdefault((entry.class_dir, entry.video_id), entry)
    if len(unique) < len(entries):
        print(f"note: {len(entries) - len(unique)} {subset} videos share a class and video id with another; "
              "labels are made for the first of each")
    return list(unique.values())


class ShardStore:
    """One small safe file per finished video, in a hidden folder: the resumable state of a run."""

    def __init__(self, directory: str, kind: str, settings: Mapping[str, Any]):
        self.directory, self.kind = directory, kind
        settings_path = os.path.join(directory, SETTINGS_FILE)
        if os.path.isdir(directory) and _read_settings(settings_path) != dict(settings):
            print(f"note: {directory} holds results of other settings; starting afresh")
            shutil.rmtree(directory)
        os.makedirs(directory, exist_ok=True)
        atomic_write_json(settings_path, dict(settings), sort_keys=True)

    def path(self, entry: VideoEntry) -> str:
        digest = hashlib.sha1(f"{entry.class_dir}\0{entry.video_id}".encode()).hexdigest()
        return os.path.join(self.directory, f"{digest}.npz")

    def has(self, entry: VideoEntry) -> bool:
        return os.path.isfile(self.path(entry))

    def save(self, entry: VideoEntry, value: Any) -> None:
        formats.save(self.path(entry), self.kind, {entry.class_dir: {entry.video_id: value}})

    def collect(self, entries: list[VideoEntry]) -> dict[str, dict[str, Any]]:
        """The saved results of ``entries`` (in their order) in the original nested layout."""
        results: dict[str, dict[str, Any]] = {}
        for entry in entries:
            if self.has(entry):
                _, data = formats.load(self.path(entry))
                results.setdefault(entry.class_dir, {})[entry.video_id] = data[entry.class_dir][entry.video_id]
        return results

    def finish(self, args: argparse.Namespace, task: Task, split: str, done: list[VideoEntry]) -> tuple[list[str], str]:
        """Write the subset's output files from the saved results of ``done``; (paths written, a note)."""
        results = self.collect(done)
        return _write(args, task, split, results), task.describe(results)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _read_settings(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _write(args: argparse.Namespace, task: Task, split: str, results: dict) -> list[str]:
    """The safe file in ``--out`` and, with ``--original``, the pickled one; return their paths."""
    written = [os.path.join(args.out, task.safe_names[split])]
    if getattr(args, "original", None):
        os.makedirs(args.original, exist_ok=True)
        written.append(os.path.join(args.original, task.original_names[split]))
    for path in written:
        formats.save(path, task.kind, results)
    return written


def _run_subset(args: argparse.Namespace, task: Task, subset: str) -> list[Failure]:
    """Process the videos of one subset that have no saved result yet and write its output files."""
    split = subset_pattern(subset)
    final = os.path.join(args.out, task.safe_names[split])
    shards = os.path.join(args.out, f".{task.safe_names[split]}.partial")
    if args.overwrite:
        shutil.rmtree(shards, ignore_errors=True)
    elif os.path.isfile(final) and not os.path.isdir(shards):
        print(f"{subset}: {final} is complete; skipped (--overwrite redoes it)")
        return []
    entries = subset_entries(args.dataset, args.annotation_path, args.video_path, subset)
    store = task.store(shards, task.kind, task.settings)
    pending = [entry for entry in entries if not store.has(entry)]
    failures = task.process(pending, store.save, not args.no_progress)
    done = [entry for entry in entries if store.has(entry)]
    if not done:
        print_failures(failures)
        raise SdnError(f"{args.annotation_path}: no {subset} video could be processed")
    written, note = store.finish(args, task, split, done)
    if not failures:
        store.remove()
    print(f"{subset}: {task.kind} of {len(done)} videos ({len(pending) - len(failures)} now, "
          f"{len(done) - len(pending) + len(failures)} from an earlier run), {len(failures)} failed "
          f"-> {', '.join(written)}{note}")
    return failures


def run_task(args: argparse.Namespace, task: Task) -> int:
    """Run ``task`` over every requested subset; list the failed videos at the end."""
    if args.batch_size < 1:
        raise SdnError(f"--batch_size must be at least 1, got {args.batch_size}")
    if args.workers < 0:
        raise SdnError(f"--workers must be 0 or more, got {args.workers}")
    os.makedirs(args.out, exist_ok=True)
    failures = [failure for subset in args.subsets for failure in _run_subset(args, task, subset)]
    print_failures(failures)
    return exit_status(failures)
