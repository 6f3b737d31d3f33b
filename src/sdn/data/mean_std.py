"""The original's normalisation constants (libs/mean.py), without importing torch.

Kept apart from the transforms so that option parsing (``sdn eval`` reuses the training parser)
stays light.
"""

from __future__ import annotations

from sdn.errors import SdnError

MEANS = {
    "activitynet": (114.7748, 107.7354, 99.4750),
    "kinetics": (110.63666788, 103.16065604, 96.29023126),
}
STD = (38.7568578, 37.88248729, 40.02898126)
# torchvision's video weights (Kinetics-400) were trained on (x / 255 - mean) / std with these.
TORCHVISION_MEAN = (0.43216, 0.394666, 0.37645)
TORCHVISION_STD = (0.22803, 0.22145, 0.216989)


def get_mean(norm_value: float = 1, dataset: str = "activitynet") -> list[float]:
    """Per-channel RGB mean of ``dataset`` ('activitynet' or 'kinetics'), divided by ``norm_value``."""
    if dataset not in MEANS:
        raise SdnError(f"--mean_dataset {dataset!r}: expected 'activitynet' or 'kinetics'")
    return [value / norm_value for value in MEANS[dataset]]


def get_std(norm_value: float = 1) -> list[float]:
    """Per-channel RGB std (Kinetics), divided by ``norm_value``."""
    return [value / norm_value for value in STD]


def get_torchvision_mean_std(norm_value: float = 1) -> tuple[list[float], list[float]]:
    """torchvision's Kinetics-400 mean and std on the scale of ``x / norm_value`` (0..255 for 1)."""
    scale = 255.0 / norm_value
    return [value * scale for value in TORCHVISION_MEAN], [value * scale for value in TORCHVISION_STD]
