"""Small generated video files for the video tests: the codecs, containers and timestamps sdn must read.

Every frame differs from every other (a moving block and shifting gradients), so that reading a
neighbour instead of the right frame cannot go unnoticed.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

WIDTH, HEIGHT = 96, 64


def frame_image(index: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """RGB frame ``index`` of the test videos."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([128 + 90 * np.sin((x + 3 * index) / 9), 110 + 80 * np.cos((y - 2 * index) / 7),
                      (x * 2 + index * 11) % 256], axis=-1)
    left = (index * 5) % max(1, width - 16)
    image[height // 3:height // 3 + 16, left:left + 16] = [250, 250 - (index * 13) % 200, 30]
    return np.clip(image, 0, 255).astype(np.uint8)


def write_video(path: Path, *, codec: str = "libx264", count: int = 48, rate: Fraction | int = 25, gop: int = 12,
                b_frames: int | None = 3, pts: list[int] | None = None, time_base: Fraction | None = None,
                options: dict[str, str] | None = None, width: int = WIDTH, height: int = HEIGHT,
                static: bool = False) -> Path:
    """Encode ``count`` frames; ``pts`` (in ``time_base``) gives each frame's timestamp (VFR, start times)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, options=options or {})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        if b_frames is not None:
            stream.codec_context.max_b_frames = b_frames
        if time_base is not None:
            stream.time_base = time_base
            stream.codec_context.time_base = time_base
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(frame_image(0 if static else i, width, height), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


MS = Fraction(1, 1000)
VARIABLE_RATE = [int(t) for t in np.cumsum([0] + [33 if i % 5 else 71 for i in range(47)])]

# name -> keyword arguments of write_video. Together: H.264 and MPEG-4 Part 2 (and HEVC, MPEG-2,
# VP8, VP9), B-frames, open GOPs, an odd frame rate, a variable frame rate, start times above and
# below zero (an MP4 edit list that discards the first frames), in MP4, Matroska, AVI and MOV.
VARIANTS: dict[str, dict] = {
    "h264_bframes.mp4": {},
    "h264_ntsc_rate.mkv": {"rate": Fraction(30000, 1001)},
    "h264_variable_rate.mp4": {"pts": VARIABLE_RATE, "time_base": MS},
    "h264_variable_rate.mkv": {"pts": VARIABLE_RATE, "time_base": MS},
    "h264_starts_at_5s.mp4": {"pts": [5000 + 40 * i for i in range(48)], "time_base": MS},
    "h264_starts_at_5s.mkv": {"pts": [5000 + 40 * i for i in range(48)], "time_base": MS},
    "h264_edit_list.mp4": {"pts": [-200 + 40 * i for i in range(48)], "time_base": MS},
    "h264_open_gop.mkv": {"options": {"x264-params": "open-gop=1:keyint=12:min-keyint=12:scenecut=0"}},
    "h264_no_bframes.mov": {"b_frames": 0},
    "mpeg4_bframes.mp4": {"codec": "mpeg4", "b_frames": 2},
    "mpeg4_bframes.avi": {"codec": "mpeg4", "b_frames": 2},
    "mpeg4_film_rate.mov": {"codec": "mpeg4", "b_frames": 2, "rate": Fraction(24000, 1001)},
    "mpeg2_bframes.mkv": {"codec": "mpeg2video", "b_frames": 2},
    "hevc_open_gop.mp4": {"codec": "libx265", "b_frames": None,
                          "options": {"x265-params": "keyint=12:min-keyint=12:bframes=3:log-level=error"}},
    "vp9.webm": {"codec": "libvpx-vp9", "b_frames": None, "options": {"deadline": "realtime", "cpu-used": "8"}},
    "vp8_altref.webm": {"codec": "libvpx", "b_frames": None,
                        "options": {"auto-alt-ref": "1", "lag-in-frames": "16", "deadline": "good", "cpu-used": "8"}},
}


def available(codec: str) -> bool:
    """Whether this PyAV build can encode ``codec``."""
    try:
        av.codec.Codec(codec, "w")
    except ValueError:  # UnknownCodecError
        return False
    return True


def sequential_frames(path: Path) -> list[torch.Tensor]:
    """Every frame of ``path`` decoded from the first with plain PyAV, as uint8 ``[3, H, W]``: the reference."""
    with av.open(str(path)) as container:
        return [torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
                for frame in container.decode(container.streams.video[0])]
