"""The original's normalisation constants (libs/mean.py), without importing torch.

Kept apart from the transforms so that option parsing (``sdn eval`` reuses the training parser)
stays light.
"""

from __future__ import annotations

from sdn.errors import SdnError
from sdn.models.registry import family_of

MEANS = {
    "activitynet": (114.7748, 107.7354, 99.4750),
    "kinetics": (110.63666788, 103.16065604, 96.29023126),
}
STD = (38.7568578, 37.88248729, 40.02898126)


def get_mean(norm_value: float = 1, dataset: str = "activitynet") -> list[float]:
    """Per-channel RGB mean of ``dataset`` ('activitynet' or 'kinetics'), divided by ``norm_value``."""
    if dataset not in MEANS:
        raise SdnError(f"--mean_dataset {dataset!r}: expected 'activitynet' or 'kinetics'")
    return [value / norm_value for value in MEANS[dataset]]


def get_std(norm_value: float = 1) -> list[float]:
    """Per-channel RGB std (Kinetics), divided by ``norm_value``."""
    return [value / norm_value for value in STD]


def get_torchvision_mean_std(model: str, norm_value: float = 1) -> tuple[list[float], list[float]]:
    """The mean and std torchvision's weights of ``model``'s family expect (given on the 0..1 scale),
    on the scale of ``x / norm_value`` (0..255 for 1)."""
    mean, std = family_of(model).torchvision_norm
    scale = 255.0 / norm_value
    return [value * scale for value in mean], [value * scale for value in std]
