"""Scene-bias test splits: a folder of clips and the ``split.json`` that lists them.

The field measures scene and static bias on test sets built from a dataset's own videos (StillMix,
ICCV 2023; ALBAR, ICLR 2025): SCUBA puts each test video's moving actor onto backgrounds the
model never saw, SCUFO repeats one frame of that (no motion left), and Contra. Acc. pairs the two.
``sdn synth`` writes such splits for its generated data, ``sdn prepare scuba`` for a real dataset,
and ``sdn analyze --split DIR`` reads any of them. A split is self-contained, so it can sit
anywhere, apart from the dataset it came from::

    <dir>/split.json             UCF-101-style annotation: {"labels": [...], "database": {key: {
                                     "subset": "validation", "annotations": {"label": name},
                                     "source": the original video, "background": what it is shown on}},
                                  "split": {"name": ..., "description": ...}}
    <dir>/<label>/<key>/         frames (image_%05d.jpg + n_frames), or <dir>/<label>/<key>.<ext>

Keys are video ids; a SCUBA split and its SCUFO twin use the same keys, which is how their
predictions are paired.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

from sdn.data.annotations import VideoEntry, load_json, read_ucf_hmdb
from sdn.errors import SdnError
from sdn.io import atomic_write_json

SPLIT_FILE = "split.json"
# Names sdn's own writers use; ``sdn analyze`` pairs ``scuba`` with ``scufo`` for Contra. Acc.
KNOWN_SPLITS = {
    "iid": "in context: the scene follows the action as in training",
    "conflicting": "only scenes that belong to other actions",
    "scuba": "the moving actor on backgrounds never seen in training (higher is better)",
    "scufo": "one frame of each SCUBA clip repeated: no motion (lower is better; chance is ideal)",
    "background_only": "the actor removed: the scene alone",
}


@dataclass(frozen=True)
class SplitVideo:
    """One clip to write into a split's ``split.json``."""

    key: str
    label: str
    source: str
    background: str


@dataclass(frozen=True)
class TestSplit:
    """A split read back: its name, folder, class names (index = class id) and videos."""

    name: str
    directory: str
    annotation_path: str
    class_names: list[str]
    entries: list[VideoEntry]
    description: str


def write_split_annotation(directory: str | os.PathLike, name: str, labels: Sequence[str],
                           videos: Sequence[SplitVideo], description: str | None = None) -> None:
    """Write ``<directory>/split.json`` (atomically) for videos already written below ``directory``."""
    database: dict[str, Any] = {}
    for video in videos:
        if video.key in database:
            raise SdnError(f"{directory}: split {name!r} lists video {video.key!r} twice")
        database[video.key] = {"subset": "validation", "annotations": {"label": video.label},
                               "source": video.source, "background": video.background}
    atomic_write_json(os.path.join(directory, SPLIT_FILE), {
        "labels": list(labels), "database": database,
        "split": {"name": name, "description": description or KNOWN_SPLITS.get(name, "")}}, indent=1)


def read_split(directory: str) -> TestSplit:
    """Read a split folder; a missing or malformed ``split.json`` is an SdnError naming it."""
    path = os.path.join(directory, SPLIT_FILE)
    if not os.path.isfile(path):
        raise SdnError(f"{directory}: not a test split (no {SPLIT_FILE}; sdn synth and sdn prepare scuba write them)")
    data = load_json(path)
    info = data.get("split") if isinstance(data, dict) else None
    name = info.get("name") if isinstance(info, dict) else None
    if not isinstance(name, str) or not name or "/" in name:
        raise SdnError(f"{path}: 'split' must be an object with a 'name' (a non-empty word)")
    labels, entries = read_ucf_hmdb(path, directory, "validation")
    return TestSplit(name, directory, path, labels, entries, str(info.get("description", "")))

