"""What every ``sdn prepare`` step shares: failure lists, the summary lines, device choice."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch

from sdn.errors import SdnError


@dataclass(frozen=True)
class Failure:
    """A video that could not be processed; the run goes on and lists it at the end."""

    path: str
    reason: str


def print_failures(failures: list[Failure]) -> None:
    """One line per failed video on stderr, so the user can fix or drop exactly those."""
    if not failures:
        return
    print(f"{len(failures)} video(s) failed:", file=sys.stderr)
    for failure in failures:
        print(f"  {failure.path}: {failure.reason}", file=sys.stderr)


def exit_status(failures: list[Failure]) -> int:
    """1 when some video failed (everything else was still done), so scripts can notice."""
    return 1 if failures else 0


def resolve_device(name: str) -> torch.device:
    """``auto`` picks the GPU when there is one; asking for an absent GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SdnError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SdnError(f"--device {name}: no CUDA device is available on this machine (use --device cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise SdnError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                       f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def evenly_spaced(n_frames: int, count: int) -> list[int]:
    """``count`` 1-based frame indices spread from the first to the last frame (all frames of shorter videos).

    The generator's scene-model rule (rounded ``linspace``, duplicates removed), so labels made
    here and generated labels sample the same frames.
    """
    if n_frames <= 0 or count <= 0:
        return []
    picks = np.unique(np.linspace(0, n_frames - 1, min(count, n_frames)).round().astype(np.int64))
    return [int(i) + 1 for i in picks]
