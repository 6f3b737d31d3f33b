"""Video sources: frame folders and PyAV video files give the same frames, and bad input is named."""

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

import sdn.data.video as video
from sdn.data.video import (
    VIDEO_EXTENSIONS,
    FrameFolder,
    VideoFile,
    open_video,
    read_n_frames_file,
    resolve_video,
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
