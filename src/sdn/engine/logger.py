"""Tab-separated log files in the original format (``libs/utils.py`` ``Logger``).

A header row, then one row per call, values written with ``str()`` (so floats appear as Python's
shortest repr, as the original), flushed after every row. Unlike the original, an existing log is
appended to (no second header) when a run resumes, instead of being wiped.
"""

from __future__ import annotations

import csv
import os
from typing import Any


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
