"""Video sources: JPEG frame folders (the original layout) and video files, behind one interface.

Both return uint8 ``[T, 3, H, W]`` RGB frames for 1-based frame indices, so datasets never care
where frames come from. Where the original silently returned a short clip on a missing frame
(reference 18.1 item 7), every source raises ``BadSampleError`` naming the offending file.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterator, Sequence

import av
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from sdn.errors import BadSampleError, SdnError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov")
FRAME_NAME = "image_{:05d}.jpg"


class VideoSource(abc.ABC):
    """A video whose frames can be read by 1-based index."""

    path: str

    @abc.abstractmethod
    def num_frames(self) -> int:
        """Number of frames the video holds (the original's ``n_frames``)."""

    @abc.abstractmethod
    def read(self, frame_indices: Sequence[int]) -> torch.Tensor:
        """Frames at the 1-based ``frame_indices``, in that order (repeats allowed), uint8 [T,3,H,W].

        The tensor may be channels-last in memory; use ``reshape``/``contiguous`` rather than ``view``.
        """


def read_n_frames_file(directory: str) -> int:
    """Read ``<directory>/n_frames`` exactly as the original: strip, parse as float, truncate to int."""
    path = os.path.join(directory, "n_frames")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read().strip()
    except FileNotFoundError:
        raise SdnError(f"{path}: missing n_frames file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SdnError(f"{path}: cannot read n_frames file ({error})") from error
    try:
        return int(float(text))
    except (ValueError, OverflowError):
        raise SdnError(f"{path}: expected a frame count, found {text[:40]!r}") from None


class FrameFolder(VideoSource):
    """``<directory>/image_%05d.jpg`` frames, decoded with libjpeg-turbo straight into tensors.

    ``n_frames`` may be given (e.g. from an annotation); otherwise it is read from the folder's
    ``n_frames`` file on first use.
    """

    def __init__(self, directory: str | os.PathLike, n_frames: int | None = None):
        self.path = os.fspath(directory)
        self._n_frames = n_frames

    def num_frames(self) -> int:
        if self._n_frames is None:
            self._n_frames = read_n_frames_file(self.path)
        return self._n_frames

    def frame_path(self, index: int) -> str:
        return os.path.join(self.path, FRAME_NAME.format(index))

    def read(self, frame_indices: Sequence[int]) -> torch.Tensor:
        if len(frame_indices) == 0:
            raise BadSampleError(self.path, "no frame indices requested")
        # Loop padding repeats indices: decode each distinct frame once.
        decoded = {index: self._decode(index) for index in dict.fromkeys(frame_indices)}
        sizes = {tuple(frame.shape) for frame in decoded.values()}
        if len(sizes) > 1:
            raise BadSampleError(self.path, f"frames have different sizes {sorted(sizes)}")
        # decode_jpeg returns [3,H,W] views of [H,W,3] memory. Stacking that memory as it is gives
        # a channels-last clip: five times cheaper than a channels-first copy, and the layout the
        # resize kernel works in.
        return torch.stack([decoded[index].permute(1, 2, 0) for index in frame_indices]).permute(0, 3, 1, 2)

    def _decode(self, index: int) -> torch.Tensor:
        path = self.frame_path(index)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            raise BadSampleError(path, "frame file is missing") from None
        except OSError as error:
            raise BadSampleError(path, f"cannot read frame file ({error.strerror or error})") from error
        if not data:
            raise BadSampleError(path, "frame file is empty")
        try:
            # mode=RGB turns grayscale and CMYK JPEGs into 3 channels, as PIL's convert('RGB') did.
            return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        except RuntimeError as error:
            # torchvision prefixes the libjpeg message with its source location; keep the message.
            reason = str(error).rsplit(", ", 1)[-1]
            raise BadSampleError(path, f"not a readable JPEG ({reason})") from error


class VideoFile(VideoSource):
    """A video file decoded with PyAV; frame ``i`` is the ``i``-th decoded frame (1-based).

    Container frame counts are often missing or wrong (Matroska reports 0), so ``num_frames``
    decodes the video once and caches the count, unless ``n_frames`` is given. ``read`` decodes
    sequentially and stops at the largest requested index.
    """

    def __init__(self, path: str | os.PathLike, n_frames: int | None = None):
        self.path = os.fspath(path)
        self._n_frames = n_frames

    def num_frames(self) -> int:
        if self._n_frames is None:
            self._n_frames = sum(1 for _ in self._frames())
        return self._n_frames

    def read(self, frame_indices: Sequence[int]) -> torch.Tensor:
        if len(frame_indices) == 0:
            raise BadSampleError(self.path, "no frame indices requested")
        wanted = set(frame_indices)
        if min(wanted) < 1:
            raise BadSampleError(self.path, f"frame index {min(wanted)} requested; indices start at 1")
        last = max(wanted)
        found: dict[int, torch.Tensor] = {}
        count = 0
        for count, frame in enumerate(self._frames(), start=1):
            if count in wanted:
                found[count] = torch.from_numpy(frame.to_ndarray(format="rgb24"))
            if count == last:
                break
        if count < last:
            raise BadSampleError(self.path, f"frame {last} requested but only {count} frames can be decoded")
        return torch.stack([found[index] for index in frame_indices]).permute(0, 3, 1, 2)

    def _frames(self) -> Iterator[av.VideoFrame]:
        """Decoded frames of the first video stream; any container or codec failure is a BadSampleError."""
        try:
            with av.open(self.path) as container:
                if not container.streams.video:
                    raise BadSampleError(self.path, "contains no video stream")
                yield from container.decode(container.streams.video[0])
        except av.FFmpegError as error:
            raise BadSampleError(self.path, f"cannot decode video ({error.strerror or error})") from error
        except OSError as error:
            raise BadSampleError(self.path, f"cannot read video ({error.strerror or error})") from error


def resolve_video(base: str) -> str | None:
    """The frame folder ``base`` if it exists, else the first ``base + ext`` file, else None.

    Frame folders win so that existing original-layout datasets behave exactly as before.
    """
    if os.path.isdir(base):
        return base
    for extension in VIDEO_EXTENSIONS:
        candidate = base + extension
        if os.path.isfile(candidate):
            return candidate
    return None


def open_video(path: str, n_frames: int | None = None) -> VideoSource:
    """A ``FrameFolder`` for a directory, a ``VideoFile`` for a file (``n_frames`` spares a count)."""
    if os.path.isdir(path):
        return FrameFolder(path, n_frames)
    if os.path.isfile(path):
        return VideoFile(path, n_frames)
    raise BadSampleError(path, "no such frame folder or video file")
