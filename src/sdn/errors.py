"""User-facing errors.

Every problem a user can cause (a bad flag, a missing or malformed file) is raised as an
``SdnError`` whose message is one line naming the file and what is wrong. The command line
catches it, prints it and exits non-zero, so users never see a deep traceback.
"""

from __future__ import annotations

import reprlib


class SdnError(Exception):
    """A problem with the user's input, reported as one clear line."""


class BadSampleError(SdnError):
    """A video, frame or clip that cannot be read. ``path`` names the offending file."""

    def __init__(self, path: str, reason: str | None = None):
        # One argument: an already formatted message (how DataLoader workers re-raise errors).
        self.path = str(path)
        self.reason = reason
        super().__init__(self.path if reason is None else f"{self.path}: {reason}")


# Names and keys read from a file go into error messages; they may hold line breaks, be huge, or
# (in a tampered pickle) be deeply nested tuples. These keep each message one readable line.
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxother, _SHORT.maxstring = 3, 40, 200


def shown(text: str, limit: int = 200) -> str:
    """``text`` as is when printable and short; otherwise quoted with escapes and cut to ``limit``."""
    return text if text.isprintable() and len(text) <= limit else repr(text[:limit])


def shown_key(value: object) -> str:
    """Any value (a dict key from a file) as a short one-line ``repr``."""
    return _SHORT.repr(value)


def first_line(error: BaseException) -> str:
    """The first line of another library's error message (some span several), or its type name."""
    text = str(error).strip()
    return shown(text.split("\n", 1)[0]) if text else type(error).__name__
