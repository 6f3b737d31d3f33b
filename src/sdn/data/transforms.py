"""Spatial and temporal transforms with the original's exact semantics.

The original transformed each frame as a PIL image. Here a spatial transform sees the whole clip
as one uint8 ``[T, 3, H, W]`` tensor: crops are slices and resizes are one antialiased bilinear
interpolation, whose uint8 CPU kernel reproduces PIL's BILINEAR resampling. Crop boxes, rounding
and the order of random draws are those of the original, so a seeded ``random.Random`` makes the
same choices the original made with the same seed. Normalisation is left to ``ClipNormalize``,
which runs once per batch on the device.

Every transform has ``randomize(rng)``, called once per clip before use (the original's
``randomize_parameters``); deterministic transforms ignore it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sdn.data.mean_std import get_mean, get_torchvision_mean_std
from sdn.errors import SdnError
from sdn.models.registry import family_of

Box = tuple[int, int, int, int]
CROP_POSITIONS = ("c", "tl", "tr", "bl", "br")


# ----------------------------------------------------------------------------------------------
# Normalisation


class ClipNormalize(nn.Module):
    """``(x / norm_value - mean) / std`` per channel: the original ToTensor + Normalize, per batch.

    Accepts uint8 or float clips ``[3, T, H, W]`` or batches ``[B, 3, T, H, W]`` in any memory
    layout and returns contiguous float32. ``mean`` and ``std`` are already divided by
    ``norm_value`` (as ``get_mean`` returns them). The operations and their order are the
    original's, so results agree to float32 rounding.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], norm_value: float = 1):
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {len(mean)} and {len(std)}")
        self.norm_value = float(norm_value)
        # Not persistent: they are configuration, not weights, and must not enter checkpoints.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1), persistent=False)
        # Division by exactly 1 returns its operand bit for bit, so it is skipped: the default
        # (norm_value 1, mean subtraction only) then makes two passes over the clip instead of four.
        self._divide_by_norm = self.norm_value != 1.0
        self._divide_by_std = any(float(value) != 1.0 for value in std)

    def forward(self, clips: torch.Tensor, memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        """``memory_format`` (``channels_last_3d`` for a batch) is the layout of the result, made in the one
        float copy rather than by a second one."""
        if clips.dim() not in (4, 5) or clips.shape[-4] != 3:
            raise ValueError(f"expected a clip [3,T,H,W] or a batch [B,3,T,H,W], got {tuple(clips.shape)}")
        # A fresh float32 copy (the in-place steps never touch the caller's clips), in the given
        # layout whatever the input's: the model always sees the same memory format.
        x = clips.to(torch.float32, memory_format=memory_format, copy=True)
        if self._divide_by_norm:
            x.div_(self.norm_value)
        x.sub_(self.mean)
        return x.div_(self.std) if self._divide_by_std else x

    def extra_repr(self) -> str:
        return f"norm_value={self.norm_value}"


def normalization(opt: Any) -> tuple[list[float], list[float]]:
    """The mean and std a run normalises with (``opt.mean``/``opt.std`` as ``resolve`` derived them).

    The original ``norm_method``: mean subtraction only by default, ``--no_mean_norm`` ignored with
    ``--std_norm``. ``--input_norm torchvision`` always divides by the std (torchvision's transform).
    """
    if getattr(opt, "input_norm", "original") == "torchvision":
        return list(opt.mean), list(opt.std)
    if opt.no_mean_norm and not opt.std_norm:
        return [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    if not opt.std_norm:
        return list(opt.mean), [1.0, 1.0, 1.0]
    return list(opt.mean), list(opt.std)


def clip_normalize(opt: Any) -> ClipNormalize:
    """The run's :class:`ClipNormalize` (on the CPU; move it with the model)."""
    return ClipNormalize(*normalization(opt), opt.norm_value)


def default_normalize(model: str) -> ClipNormalize:
    """The input normalisation ``model``'s family expects by default (``--input_norm auto``, 0..255 clips):
    the mean and std torchvision's weights were trained with for its video models, the original's mean
    subtraction otherwise."""
    if family_of(model).input_norm == "torchvision":
        return ClipNormalize(*get_torchvision_mean_std(model, 1))
    return ClipNormalize(get_mean(1, "activitynet"), [1.0, 1.0, 1.0])


def input_preparation(normalize: ClipNormalize, device: torch.device | str,
                      channels_last: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 clips -> the normalised float input on ``device``, in the model's memory format (once per batch).

    Every path that feeds a model (training, validation, test, analysis, CAM, bench) prepares its
    clips through such a function, so the clips always reach the device before normalising.
    """
    normalize = normalize.to(device)
    memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format

    def prepare(clip: torch.Tensor) -> torch.Tensor:
        return normalize(clip.to(normalize.mean.device, non_blocking=True), memory_format)

    return prepare


# ----------------------------------------------------------------------------------------------
# Spatial helpers


def _size(frames: torch.Tensor) -> tuple[int, int]:
    """(width, height), the order PIL uses and the original's arithmetic assumes."""
    return frames.shape[-1], frames.shape[-2]


def _pillow_box(box: Sequence[float]) -> Box:
    """Round each coordinate half-to-even, as ``PIL.Image.crop`` does with a float box."""
    x1, y1, x2, y2 = (int(round(value)) for value in box)
    return x1, y1, x2, y2


def _crop(frames: torch.Tensor, box: Box) -> torch.Tensor:
    """Crop like PIL: a box reaching outside the frame is padded with black."""
    x1, y1, x2, y2 = box
    width, height = _size(frames)
    if x1 >= 0 and y1 >= 0 and x2 <= width and y2 <= height:
        return frames[..., y1:y2, x1:x2]
    out = frames.new_zeros((*frames.shape[:-2], y2 - y1, x2 - x1))
    left, top, right, bottom = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    if left < right and top < bottom:
        out[..., top - y1 : bottom - y1, left - x1 : right - x1] = frames[..., top:bottom, left:right]
    return out


def _resize(frames: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """PIL BILINEAR resize of every frame at once (PIL returns an unchanged copy at equal size)."""
    if _size(frames) == (width, height):
        return frames
    # The uint8 antialiased kernel matches PIL; it works in channels-last memory, so hand it that
    # (a crop of a channels-last clip is copied once; other layouts are converted once).
    frames = frames.contiguous(memory_format=torch.channels_last)
    return F.interpolate(frames, size=(height, width), mode="bilinear", antialias=True, align_corners=False)


def _corner_box(position: str, side: int, width: int, height: int) -> Box:
    """The corner boxes shared by CornerCrop and MultiScaleCornerCrop (their centres differ)."""
    if position == "tl":
        return 0, 0, side, side
    if position == "tr":
        return width - side, 0, width, side
    if position == "bl":
        return 0, height - side, side, height
    if position == "br":
        return width - side, height - side, width, height
    raise ValueError(f"not a corner position: {position!r}")


def _check_positions(positions: Sequence[str]) -> list[str]:
    unknown = [p for p in positions if p not in CROP_POSITIONS]
    if unknown or not positions:
        raise SdnError(f"crop positions {list(positions)!r}: each must be one of {', '.join(CROP_POSITIONS)}")
    return list(positions)


def _check_scales(scales: Sequence[float]) -> list[float]:
    if not scales or any(scale <= 0 for scale in scales):
        raise SdnError(f"crop scales {list(scales)!r}: need at least one positive scale")
    return list(scales)


def _not_randomized(name: str) -> RuntimeError:
    return RuntimeError(f"{name} has no random parameters yet: call randomize(rng) once per clip first")


# ----------------------------------------------------------------------------------------------
# Spatial transforms


class Compose:
    """Apply transforms in order; ``randomize`` forwards to every member, in order."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]):
        self.transforms = list(transforms)

    def randomize(self, rng: random.Random) -> None:
        for transform in self.transforms:
            transform.randomize(rng)

    def __call__(self, data: Any) -> Any:
        for transform in self.transforms:
            data = transform(data)
        return data

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class _Deterministic:
    """Base of transforms without random parameters: ``randomize`` draws nothing."""

    def randomize(self, rng: random.Random) -> None:
        del rng

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({fields})"


class Scale(_Deterministic):
    """Resize so the short side is ``size`` (int), or to exactly ``(width, height)`` (tuple).

    The long side is truncated with ``int()``; a frame whose short side already equals ``size``
    is returned unchanged.
    """

    def __init__(self, size: int | tuple[int, int]):
        self.size = size

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        if not isinstance(self.size, int):
            out_width, out_height = self.size
            return out_width, out_height
        size = self.size
        if (width <= height and width == size) or (height <= width and height == size):
            return width, height
        if width < height:
            return size, int(size * height / width)
        return int(size * width / height), size

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return _resize(frames, *self.output_size(*_size(frames)))


class CenterCrop(_Deterministic):
    """Crop ``size x size`` at ``x1 = int(round((w - size) / 2))`` (half-to-even), same for y."""

    def __init__(self, size: int):
        self.size = size

    def crop_box(self, width: int, height: int) -> Box:
        x1 = int(round((width - self.size) / 2.0))
        y1 = int(round((height - self.size) / 2.0))
        return x1, y1, x1 + self.size, y1 + self.size

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return _crop(frames, self.crop_box(*_size(frames)))


class CornerCrop:
    """Crop ``size x size`` at the centre (as CenterCrop) or a corner.

    With ``crop_position=None`` a position is drawn per clip from ``crop_positions``.
    """

    def __init__(self, size: int, crop_position: str | None = None, crop_positions: Sequence[str] = CROP_POSITIONS):
        self.size = size
        self.crop_positions = _check_positions(crop_positions)
        self.random_position = crop_position is None
        self.crop_position = None if crop_position is None else _check_positions([crop_position])[0]

    def randomize(self, rng: random.Random) -> None:
        if self.random_position:
            self.crop_position = self.crop_positions[rng.randint(0, len(self.crop_positions) - 1)]

    def crop_box(self, width: int, height: int) -> Box:
        if self.crop_position is None:
            raise _not_randomized("CornerCrop(crop_position=None)")
        if self.crop_position == "c":
            return CenterCrop(self.size).crop_box(width, height)
        return _corner_box(self.crop_position, self.size, width, height)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return _crop(frames, self.crop_box(*_size(frames)))

    def __repr__(self) -> str:
        return f"CornerCrop(size={self.size}, crop_position={self.crop_position!r})"


class RandomHorizontalFlip:
    """Flip the whole clip left-right iff ``rng.random() < 0.5`` (one draw per clip)."""

    def __init__(self) -> None:
        self.flip: bool | None = None

    def randomize(self, rng: random.Random) -> None:
        self.flip = rng.random() < 0.5

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if self.flip is None:
            raise _not_randomized("RandomHorizontalFlip")
        return frames.flip(-1) if self.flip else frames

    def __repr__(self) -> str:
        return "RandomHorizontalFlip()"


class MultiScaleCornerCrop:
    """Crop a square of side ``int(min(w, h) * scale)`` at a centre/corner, then resize to ``size``.

    Per clip: a scale, then a position, each drawn uniformly. The centre box is
    ``(cx - half, cy - half, cx + half, cy + half)`` with ``cx = w // 2``, ``half = side // 2``,
    so an odd side loses one pixel, as in the original.
    """

    def __init__(self, scales: Sequence[float], size: int, crop_positions: Sequence[str] = CROP_POSITIONS):
        self.scales = _check_scales(scales)
        self.size = size
        self.crop_positions = _check_positions(crop_positions)
        self.scale: float | None = None
        self.crop_position: str | None = None

    def randomize(self, rng: random.Random) -> None:
        self.scale = self.scales[rng.randint(0, len(self.scales) - 1)]
        self.crop_position = self.crop_positions[rng.randint(0, len(self.crop_positions) - 1)]

    def crop_box(self, width: int, height: int) -> Box:
        if self.scale is None or self.crop_position is None:
            raise _not_randomized("MultiScaleCornerCrop")
        side = int(min(width, height) * self.scale)
        if self.crop_position == "c":
            center_x, center_y, half = width // 2, height // 2, side // 2
            return center_x - half, center_y - half, center_x + half, center_y + half
        return _corner_box(self.crop_position, side, width, height)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return _resize(_crop(frames, self.crop_box(*_size(frames))), self.size, self.size)

    def __repr__(self) -> str:
        return f"MultiScaleCornerCrop(scales={self.scales}, size={self.size}, crop_positions={self.crop_positions})"


class MultiScaleRandomCrop:
    """Crop a square of side ``int(min(w, h) * scale)`` at a random place, then resize to ``size``.

    Per clip: a scale, then ``tl_x`` and ``tl_y`` uniform in [0, 1). The box
    ``(x1, y1, x1 + side, y1 + side)`` with ``x1 = tl_x * (w - side)`` is rounded coordinate by
    coordinate as PIL's crop rounds it, so the crop can be one pixel larger or smaller than ``side``.
    """

    def __init__(self, scales: Sequence[float], size: int):
        self.scales = _check_scales(scales)
        self.size = size
        self.scale: float | None = None
        self.tl_x: float | None = None
        self.tl_y: float | None = None

    def randomize(self, rng: random.Random) -> None:
        self.scale = self.scales[rng.randint(0, len(self.scales) - 1)]
        self.tl_x = rng.random()
        self.tl_y = rng.random()

    def crop_box(self, width: int, height: int) -> Box:
        if self.scale is None or self.tl_x is None or self.tl_y is None:
            raise _not_randomized("MultiScaleRandomCrop")
        side = int(min(width, height) * self.scale)
        x1 = self.tl_x * (width - side)
        y1 = self.tl_y * (height - side)
        return _pillow_box((x1, y1, x1 + side, y1 + side))

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return _resize(_crop(frames, self.crop_box(*_size(frames))), self.size, self.size)

    def __repr__(self) -> str:
        return f"MultiScaleRandomCrop(scales={self.scales}, size={self.size})"


def train_spatial_transform(train_crop: str, scales: Sequence[float], sample_size: int) -> Compose:
    """The training pipeline of ``--train_crop`` (random / corner / center), then a random flip."""
    if train_crop == "random":
        crop = MultiScaleRandomCrop(scales, sample_size)
    elif train_crop == "corner":
        crop = MultiScaleCornerCrop(scales, sample_size)
    elif train_crop == "center":
        crop = MultiScaleCornerCrop(scales, sample_size, crop_positions=["c"])
    else:
        raise SdnError(f"--train_crop {train_crop!r}: expected 'random', 'corner' or 'center'")
    return Compose([crop, RandomHorizontalFlip()])


def val_spatial_transform(sample_size: int) -> Compose:
    """Validation: short side to ``sample_size``, then a centre crop."""
    return Compose([Scale(sample_size), CenterCrop(sample_size)])


def test_spatial_transform(sample_size: int, scale_in_test: float, crop_position_in_test: str) -> Compose:
    """Test: short side to ``int(sample_size / scale_in_test)``, then a crop at the given position."""
    return Compose([Scale(int(sample_size / scale_in_test)), CornerCrop(sample_size, crop_position_in_test)])


# Not a test function, whatever pytest's name matching thinks.
test_spatial_transform.__test__ = False  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------------------
# Temporal transforms


def _loop_pad(frame_indices: Sequence[int], size: int) -> list[int]:
    """Cycle through the indices until there are ``size``; never shortens; an empty list stays empty."""
    out = list(frame_indices)
    count = len(out)
    if count == 0:
        return out
    return out + [out[i % count] for i in range(count, size)]


class LoopPadding(_Deterministic):
    """Pad by cycling (``[1, 2, 3]`` -> ``[1, 2, 3, 1, 2, 3, 1, 2]`` for 8).

    Unlike the original, which extended the given list in place, this returns a new list; the
    values are the same and the caller's list (e.g. a stored sample) is left alone.
    """

    def __init__(self, size: int):
        self.size = size

    def __call__(self, frame_indices: Sequence[int]) -> list[int]:
        return _loop_pad(frame_indices, self.size)


class TemporalRandomCrop:
    """``size`` consecutive indices from a random start, loop-padded.

    The start is ``rng.randint(0, max(0, n - size - 1))`` as in the original, so a window ending
    at the last frame is never chosen; ``exact_range=True`` allows it
    (``randint(0, max(0, n - size))``). The draw depends on the list length, so it happens in
    ``__call__``, from the generator given to the latest ``randomize``.
    """

    def __init__(self, size: int, exact_range: bool = False):
        self.size = size
        self.exact_range = exact_range
        self._rng: random.Random | None = None

    def randomize(self, rng: random.Random) -> None:
        self._rng = rng

    def __call__(self, frame_indices: Sequence[int]) -> list[int]:
        if self._rng is None:
            raise _not_randomized("TemporalRandomCrop")
        last_start = len(frame_indices) - self.size - (0 if self.exact_range else 1)
        start = self._rng.randint(0, max(0, last_start))
        return _loop_pad(frame_indices[start : start + self.size], self.size)

    def __repr__(self) -> str:
        return f"TemporalRandomCrop(size={self.size}, exact_range={self.exact_range})"


class TemporalCenterCrop(_Deterministic):
    """``size`` indices starting at ``max(0, n // 2 - size // 2)``, loop-padded."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, frame_indices: Sequence[int]) -> list[int]:
        start = max(0, len(frame_indices) // 2 - self.size // 2)
        return _loop_pad(frame_indices[start : start + self.size], self.size)


class TemporalBeginCrop(_Deterministic):
    """The first ``size`` indices, loop-padded."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, frame_indices: Sequence[int]) -> list[int]:
        return _loop_pad(frame_indices[: self.size], self.size)
