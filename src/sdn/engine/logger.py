"""Tab-separated log files in the original format (``libs/utils.py`` ``Logger``).

A header row, then one row per call, values written with ``str()`` (so floats appear as Python's
shortest repr, as the original), flushed after every row. Unlike the original, an existing log is
appended to (no second header) when a run resumes, instead of being wiped; rows written after the
checkpoint being resumed (an interrupted epoch) are dropped first, so no row appears twice.
"""

from __future__ import annotations

import csv
import os
from typing import Any, Callable

from sdn.io import atomic_write_text


class TabLogger:
    def __init__(self, path: str, header: list[str], *, append: bool = False):
        self.path = path
        self.header = list(header)
        resume = append and os.path.exists(path) and os.path.getsize(path) > 0
        self._file = open(path, "a" if resume else "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, delimiter="\t")
        if not resume:
            self._writer.writerow(self.header)
            self._file.flush()

    def log(self, values: dict[str, Any]) -> None:
        missing = [column for column in self.header if column not in values]
        if missing:
            raise ValueError(f"{self.path}: no value for column(s) {missing}")
        self._writer.writerow([values[column] for column in self.header])
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def drop_rows_after(path: str, keep: Callable[[dict[str, str]], bool]) -> None:
    """Rewrite a log keeping the header and the rows for which ``keep(row)`` holds (atomically)."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    with open(path, encoding="utf-8", newline="") as handle:
        lines = handle.read().splitlines(keepends=True)
    header = lines[0].rstrip("\r\n").split("\t")
    kept = [line for line in lines[1:] if keep(dict(zip(header, line.rstrip("\r\n").split("\t"))))]
    if len(kept) != len(lines) - 1:
        atomic_write_text(path, "".join([lines[0], *kept]))
