"""User-facing errors.

Every problem a user can cause (a bad flag, a missing or malformed file) is raised as an
``SdnError`` whose message is one line naming the file and what is wrong. The command line
catches it, prints it and exits non-zero, so users never see a deep traceback.
"""

from __future__ import annotations


class SdnError(Exception):
    """A problem with the user's input, reported as one clear line."""


class BadSampleError(SdnError):
    """A video, frame or clip that cannot be read. ``path`` names the offending file."""

    def __init__(self, path: str, reason: str | None = None):
        # One argument: an already formatted message (how DataLoader workers re-raise errors).
        self.path = str(path)
        self.reason = reason
        super().__init__(self.path if reason is None else f"{self.path}: {reason}")
