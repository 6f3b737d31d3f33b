"""Video sources: frame folders and PyAV video files give the same frames, and bad input is named.

Video files are counted from their packets and read by seeking; every generated variant (codecs,
containers, B-frames, frame rates, start times) must give exactly the frames of decoding from
the first frame.
"""

import logging
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

import sdn.data.video as video
import video_samples
from sdn.data.video import (
    VIDEO_EXTENSIONS,
    FrameFolder,
    PacketInfo,
    VideoFile,
    open_video,
    packet_table,
    read_n_frames_file,
    resolve_video,
    sample_table_count,
    vpx_shown_frames,
)
from sdn.errors import BadSampleError, SdnError

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")

WIDTH, HEIGHT, COUNT = 64, 48, 8


def smooth_frames(count: int = COUNT) -> list[np.ndarray]:
    """Distinct, smooth RGB frames (smooth so that lossy codecs stay close)."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    frames = []
    for i in range(count):
        rgb = np.stack([x * 3 + i * 20, y * 4 + i * 10, 200 - (x + y) - i * 15], axis=-1)
        frames.append(np.clip(rgb, 0, 255).astype(np.uint8))
    return frames


def write_folder(directory: Path, frames: list[np.ndarray], n_frames: str | None = None) -> Path:
    directory.mkdir(parents=True)
    for i, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(directory / f"image_{i:05d}.jpg", quality=95)
    if n_frames is not None:
        (directory / "n_frames").write_text(n_frames)
    return directory


def write_video(path: Path, frames: list[np.ndarray], codec: str, pix_fmt: str, **options: str) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, pix_fmt
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def pil_frame(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)


# ---------------------------------------------------------------------------------------------
# Frame folders


def test_frame_folder_reads_in_order_with_repeats_decoding_each_frame_once(tmp_path, monkeypatch):
    folder = write_folder(tmp_path / "v", smooth_frames())
    calls = []
    real_decode = video.decode_jpeg
    monkeypatch.setattr(video, "decode_jpeg", lambda data, **kw: calls.append(1) or real_decode(data, **kw))

    clip = FrameFolder(folder).read([3, 1, 3, 2, 1])

    assert clip.dtype == torch.uint8 and clip.shape == (5, 3, HEIGHT, WIDTH)
    assert len(calls) == 3  # 3 distinct frames
    for row, index in enumerate([3, 1, 3, 2, 1]):
        reference = pil_frame(folder / f"image_{index:05d}.jpg")  # the original loader's decode
        assert (clip[row].int() - reference.int()).abs().max() <= 1
    assert torch.equal(clip[0], clip[2]) and not torch.equal(clip[0], clip[1])


def test_n_frames_file_follows_the_original_parsing(tmp_path):
    folder = write_folder(tmp_path / "v", smooth_frames(2), n_frames="12.9\n")
    assert read_n_frames_file(str(folder)) == 12
    assert FrameFolder(folder).num_frames() == 12
    assert FrameFolder(folder, n_frames=2).num_frames() == 2  # a given count wins

    (folder / "n_frames").write_text("twelve")
    with pytest.raises(SdnError, match=r"n_frames.*'twelve'"):
        read_n_frames_file(str(folder))
    (folder / "n_frames").unlink()
    with pytest.raises(SdnError, match="missing n_frames") as info:
        FrameFolder(folder).num_frames()
    assert str(folder / "n_frames") in str(info.value)


def test_missing_frame_names_the_file(tmp_path):
    folder = write_folder(tmp_path / "v", smooth_frames(3))
    with pytest.raises(BadSampleError, match="missing") as info:
        FrameFolder(folder).read([1, 2, 3, 4])
    assert info.value.path == str(folder / "image_00004.jpg")
    assert str(folder / "image_00004.jpg") in str(info.value)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_jpeg_names_the_file(tmp_path, damage):
    folder = write_folder(tmp_path / "v", smooth_frames(2))
    bad = folder / "image_00002.jpg"
    data = bad.read_bytes()
    bad.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not a jpeg" * 50, "empty": b""}[damage])
    with pytest.raises(BadSampleError) as info:
        FrameFolder(folder).read([1, 2])
    assert info.value.path == str(bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grayscale_and_cmyk_jpegs_become_rgb(tmp_path, mode):
    folder = tmp_path / "v"
    folder.mkdir()
    Image.fromarray(smooth_frames(1)[0]).convert(mode).save(folder / "image_00001.jpg", quality=95)
    clip = FrameFolder(folder).read([1])
    assert clip.shape == (1, 3, HEIGHT, WIDTH)
    reference = pil_frame(folder / "image_00001.jpg")  # PIL convert('RGB'), as the original
    assert (clip[0].int() - reference.int()).abs().max() <= 1
    if mode == "L":
        assert torch.equal(clip[0, 0], clip[0, 1]) and torch.equal(clip[0, 1], clip[0, 2])


# ---------------------------------------------------------------------------------------------
# Video files


def test_lossless_video_matches_the_frame_folder_exactly(tmp_path):
    folder = write_folder(tmp_path / "v", smooth_frames())
    decoded = FrameFolder(folder).read(range(1, COUNT + 1))
    frames = [f.permute(1, 2, 0).numpy() for f in decoded]
    path = write_video(tmp_path / "v.mov", frames, "png", "rgb24")

    source = VideoFile(path)
    assert source.num_frames() == COUNT
    indices = [5, 2, 2, 8, 1]
    assert torch.equal(source.read(indices), FrameFolder(folder).read(indices))


def test_frame_count_does_not_trust_the_container(tmp_path):
    path = write_video(tmp_path / "v.mkv", smooth_frames(), "ffv1", "bgr0")
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # Matroska does not store a count
    source = VideoFile(path)
    assert source.num_frames() == COUNT
    assert torch.equal(source.read([COUNT])[0].permute(1, 2, 0), torch.from_numpy(smooth_frames()[-1]))


def test_lossy_video_matches_up_to_codec_loss(tmp_path):
    frames = smooth_frames()
    folder = write_folder(tmp_path / "v", frames)
    path = write_video(tmp_path / "v.mp4", frames, "libx264", "yuv420p", crf="10")
    from_video = VideoFile(path).read([1, 4, 8]).float()
    from_folder = FrameFolder(folder).read([1, 4, 8]).float()
    # H.264 stores chroma at quarter resolution and in a limited range: about 2 grey levels.
    assert (from_video - from_folder).abs().mean() < 2.5


def test_index_beyond_the_video_names_it(tmp_path):
    path = write_video(tmp_path / "v.mkv", smooth_frames(), "ffv1", "bgr0")
    with pytest.raises(BadSampleError, match=f"frame {COUNT + 1} requested but only {COUNT}") as info:
        VideoFile(path).read([1, COUNT + 1])
    assert info.value.path == str(path)
    with pytest.raises(BadSampleError, match="start at 1"):
        VideoFile(path).read([0, 1])


def test_unreadable_videos_name_the_file(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00junk" * 100)
    for action in (lambda s: s.read([1]), lambda s: s.num_frames()):
        with pytest.raises(BadSampleError) as info:
            action(VideoFile(garbage))
        assert info.value.path == str(garbage) and "\n" not in str(info.value)

    truncated = write_video(tmp_path / "t.mkv", smooth_frames(), "ffv1", "bgr0")
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 3])
    with pytest.raises(BadSampleError) as info:
        VideoFile(truncated).read([COUNT])
    assert info.value.path == str(truncated)


# ---------------------------------------------------------------------------------------------
# Resolution


def test_resolve_video_prefers_the_folder_then_the_extension_order(tmp_path):
    base = tmp_path / "label" / "key"
    base.parent.mkdir()
    assert resolve_video(str(base)) is None

    (tmp_path / "label" / "key.mov").write_bytes(b"")
    (tmp_path / "label" / "key.mkv").write_bytes(b"")
    assert VIDEO_EXTENSIONS.index(".mkv") < VIDEO_EXTENSIONS.index(".mov")
    assert resolve_video(str(base)) == str(base) + ".mkv"

    base.mkdir()
    assert resolve_video(str(base)) == str(base)


def test_open_video_dispatches_on_what_exists(tmp_path):
    folder = write_folder(tmp_path / "v", smooth_frames(2), n_frames="2")
    path = write_video(tmp_path / "v.mkv", smooth_frames(2), "ffv1", "bgr0")
    assert isinstance(open_video(str(folder)), FrameFolder)
    assert open_video(str(folder), n_frames=5).num_frames() == 5
    assert isinstance(open_video(str(path)), VideoFile)
    assert open_video(str(path)).num_frames() == 2
    with pytest.raises(BadSampleError, match="no such") as info:
        open_video(str(tmp_path / "nothing"))
    assert info.value.path == str(tmp_path / "nothing")


# ---------------------------------------------------------------------------------------------
# Video files at dataset scale: counting from packets, seeking, and falling back


@pytest.fixture(scope="module")
def variants(tmp_path_factory) -> dict[str, Path]:
    """Every video of ``video_samples.VARIANTS`` that this PyAV build can encode (about 2 s to write)."""
    root = tmp_path_factory.mktemp("variants")
    return {name: video_samples.write_video(root / name, **kwargs) for name, kwargs in video_samples.VARIANTS.items()
            if video_samples.available(kwargs.get("codec", "libx264"))}


def windows_and_scatters(count: int, first_frames: list[int]) -> list[list[int]]:
    """Windows of 8 starting on, just before and just after each keyframe's first frame and every 5th
    frame; scattered reads (a seek each); out of order with repeats; the first and the last frame."""
    starts = {start for first in first_frames for start in (first - 1, first, first + 1)} | set(range(1, count, 5))
    windows = [list(range(start, min(count, start + 7) + 1)) for start in sorted(starts) if 1 <= start <= count]
    spread = [list(range(1 + offset, count + 1, 11)) for offset in range(3)]
    return windows + spread + [[count, 2, count // 2, 2], [1], [count]]


@pytest.mark.parametrize("name", list(video_samples.VARIANTS))
def test_seeking_gives_exactly_the_frames_of_sequential_decoding(variants, name, caplog):
    if name not in variants:
        pytest.skip(f"this PyAV cannot encode {video_samples.VARIANTS[name].get('codec')}")
    path = variants[name]
    reference = video_samples.sequential_frames(path)
    table = VideoFile(path).packet_table()
    # counted from the packets, without decoding, and right; MP4/MOV from the sample table alone
    assert table.count_problem is None and table.frames == len(reference)
    assert VideoFile(path).num_frames() == len(reference)
    with av.open(str(path)) as container:
        from_samples = sample_table_count(container, container.streams.video[0])
    assert from_samples == (len(reference) if path.suffix in (".mp4", ".mov") else None)
    # these videos can be read by seeking: several keyframes, and the latest one serves late frames
    assert table.seek_problem is None
    assert len(table.keyframes) >= 3 and table.keyframe_for(len(reference)).position > 0
    with caplog.at_level(logging.WARNING, logger="sdn.data.video"):
        for indices in windows_and_scatters(len(reference), [key.first_frame for key in table.keyframes]):
            clip = VideoFile(path, n_frames=len(reference)).read(indices)
            assert torch.equal(clip, torch.stack([reference[i - 1] for i in indices])), (name, indices)
    assert not caplog.records  # no fallback to sequential decoding


def test_the_edit_list_video_drops_the_frames_it_discards(variants):
    """48 frames encoded from -200 ms: the MP4 edit list starts at 0, so 5 frames are never shown."""
    path = variants["h264_edit_list.mp4"]
    assert len(video_samples.sequential_frames(path)) == VideoFile(path).num_frames() == 43
    # keyframes before the edit list's start still serve as seek points
    assert VideoFile(path).packet_table().keyframes[1].first_frame < 12


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_a_stream_cut_at_an_open_gop_keyframe(variants, tmp_path, suffix):
    """Packets copied from the second keyframe of an open-GOP stream on: the B-frames right after it
    are shown before it and need the GOP that was cut off. FFmpeg drops them; in Matroska only
    decoding tells (counted so, read sequentially), MP4's edit list leaves them out (discarded)."""
    path = tmp_path / f"cut{suffix}"
    with av.open(str(variants["h264_open_gop.mkv"])) as source:
        stream = source.streams.video[0]
        packets = [packet for packet in source.demux(stream) if packet.size]
        cut = [i for i, packet in enumerate(packets) if packet.is_keyframe][1]
        with av.open(str(path), "w") as target:
            copy = target.add_stream_from_template(stream)
            for packet in packets[cut:]:
                packet.stream = copy
                target.mux(packet)
    reference = video_samples.sequential_frames(path)
    assert len(reference) < len(packets) - cut  # the leading B-frames are gone
    table = VideoFile(path).packet_table()
    if suffix == ".mkv":
        assert table.frames is None and "before its first keyframe" in table.count_problem
    else:
        assert table.count_problem is None and table.seek_problem is None
    assert VideoFile(path).num_frames() == len(reference)
    for indices in ([1, 2], [len(reference) - 3, len(reference)], [5, 20, 9]):
        assert torch.equal(VideoFile(path).read(indices), torch.stack([reference[i - 1] for i in indices]))


def test_untrusted_timestamps_fall_back_to_sequential_decoding_logged_once(tmp_path, monkeypatch, caplog):
    # AVI stores no presentation times: with B-frames, FFmpeg's H.264 timestamps follow decoding order
    path = video_samples.write_video(tmp_path / "bframes.avi", count=30)
    monkeypatch.setattr(video, "_sequential_videos", set())
    table = VideoFile(path).packet_table()
    assert table.frames == 30 and "decoding order" in table.seek_problem
    reference = video_samples.sequential_frames(path)
    with caplog.at_level(logging.WARNING, logger="sdn.data.video"):
        for indices in ([20, 21, 22], [5, 1], [30]):
            assert torch.equal(VideoFile(path).read(indices), torch.stack([reference[i - 1] for i in indices]))
    assert len(caplog.records) == 1  # once per video, not once per read
    message = caplog.records[0].getMessage()
    assert str(path) in message and "decoding from the first frame" in message and "\n" not in message


def test_a_seek_that_lands_elsewhere_falls_back(tmp_path, monkeypatch, caplog):
    path = video_samples.write_video(tmp_path / "v.mp4", count=36)
    real_table = video.packet_table

    def wrong_keyframes(*args, **kwargs):  # claims the last packet is a keyframe that serves every frame
        table = real_table(*args, **kwargs)
        last = len(table.positions) - 1
        return replace(table, keyframes=(video.Keyframe(last, table.display_pts[-1], 1),))

    monkeypatch.setattr(video, "packet_table", wrong_keyframes)
    monkeypatch.setattr(video, "_sequential_videos", set())
    reference = video_samples.sequential_frames(path)
    source = VideoFile(path)
    with caplog.at_level(logging.WARNING, logger="sdn.data.video"):
        assert torch.equal(source.read([3, 4]), torch.stack([reference[2], reference[3]]))
        assert torch.equal(source.read([30]), reference[29][None])
    assert "landed on packet" in source.packet_table().seek_problem
    assert len(caplog.records) == 1


def test_tiny_mpeg4_packets_are_counted_by_decoding(tmp_path):
    """A still MPEG-4 Part 2 video of 32x32 has P-frames of a few bytes, as "not coded" frames (no
    picture, nothing decoded) have: the packets cannot tell the count, decoding does."""
    path = video_samples.write_video(tmp_path / "still.avi", codec="mpeg4", b_frames=0, count=20, width=32,
                                     height=32, static=True)
    table = VideoFile(path).packet_table()
    assert table.frames is None and "not coded" in table.count_problem
    reference = video_samples.sequential_frames(path)
    assert VideoFile(path).num_frames() == len(reference) == 20
    assert torch.equal(VideoFile(path).read([20, 7]), torch.stack([reference[19], reference[6]]))


def test_read_beyond_the_counted_frames_names_the_video(variants):
    path = variants["h264_bframes.mp4"]
    with pytest.raises(BadSampleError, match="frame 49 requested but only 48 frames") as info:
        VideoFile(path).read([47, 49])
    assert info.value.path == str(path)


# Packet tables from made-up packets: each rule of trust on its own.


def packets(stamps: list[int | None], keyframes: tuple[int, ...] = (0,), **changes) -> list[PacketInfo]:
    return [PacketInfo(pts, i in keyframes, False, 1000, **{k: v[i] for k, v in changes.items()})
            for i, pts in enumerate(stamps)]


def test_packet_table_first_frames_of_keyframes_with_b_frames_and_open_gops():
    # decoding order I0 P3 B1 B2 | I6 B4 B5 P9 B7 B8: B4 and B5 (shown before I6) need P3, so
    # decoding from I6 gives frames from the 7th on (pts 6)
    table = packet_table(packets([0, 3, 1, 2, 6, 4, 5, 9, 7, 8], keyframes=(0, 4)), "h264", reorders=True)
    assert table.frames == 10 and table.seek_problem is None
    assert [(key.position, key.first_frame) for key in table.keyframes] == [(0, 1), (4, 7)]
    assert table.keyframe_for(6) == table.keyframes[0] and table.keyframe_for(7) == table.keyframes[1]
    assert table.index_of(6) == 7 and table.index_of(10) is None and table.index_of(None) is None


def test_packet_table_discarded_and_hidden_packets_are_not_frames():
    discard = [True, True, False, False, False]
    table = packet_table([p._replace(discard=d) for p, d in zip(packets([-2, -1, 0, 1, 2]), discard)], "h264",
                         reorders=False)
    assert table.frames == 3 and table.display_pts == (0, 1, 2) and table.keyframes[0].first_frame == 1
    table = packet_table(packets([0, 1, 2, 3], shown=[1, 0, 1, 1]), "vp8", reorders=False)
    assert table.frames == 3 and table.display_pts == (0, 2, 3)


@pytest.mark.parametrize(("made", "codec", "reorders", "counted", "problem"), [
    (packets([0, None, 2]), "h264", False, False, "no timestamp"),
    (packets([0, 1, 2], keyframes=(1,)), "h264", False, False, "first packet is not a keyframe"),
    (packets([2, 0, 1]), "h264", True, False, "shown before its first keyframe"),
    (packets([0, 1, 2], corrupt=[False, True, False]), "h264", False, False, "corrupt"),
    (packets([0, 1, 2]), "cinepak", False, False, "not known to store one frame per packet"),
    (packets([0, 1, 2], shown=[1, 2, 1]), "vp9", False, False, "shown frames cannot be told"),
    (packets([0, 1, 1]), "h264", False, True, "same timestamp"),
    (packets([0, 1, 2, 3]), "h264", True, True, "follow decoding order"),
])
def test_packet_table_refuses_what_it_cannot_trust(made, codec, reorders, counted, problem):
    table = packet_table(made, codec, reorders)
    assert problem in table.seek_problem
    assert (table.frames is not None) == counted
    if not counted:
        assert problem in table.count_problem


def test_vpx_headers_say_which_frames_are_shown():
    assert vpx_shown_frames("vp8", bytes([0b0001_0000, 0, 0])) == 1  # show_frame bit set
    assert vpx_shown_frames("vp8", bytes([0b0000_0001, 0, 0])) == 0  # an inter frame kept hidden
    shown_key, hidden_inter = bytes([0b1000_0010, 7, 7]), bytes([0b1000_0100, 7])
    assert vpx_shown_frames("vp9", shown_key) == 1 and vpx_shown_frames("vp9", hidden_inter) == 0
    assert vpx_shown_frames("vp9", bytes([0b1000_1000])) == 1  # show_existing_frame
    assert vpx_shown_frames("vp9", bytes([0b1011_0001, 0])) == 1  # profile 3: one reserved bit more
    marker = 0b1100_0001  # superframe of 2 frames, sizes in 1 byte each
    superframe = hidden_inter + shown_key + bytes([marker, len(hidden_inter), len(shown_key), marker])
    assert vpx_shown_frames("vp9", superframe) == 1
    assert vpx_shown_frames("vp9", bytes([0x00, 1])) is None and vpx_shown_frames("vp9", b"") is None
