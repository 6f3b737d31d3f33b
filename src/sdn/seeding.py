"""Seeds: one global seeding at start-up, and stable per-(seed, epoch, sample) seeds.

Data randomness is drawn from generators seeded by ``mix_seed(seed, epoch, index)`` rather than
from a process-global stream, so results do not depend on the number of loader workers and a
resumed run sees exactly the clips an uninterrupted run would have seen.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def mix_seed(*numbers: int) -> int:
    """A 63-bit seed from several integers (stable across runs and platforms)."""
    value = 0x9E3779B97F4A7C15
    for number in numbers:
        value = (value ^ (number + 0x9E3779B97F4A7C15 + (value << 6) + (value >> 2))) & 0xFFFFFFFFFFFFFFFF
    return value & 0x7FFFFFFFFFFFFFFF


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, as the original's ``--manual_seed``."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
