"""Transforms: exact boxes and draws of the original, and fidelity to the original PIL path.

The fidelity tests re-create the original per-frame PIL pipeline here, as the original
wrote it (not from sdn code), and compare it with the whole-clip tensor pipeline on JPEG frames that look
like real video (gradients, shapes, text-like edges, noise).
"""

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from sdn.data.transforms import (
    CenterCrop,
    ClipNormalize,
    Compose,
    CornerCrop,
    LoopPadding,
    MultiScaleCornerCrop,
    MultiScaleRandomCrop,
    RandomHorizontalFlip,
    Scale,
    TemporalBeginCrop,
    TemporalCenterCrop,
    TemporalRandomCrop,
    input_preparation,
    test_spatial_transform,
    train_spatial_transform,
    val_spatial_transform,
)
from sdn.data.mean_std import get_mean, get_std
from sdn.data.video import FrameFolder
from sdn.errors import SdnError

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")

POSITIONS = ["c", "tl", "tr", "bl", "br"]


def default_scales() -> list[float]:
    """initial_scale 1.0, n_scales 5, scale_step 0.84089641525: a running product, as the original."""
    scales = [1.0]
    for _ in range(4):
        scales.append(scales[-1] * 0.84089641525)
    return scales


# ---------------------------------------------------------------------------------------------
# Exact boxes and sizes


def test_default_scales_are_the_running_product():
    assert default_scales() == [1.0, 0.84089641525, 0.7071067811803005, 0.5946035574934808, 0.4999999999911653]


def test_scale_short_side_rule():
    scale = Scale(112)
    assert scale.output_size(320, 240) == (149, 112)
    assert scale.output_size(240, 320) == (112, 149)
    assert scale.output_size(171, 128) == (149, 112)  # int(112 * 171 / 128) = int(149.625)
    assert scale.output_size(112, 200) == (112, 200)  # short side already 112: unchanged
    assert scale.output_size(200, 112) == (200, 112)
    assert scale.output_size(113, 113) == (112, 112)
    assert Scale((50, 40)).output_size(320, 240) == (50, 40)  # a tuple is (width, height)
    frames = torch.randint(0, 256, (2, 3, 240, 320), dtype=torch.uint8)
    assert scale(frames).shape == (2, 3, 112, 149)
    assert Scale(240)(frames) is frames


def test_center_crop_rounds_half_to_even():
    assert CenterCrop(112).crop_box(149, 112) == (18, 0, 130, 112)  # the reference's example
    assert CenterCrop(112).crop_box(137, 112) == (12, 0, 124, 112)  # 12.5 -> 12
    assert CenterCrop(112).crop_box(139, 115) == (14, 2, 126, 114)  # 13.5 -> 14, 1.5 -> 2
    frames = torch.arange(3 * 20 * 30, dtype=torch.uint8).reshape(1, 3, 20, 30)
    assert torch.equal(CenterCrop(10)(frames), frames[..., 5:15, 10:20])


def test_corner_crop_boxes():
    boxes = {p: CornerCrop(112, p).crop_box(149, 130) for p in POSITIONS}
    assert boxes == {
        "c": (18, 9, 130, 121),
        "tl": (0, 0, 112, 112),
        "tr": (37, 0, 149, 112),
        "bl": (0, 18, 112, 130),
        "br": (37, 18, 149, 130),
    }
    with pytest.raises(SdnError, match="crop positions"):
        CornerCrop(112, "middle")


def test_multiscale_corner_crop_boxes_on_320x240():
    crop = MultiScaleCornerCrop(default_scales(), 112)
    sides = []
    for scale in default_scales():
        crop.scale, crop.crop_position = scale, "tl"
        sides.append(crop.crop_box(320, 240)[2])
    assert sides == [240, 201, 169, 142, 119]  # the reference's example

    crop.scale = default_scales()[1]  # side 201, odd: the centre box is 200 wide
    expected = {
        "c": (60, 20, 260, 220),
        "tl": (0, 0, 201, 201),
        "tr": (119, 0, 320, 201),
        "bl": (0, 39, 201, 240),
        "br": (119, 39, 320, 240),
    }
    for position, box in expected.items():
        crop.crop_position = position
        assert crop.crop_box(320, 240) == box
    crop.scale, crop.crop_position = 1.0, "c"
    assert crop.crop_box(175, 99) == (38, 0, 136, 98)  # odd frame: cx = 87, cy = 49, half = 49
    frames = torch.zeros(3, 3, 240, 320, dtype=torch.uint8)
    assert crop(frames).shape == (3, 3, 112, 112)


def test_multiscale_random_crop_rounds_like_pillow():
    crop = MultiScaleRandomCrop([1.0], 112)
    crop.scale, crop.tl_y = 1.0, 0.0
    image = Image.new("RGB", (305, 241))  # side 241, 64 pixels of horizontal freedom
    for tl_x, width in [(65 / 128, 242), (67 / 128, 240), (0.25, 241)]:
        crop.tl_x = tl_x
        x1, y1, x2, y2 = crop.crop_box(305, 241)
        assert x2 - x1 == width
        float_box = (tl_x * 64, 0.0, tl_x * 64 + 241, 241.0)
        assert image.crop(float_box).size == (x2 - x1, y2 - y1)  # Pillow agrees

    # and the pixels are the ones Pillow crops
    frame = np.random.default_rng(0).integers(0, 256, (241, 305, 3), dtype=np.uint8)
    crop.tl_x = 65 / 128
    x1, y1, x2, y2 = crop.crop_box(305, 241)
    pil = np.asarray(Image.fromarray(frame).crop((32.5, 0.0, 273.5, 241.0)))
    assert np.array_equal(frame[y1:y2, x1:x2], pil)


def test_random_draws_follow_the_original_order():
    scales = default_scales()
    for seed in range(20):
        transform = train_spatial_transform("corner", scales, 112)
        transform.randomize(random.Random(seed))
        replay = random.Random(seed)
        crop, flip = transform.transforms
        assert crop.scale == scales[replay.randint(0, 4)]
        assert crop.crop_position == POSITIONS[replay.randint(0, 4)]
        assert flip.flip == (replay.random() < 0.5)

        transform = train_spatial_transform("random", scales, 112)
        transform.randomize(random.Random(seed))
        replay = random.Random(seed)
        crop = transform.transforms[0]
        assert (crop.scale, crop.tl_x, crop.tl_y) == (scales[replay.randint(0, 4)], replay.random(), replay.random())

    center = train_spatial_transform("center", scales, 112).transforms[0]
    assert center.crop_positions == ["c"]
    with pytest.raises(SdnError, match="--train_crop"):
        train_spatial_transform("middle", scales, 112)


def test_flip_is_per_clip_and_both_outcomes_occur():
    frames = torch.randint(0, 256, (4, 3, 8, 10), dtype=torch.uint8)
    outcomes = set()
    for seed in range(16):
        flip = RandomHorizontalFlip()
        flip.randomize(random.Random(seed))
        expected = frames.flip(-1) if random.Random(seed).random() < 0.5 else frames
        assert torch.equal(flip(frames), expected)
        outcomes.add(flip.flip)
    assert outcomes == {True, False}


def test_using_a_random_transform_before_randomize_is_an_error():
    frames = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    for transform in (RandomHorizontalFlip(), MultiScaleCornerCrop([1.0], 4), CornerCrop(4)):
        with pytest.raises(RuntimeError, match="randomize"):
            transform(frames)
    with pytest.raises(RuntimeError, match="randomize"):
        TemporalRandomCrop(4)([1, 2, 3])


def test_corner_crop_without_position_draws_one_per_clip():
    crop = CornerCrop(4)
    crop.randomize(random.Random(3))
    assert crop.crop_position == POSITIONS[random.Random(3).randint(0, 4)]
    fixed = CornerCrop(4, "br")
    fixed.randomize(random.Random(3))
    assert fixed.crop_position == "br"


# ---------------------------------------------------------------------------------------------
# Temporal transforms


def test_loop_padding_returns_a_new_list_with_the_original_values():
    indices = [1, 2, 3]
    assert LoopPadding(8)(indices) == [1, 2, 3, 1, 2, 3, 1, 2]
    assert indices == [1, 2, 3]
    assert LoopPadding(2)(indices) == [1, 2, 3]  # never shortens
    assert LoopPadding(4)([]) == []


def test_temporal_random_crop_keeps_the_original_off_by_one():
    indices = list(range(1, 21))  # 20 frames, clips of 16: starts 0..3, never 4
    starts = set()
    for seed in range(200):
        crop = TemporalRandomCrop(16)
        crop.randomize(random.Random(seed))
        clip = crop(indices)
        assert clip == list(range(clip[0], clip[0] + 16))
        assert clip[0] - 1 == random.Random(seed).randint(0, 3)
        starts.add(clip[0] - 1)
    assert starts == {0, 1, 2, 3}

    exact = set()
    for seed in range(200):
        crop = TemporalRandomCrop(16, exact_range=True)
        crop.randomize(random.Random(seed))
        exact.add(crop(indices)[-1])
    assert max(exact) == 20

    short = TemporalRandomCrop(8)
    short.randomize(random.Random(0))
    assert short([4, 5, 6]) == [4, 5, 6, 4, 5, 6, 4, 5]


def test_temporal_center_and_begin_crops():
    indices = list(range(1, 21))
    assert TemporalCenterCrop(16)(indices) == list(range(3, 19))  # start 20 // 2 - 8 = 2
    assert TemporalCenterCrop(8)([1, 2, 3]) == [1, 2, 3, 1, 2, 3, 1, 2]
    assert TemporalBeginCrop(4)(indices) == [1, 2, 3, 4]
    assert TemporalBeginCrop(5)([7, 8]) == [7, 8, 7, 8, 7]


# ---------------------------------------------------------------------------------------------
# Normalisation


def test_mean_and_std_constants():
    assert get_mean() == [114.7748, 107.7354, 99.4750]
    assert get_mean(1, "kinetics") == [110.63666788, 103.16065604, 96.29023126]
    assert get_std() == [38.7568578, 37.88248729, 40.02898126]
    assert get_mean(255) == pytest.approx([0.450097, 0.422492, 0.390098], abs=1e-6)
    assert get_mean(255, "kinetics") == pytest.approx([0.433869, 0.404552, 0.377609], abs=1e-6)
    assert get_std(255) == pytest.approx([0.151988, 0.148559, 0.156976], abs=1e-6)
    with pytest.raises(SdnError, match="mean_dataset"):
        get_mean(1, "imagenet")


@pytest.mark.parametrize("norm_value", [1, 255])
def test_clip_normalize_matches_the_original_per_frame_arithmetic(norm_value):
    clips = torch.randint(0, 256, (2, 3, 4, 5, 6), dtype=torch.uint8)
    mean, std = get_mean(norm_value), get_std(norm_value)
    normalize = ClipNormalize(mean, std, norm_value)
    out = normalize(clips)
    assert out.dtype == torch.float32 and out.shape == clips.shape
    for c in range(3):  # ToTensor: float / norm_value; Normalize: - mean, / std
        expected = (clips[:, c].float() / norm_value - mean[c]) / std[c]
        torch.testing.assert_close(out[:, c], expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(normalize(clips[0]), out[0])  # a single clip [3,T,H,W]
    assert normalize.state_dict() == {}  # configuration, not weights


def test_clip_normalize_skips_division_by_one_bit_for_bit():
    """The default (norm_value 1, std 1) skips two divisions; x / 1 is x, so nothing changes."""
    clips = torch.randint(0, 256, (2, 3, 4, 5, 6), dtype=torch.uint8)
    mean = torch.tensor(get_mean()).view(3, 1, 1, 1)
    expected = clips.float().div_(1.0).sub_(mean).div_(torch.ones(3, 1, 1, 1))
    assert torch.equal(ClipNormalize(get_mean(), [1.0, 1.0, 1.0], 1)(clips), expected)


def test_clip_normalize_does_not_modify_float_input():
    clips = torch.full((3, 2, 2, 2), 100.0)
    out = ClipNormalize(get_mean(), [1.0, 1.0, 1.0])(clips)
    assert torch.all(clips == 100.0)
    assert out[0, 0, 0, 0].item() == pytest.approx(100.0 - 114.7748, abs=1e-4)
    with pytest.raises(ValueError, match="expected a clip"):
        ClipNormalize(get_mean(), get_std())(torch.zeros(4, 2, 2, 2))


def test_clip_normalize_output_is_contiguous_whatever_the_input_layout():
    frames = torch.randint(0, 256, (4, 3, 6, 5), dtype=torch.uint8)  # [T,3,H,W] as sources return
    channels_last = frames.contiguous(memory_format=torch.channels_last)
    normalize = ClipNormalize(get_mean(), get_std())
    out = normalize(channels_last.permute(1, 0, 2, 3))
    assert out.is_contiguous()
    assert torch.equal(out, normalize(frames.permute(1, 0, 2, 3).contiguous()))


def test_clip_normalize_makes_a_channels_last_batch_in_its_one_copy():
    batch = torch.randint(0, 256, (2, 3, 4, 6, 5), dtype=torch.uint8)
    normalize = ClipNormalize(get_mean(), get_std())
    out = normalize(batch, torch.channels_last_3d)
    assert out.is_contiguous(memory_format=torch.channels_last_3d) and not out.is_contiguous()
    assert torch.equal(out, normalize(batch))  # the same values, only the layout differs
    prepare = input_preparation(normalize, "cpu", channels_last=True)
    assert prepare(batch).is_contiguous(memory_format=torch.channels_last_3d)


def test_compose_forwards_randomize_in_order():
    compose = Compose([MultiScaleCornerCrop(default_scales(), 16), RandomHorizontalFlip()])
    compose.randomize(random.Random(5))
    replay = random.Random(5)
    replay.randint(0, 4), replay.randint(0, 4)
    assert compose.transforms[1].flip == (replay.random() < 0.5)
    assert compose(torch.zeros(2, 3, 40, 50, dtype=torch.uint8)).shape == (2, 3, 16, 16)


# ---------------------------------------------------------------------------------------------
# Fidelity with the original PIL pipeline


def natural_frame(seed: int, width: int = 320, height: int = 240) -> Image.Image:
    """A frame with what real video has: smooth gradients, hard-edged shapes, text, sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            128 + 90 * np.sin(x / 41 + seed),
            110 + 80 * np.cos(y / 29 - seed),
            255 * (x + y) / (width + height),
        ],
        axis=-1,
    )
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        box = (x0, y0, x0 + int(rng.integers(10, 90)), y0 + int(rng.integers(10, 70)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    for row in range(4):
        draw.text((int(rng.integers(0, width // 2)), 20 + 55 * row), "SDN scene 0123 ABC", fill=(250, 250, 240))
    noisy = np.asarray(image).astype(np.float32) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    for i in range(1, 5):
        natural_frame(i).save(folder / f"image_{i:05d}.jpg", quality=90)
    return folder


def original_load(folder: Path) -> list[Image.Image]:
    """The original image loader: PIL open + convert('RGB')."""
    return [Image.open(folder / f"image_{i:05d}.jpg").convert("RGB") for i in range(1, 5)]


def original_scale(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    if (w <= h and w == size) or (h <= w and h == size):
        return image
    if w < h:
        return image.resize((size, int(size * h / w)), Image.BILINEAR)
    return image.resize((int(size * w / h), size), Image.BILINEAR)


def original_corner_crop(image: Image.Image, size: int, position: str) -> Image.Image:
    w, h = image.size
    if position == "c":
        x1, y1 = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
        return image.crop((x1, y1, x1 + size, y1 + size))
    x1 = 0 if position in ("tl", "bl") else w - size
    y1 = 0 if position in ("tl", "tr") else h - size
    return image.crop((x1, y1, x1 + size, y1 + size))


def original_multiscale_corner_crop(image: Image.Image, scale: float, position: str, size: int) -> Image.Image:
    w, h = image.size
    side = int(min(w, h) * scale)
    if position == "c":
        cx, cy, half = w // 2, h // 2, side // 2
        box = (cx - half, cy - half, cx + half, cy + half)
    else:
        x1 = 0 if position in ("tl", "bl") else w - side
        y1 = 0 if position in ("tl", "tr") else h - side
        box = (x1, y1, x1 + side, y1 + side)
    return image.crop(box).resize((size, size), Image.BILINEAR)


def as_clip(images: list[Image.Image]) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(image) for image in images])).permute(0, 3, 1, 2)


def mean_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype == torch.uint8
    return (a.float() - b.float()).abs().mean().item()


def test_validation_pipeline_matches_pil(jpeg_folder):
    clip = FrameFolder(jpeg_folder).read([1, 2, 3, 4])
    ours = val_spatial_transform(112)(clip)
    assert torch.equal(ours, val_spatial_transform(112)(clip.contiguous()))  # layout does not matter
    theirs = as_clip([original_corner_crop(original_scale(im, 112), 112, "c") for im in original_load(jpeg_folder)])
    assert mean_abs_diff(ours, theirs) < 0.5
    assert (ours.int() - theirs.int()).abs().max() <= 1


@pytest.mark.parametrize("scale_in_test", [1.0, 0.875, 1.2])  # 1.2: the crop reaches outside (black)
@pytest.mark.parametrize("position", POSITIONS)
def test_test_pipeline_matches_pil(jpeg_folder, scale_in_test, position):
    clip = FrameFolder(jpeg_folder).read([1, 2, 3, 4])
    ours = test_spatial_transform(112, scale_in_test, position)(clip)
    resize_to = int(112 / scale_in_test)
    theirs = as_clip(
        [original_corner_crop(original_scale(im, resize_to), 112, position) for im in original_load(jpeg_folder)]
    )
    assert mean_abs_diff(ours, theirs) < 0.5
    assert (ours.int() - theirs.int()).abs().max() <= 1


@pytest.mark.parametrize("position", POSITIONS)
def test_training_crop_matches_pil(jpeg_folder, position):
    clip = FrameFolder(jpeg_folder).read([1, 2, 3, 4])
    images = original_load(jpeg_folder)
    crop = MultiScaleCornerCrop(default_scales(), 112)
    for scale in default_scales():
        crop.scale, crop.crop_position = scale, position
        theirs = as_clip([original_multiscale_corner_crop(im, scale, position, 112) for im in images])
        ours = crop(clip)
        assert mean_abs_diff(ours, theirs) < 1.0  # measured: at most 0.03
        assert (ours.int() - theirs.int()).abs().max() <= 2  # fixed-point rounding, a few pixels

    random_crop = MultiScaleRandomCrop([0.7071067811803005], 112)
    random_crop.scale, random_crop.tl_x, random_crop.tl_y = 0.7071067811803005, 0.3711, 0.8123
    side = int(240 * 0.7071067811803005)
    x1, y1 = 0.3711 * (320 - side), 0.8123 * (240 - side)
    theirs = as_clip([im.crop((x1, y1, x1 + side, y1 + side)).resize((112, 112), Image.BILINEAR) for im in images])
    assert mean_abs_diff(random_crop(clip), theirs) < 1.0
