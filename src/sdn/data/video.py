"""Video sources: JPEG frame folders (the original layout) and video files, behind one interface.

Both return uint8 ``[T, 3, H, W]`` RGB frames for 1-based frame indices, so datasets never care
where frames come from. Where the original silently returned a short clip on a missing frame,
every source raises ``BadSampleError`` naming the offending file.

Video files are the one decoding path of sdn. At dataset scale they are counted without decoding
(an MP4 sample table, or the demuxed packets) and read by seeking to the keyframe before a window,
with exactly the frames that decoding from the first frame gives (see ``VideoFile``).
"""

from __future__ import annotations

import abc
import bisect
import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import av
import torch
from av.video.reformatter import VideoReformatter
from torchvision.io import ImageReadMode, decode_jpeg

from sdn.errors import BadSampleError, SdnError, shown

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


# ----------------------------------------------------------------------------------------------
# Video files: what the demuxed packets tell, without decoding a frame

# Codecs whose container packets each hold exactly one displayed picture (an access unit, a
# temporal unit, a picture), so that counting packets counts the frames a decoder gives.
ONE_FRAME_PER_PACKET = frozenset({"h264", "hevc", "av1", "mpeg1video", "mpeg2video", "mjpeg", "png", "ffv1",
                                  "prores", "rawvideo"})
# MPEG-4 Part 2 and its relatives can store "not coded" frames (a header of a few bytes) for which
# FFmpeg outputs nothing. A packet this small may be one, and then only decoding tells the count.
MAY_SKIP_PICTURES = frozenset({"mpeg4", "h263", "h263p", "msmpeg4v1", "msmpeg4v2", "msmpeg4v3", "wmv1", "wmv2",
                               "flv1"})
NOT_CODED_MAX_BYTES = 16
# VP8 and VP9 packets may hold frames that are decoded but never shown; their first bytes say which.
VPX = frozenset({"vp8", "vp9"})
# FFmpeg's demuxer of MP4/MOV (and 3GP...), whose index, read when the file is opened, is the
# complete sample table, with the samples that the edit list leaves out flagged as discarded.
SAMPLE_TABLE_DEMUXER = "mov"

_log = logging.getLogger(__name__)
# Videos this process reads by decoding from the first frame: logged once, and not opened for a seek again.
_sequential_videos: set[str] = set()


class PacketInfo(NamedTuple):
    """What demuxing says about one packet of the video stream (in decoding order)."""

    pts: int | None
    keyframe: bool
    discard: bool  # outside the container's edit list: decoded as a reference but never output
    size: int
    shown: int | None = 1  # frames the packet shows (read from VP8/VP9 headers); None: unreadable header
    corrupt: bool = False


@dataclass(frozen=True)
class Keyframe:
    """A packet decoding may start from, and the first frame (1-based) that it then gives exactly.

    Frames shown before that one may need packets that precede the keyframe (open GOPs, B-frames
    decoded after the keyframe but shown before it).
    """

    position: int  # in decoding order, among the stream's non-empty packets
    pts: int
    first_frame: int


@dataclass(frozen=True)
class PacketTable:
    """Frame count and seek points of a video file, from its demuxed packets alone.

    ``frames`` is None when the packets cannot tell the count (``count_problem`` says why): then
    only decoding can. ``seek_problem`` says why frames cannot be found by their timestamps, in
    which case reading decodes from the first frame; otherwise frame ``i`` is the one whose
    timestamp is ``display_pts[i - 1]``, as sequential decoding outputs frames in timestamp order.
    """

    frames: int | None
    count_problem: str | None = None
    seek_problem: str | None = None
    display_pts: tuple[int, ...] = ()
    keyframes: tuple[Keyframe, ...] = ()
    positions: dict[int, int] = field(default_factory=dict)  # pts -> decoding position, every packet

    def index_of(self, pts: int | None) -> int | None:
        """The 1-based frame index shown at ``pts`` (None if no frame is)."""
        if pts is None:
            return None
        place = bisect.bisect_left(self.display_pts, pts)
        return place + 1 if place < len(self.display_pts) and self.display_pts[place] == pts else None

    def keyframe_for(self, index: int) -> Keyframe:
        """The latest keyframe from which decoding gives frame ``index`` exactly (the first always does)."""
        return max((key for key in self.keyframes if key.first_frame <= index), key=lambda key: key.position)


def vpx_shown_frames(codec: str, data: bytes | memoryview) -> int | None:
    """Frames a VP8/VP9 packet shows, from the frame headers (None when they cannot be read).

    VP8: bit 4 of the frame tag is ``show_frame``. VP9: a superframe (an index in its last bytes)
    bundles frames; each frame header starts with the frame marker, the profile bits, then
    ``show_existing_frame`` (shows an earlier frame) or ``frame_type`` and ``show_frame``.
    """
    if not data:
        return None
    if codec == "vp8":
        return (data[0] >> 4) & 1
    frames = _vp9_superframe(data)
    if frames is None:
        return None
    shown = 0
    for frame in frames:
        if not frame or frame[0] >> 6 != 0b10:
            return None
        profile = ((frame[0] >> 5) & 1) | (((frame[0] >> 4) & 1) << 1)
        existing_bit = 3 if profile < 3 else 2  # profile 3 has a reserved bit first
        shown += 1 if (frame[0] >> existing_bit) & 1 else (frame[0] >> (existing_bit - 2)) & 1
    return shown


def _vp9_superframe(data: bytes | memoryview) -> list[bytes | memoryview] | None:
    """The frames of a VP9 packet: those its superframe index lists, or the packet itself."""
    marker = data[-1]
    if marker & 0xE0 != 0xC0:
        return [data]
    count, width = (marker & 7) + 1, ((marker >> 3) & 3) + 1
    index_size = 2 + width * count
    if len(data) < index_size or data[-index_size] != marker:
        return [data]  # not an index: the last byte of an ordinary frame
    sizes = [int.from_bytes(data[len(data) - index_size + 1 + i * width:][:width], "little") for i in range(count)]
    if sum(sizes) > len(data) - index_size:
        return None
    frames, offset = [], 0
    for size in sizes:
        frames.append(data[offset:offset + size])
        offset += size
    return frames


def packet_table(packets: Sequence[PacketInfo], codec: str, reorders: bool) -> PacketTable:
    """The count and seek points that ``packets`` (one video stream, decoding order) establish.

    ``codec`` is FFmpeg's codec name; ``reorders`` whether the decoder reorders frames (B-frames),
    in which case presentation timestamps that merely follow decoding order are not real ones.
    """
    problem = _count_problem(packets, codec)
    if problem is not None:
        return PacketTable(None, problem, problem)
    displayed = sorted(packet.pts for packet in packets if packet.shown and not packet.discard)
    stamps = [packet.pts for packet in packets]
    if len(set(stamps)) != len(stamps):
        return PacketTable(len(displayed), seek_problem="two packets have the same timestamp")
    if reorders and all(a < b for a, b in zip(stamps, stamps[1:])):
        return PacketTable(len(displayed), seek_problem="its timestamps follow decoding order although its frames "
                           "are reordered (B-frames)")
    keyframes, latest = [], None  # latest: the largest timestamp shown by a packet before this one
    for position, packet in enumerate(packets):
        if packet.keyframe:
            first = bisect.bisect_left(displayed, packet.pts)
            if latest is not None:
                first = max(first, bisect.bisect_right(displayed, latest))
            keyframes.append(Keyframe(position, packet.pts, first + 1))
        if packet.shown and not packet.discard and (latest is None or packet.pts > latest):
            latest = packet.pts
    return PacketTable(len(displayed), display_pts=tuple(displayed), keyframes=tuple(keyframes),
                       positions={packet.pts: position for position, packet in enumerate(packets)})


def _count_problem(packets: Sequence[PacketInfo], codec: str) -> str | None:
    """Why counting ``packets`` may not count decoded frames; None when it does."""
    if not packets:
        return "no video packets"
    if not packets[0].keyframe:
        return "its first packet is not a keyframe (a decoder may drop what comes before one)"
    if any(packet.corrupt for packet in packets):
        return "some packets are flagged corrupt"
    if any(packet.pts is None for packet in packets):
        return "some packets have no timestamp"
    if codec in VPX:
        if any(packet.shown is None or packet.shown > 1 for packet in packets):
            return f"{codec} packets whose shown frames cannot be told from their headers"
    elif codec in MAY_SKIP_PICTURES:
        smallest = min(packet.size for packet in packets)
        if smallest <= NOT_CODED_MAX_BYTES:
            return f"a {codec} packet of {smallest} bytes may be a frame that was not coded"
    elif codec not in ONE_FRAME_PER_PACKET:
        return f"codec {codec} is not known to store one frame per packet"
    displayed = [packet.pts for packet in packets if packet.shown and not packet.discard]
    if not displayed:
        return "no packet shows a frame"
    if min(displayed) < packets[0].pts:
        return "frames shown before its first keyframe (an open GOP at the start: a decoder may drop them)"
    return None


def sample_table_count(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int | None:
    """Frames of an MP4/MOV video from its sample table, which opening the file has read (None: not known so).

    The sample table lists every sample; those outside the edit list are flagged discarded and a
    decoder never outputs them. It counts frames under the conditions ``packet_table`` sets for
    packets, except the timestamps, which the table does not carry; reading a fragmented file (a
    table shorter than the stream's sample count) or another container needs the packets.
    """
    entries = getattr(stream, "index_entries", None)  # PyAV >= 14
    codec = stream.codec_context.codec.canonical_name
    if (SAMPLE_TABLE_DEMUXER not in container.format.name.split(",") or entries is None or stream.frames <= 0
            or len(entries) != stream.frames or not entries[0].is_keyframe):
        return None
    sizes = [entry.size for entry in entries if not entry.is_discard]
    if codec in MAY_SKIP_PICTURES:
        if min(sizes, default=0) <= NOT_CODED_MAX_BYTES:
            return None
    elif codec not in ONE_FRAME_PER_PACKET:
        return None
    return sum(1 for size in sizes if size) or None


class _SeekFailed(Exception):
    """Seeking did not give what the packet table promised: read this video sequentially."""


class VideoFile(VideoSource):
    """A video file decoded with PyAV; frame ``i`` is the ``i``-th frame sequential decoding gives (1-based).

    Nothing is decoded to count frames or to find them: an MP4's sample table gives the count when
    the file is opened, and one pass over the demuxed packets (a few milliseconds) gives the count
    and the keyframes of any container (``packet_table``). ``read`` seeks to the keyframe at or
    before the first wanted frame, decodes forward to the last one and picks frames by their
    timestamps, which gives exactly what decoding from the first frame gives. Where the packets
    cannot be trusted for that (no or repeated timestamps, codecs whose packets may hide or skip
    frames, a seek that lands elsewhere), it decodes from the first frame, as ``read_sequential``
    always does, and logs so once per video.

    Decoding uses one thread: DataLoader workers and ``sdn prepare`` processes are the parallelism.
    """

    def __init__(self, path: str | os.PathLike, n_frames: int | None = None):
        self.path = os.fspath(path)
        self._n_frames = n_frames
        self._table: PacketTable | None = None

    def num_frames(self) -> int:
        """The count from the MP4/MOV sample table, else from the demuxed packets, else by decoding."""
        if self._n_frames is None:
            with self._opened() as (container, stream):
                count = sample_table_count(container, stream)
                if count is None:
                    count = self._packet_table(container, stream).frames
            self._n_frames = count if count is not None else sum(1 for _ in self.decoded_frames())
        return self._n_frames

    def packet_table(self) -> PacketTable:
        """The video's ``PacketTable`` (demuxed once per ``VideoFile``)."""
        if self._table is None:
            with self._opened() as (container, stream):
                self._packet_table(container, stream)
        assert self._table is not None
        return self._table

    def read(self, frame_indices: Sequence[int]) -> torch.Tensor:
        wanted = self._wanted(frame_indices)
        if self.path not in _sequential_videos:
            with self._opened() as (container, stream):
                table = self._packet_table(container, stream)
                if table.seek_problem is None:
                    assert table.frames is not None
                    if max(wanted) > table.frames:
                        raise BadSampleError(self.path, f"frame {max(wanted)} requested but only {table.frames} "
                                             "frames can be decoded")
                    try:
                        return _stack(self._read_seeking(container, stream, table, sorted(wanted)), frame_indices)
                    except _SeekFailed as failure:
                        table = self._table = replace(table, seek_problem=str(failure))
            _sequential_videos.add(self.path)
            _log.warning("%s: %s; reading its frames by decoding from the first frame (slower, same frames)",
                         shown(self.path), table.seek_problem)
        return self.read_sequential(frame_indices)

    def read_sequential(self, frame_indices: Sequence[int]) -> torch.Tensor:
        """``read`` by decoding from the first frame up to the largest index: the reference, and the fallback."""
        wanted = self._wanted(frame_indices)
        last = max(wanted)
        found: dict[int, torch.Tensor] = {}
        count = 0
        reformatter = VideoReformatter()
        for count, frame in enumerate(self.decoded_frames(), start=1):
            if count in wanted:
                found[count] = _rgb(frame, reformatter)
            if count == last:
                break
        if count < last:
            raise BadSampleError(self.path, f"frame {last} requested but only {count} frames can be decoded")
        return _stack(found, frame_indices)

    def decoded_frames(self) -> Iterator[av.VideoFrame]:
        """Every frame, decoded from the first: the ``i``-th yielded is frame ``i`` everywhere in sdn."""
        with self._opened() as (container, stream):
            yield from container.decode(stream)

    def frames_per_second(self, count: int) -> float:
        """``count`` frames over the video's duration (as the original fps.py); the nominal rate without one."""
        with self._opened() as (container, stream):
            if stream.duration and stream.time_base:
                return count / float(stream.duration * stream.time_base)
            if container.duration:
                return count / (container.duration / av.time_base)
            return float(stream.average_rate or 0.0)

    # ------------------------------------------------------------------------------------------

    def _wanted(self, frame_indices: Sequence[int]) -> set[int]:
        if len(frame_indices) == 0:
            raise BadSampleError(self.path, "no frame indices requested")
        wanted = set(frame_indices)
        if min(wanted) < 1:
            raise BadSampleError(self.path, f"frame index {min(wanted)} requested; indices start at 1")
        return wanted

    @contextlib.contextmanager
    def _opened(self) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
        """The open container and its first video stream; any container or codec failure is a BadSampleError."""
        try:
            with av.open(self.path) as container:
                if not container.streams.video:
                    raise BadSampleError(self.path, "contains no video stream")
                stream = container.streams.video[0]
                stream.codec_context.thread_count = 1
                yield container, stream
        except av.FFmpegError as error:
            raise BadSampleError(self.path, f"cannot decode video ({error.strerror or error})") from error
        except OSError as error:
            raise BadSampleError(self.path, f"cannot read video ({error.strerror or error})") from error

    def _packet_table(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> PacketTable:
        """Demux every packet of ``stream`` once (no decoding) and keep the table; leaves the container at its end."""
        if self._table is None:
            codec = stream.codec_context.codec.canonical_name
            packets = [
                PacketInfo(packet.pts, packet.is_keyframe, packet.is_discard, packet.size,
                           vpx_shown_frames(codec, memoryview(packet)) if codec in VPX else 1, packet.is_corrupt)
                for packet in container.demux(stream) if packet.size
            ]
            self._table = packet_table(packets, codec, bool(stream.codec_context.has_b_frames))
        return self._table

    def _read_seeking(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                      table: PacketTable, indices: list[int]) -> dict[int, torch.Tensor]:
        """The frames at ``indices`` (sorted, distinct), one seek per run of frames a keyframe serves."""
        found: dict[int, torch.Tensor] = {}
        reformatter = VideoReformatter()
        runs: list[list[int]] = []
        for index in indices:
            if runs and table.keyframe_for(index).first_frame <= runs[-1][-1] + 1:
                runs[-1].append(index)  # decoding on is no more work than seeking
            else:
                runs.append([index])
        for run in runs:
            self._decode_run(container, stream, table, run, found, reformatter)
        return found

    def _decode_run(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                    table: PacketTable, run: list[int], found: dict[int, torch.Tensor],
                    reformatter: VideoReformatter) -> None:
        """Seek to the keyframe for ``run[0]``, check where the demuxer landed, decode up to ``run[-1]``.

        Once the last packet a wanted frame needs is in, the decoder is drained instead of being fed
        the packets its reordering delay would otherwise wait for.
        """
        keyframe = table.keyframe_for(run[0])
        wanted = set(run)
        last_needed = max(table.positions[table.display_pts[index - 1]] for index in run)
        previous: list[int] = []  # the timestamp of the last frame output

        def take(frame: av.VideoFrame) -> bool:
            """Keep ``frame`` if wanted; whether the run is complete."""
            index = table.index_of(frame.pts)
            if index is None or (previous and frame.pts <= previous[0]):
                raise _SeekFailed(f"a decoded frame has timestamp {frame.pts}, which the packets do not show in "
                                  "that order")
            previous[:] = [frame.pts]
            if index in wanted:
                found[index] = _rgb(frame, reformatter)
            return index >= run[-1]

        container.seek(keyframe.pts, stream=stream, backward=True)  # the keyframe at or before this time
        packets = container.demux(stream)
        landed = False
        context = stream.codec_context
        try:
            for packet in packets:
                position = table.positions.get(packet.pts) if packet.pts is not None else None
                if not landed and packet.size:
                    landed = True
                    start = next((key for key in table.keyframes if key.position == position), None)
                    if start is None or start.first_frame > run[0]:
                        raise _SeekFailed(f"seeking to timestamp {keyframe.pts} landed on packet {position}, not on "
                                          f"a keyframe from which frame {run[0]} can be decoded")
                # A frame no other frame refers to, shown before the run, changes nothing that follows:
                # skip decoding it (with one decoding thread the setting applies to this very packet).
                index = table.index_of(packet.pts)
                context.skip_frame = "NONREF" if index is not None and index < run[0] else "DEFAULT"
                if any(take(frame) for frame in packet.decode()):
                    return
                if position == last_needed:
                    if any(take(frame) for frame in context.decode(None)):  # drain: the rest is not needed
                        return
                    break
        finally:
            packets.close()
        raise _SeekFailed(f"decoding from the keyframe at timestamp {keyframe.pts} ended before frame {run[-1]}")


def _rgb(frame: av.VideoFrame, reformatter: VideoReformatter) -> torch.Tensor:
    """The frame as uint8 ``[H, W, 3]`` RGB; one reformatter per read keeps swscale's set-up for all its frames
    (``frame.to_ndarray`` makes a new one per frame; the pixels are the same)."""
    return torch.from_numpy(reformatter.reformat(frame, format="rgb24").to_ndarray())


def _stack(found: dict[int, torch.Tensor], frame_indices: Sequence[int]) -> torch.Tensor:
    """``[T, 3, H, W]`` in the requested order (repeats allowed) from decoded ``[H, W, 3]`` frames."""
    return torch.stack([found[index] for index in frame_indices]).permute(0, 3, 1, 2)


def count_frames(path: str) -> int:
    """Frames of the video file ``path``: from its sample table or packets where they tell (``num_frames``)."""
    return VideoFile(path).num_frames()


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
