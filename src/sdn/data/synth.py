"""A small scene-biased action dataset in the original on-disk formats (``sdn synth``).

Why it exists: SDN's claim is that an action model trained on scene-biased data leans on the
scene, and that the adversarial losses reduce that. Kinetics is far too big for tests and
demos, so this generator builds a toy world with the same structure:

* an action is defined ONLY by how an actor (a person-like figure whose colours, size and
  proportions are random and independent of the class, outlined in black so that it stands out
  from every background) moves: rise, fall, sway, circle, ...
  Every action is invariant to a horizontal flip, the original training augmentation;
* a scene is a background (colour palette + texture). In training and in the in-context
  validation split a class's own scene is used with probability ``bias`` (else another scene,
  uniformly); the out-of-context split draws the scene independently of the action
  ("dancing in the mall");
* scene pseudo labels come from an imperfect "scene model" (nearest prototype on 4x4 block
  colours with a softmax temperature) run on the rendered pixels, so they are usually but not
  always right, like Places365 predictions on Kinetics;
* human detections are the actor's box with jitter, misses and low-score false positives; some
  videos are "hard" (many misses) so the 0.3/0.7 video filter removes a few.

Everything is derived from one ``numpy.random.Generator(seed)``: the same seed gives the same bytes.
The dataset is rendered into a hidden staging directory and renamed into place at the end, so a
reader never sees half a dataset (the many small frame files are written plainly inside it; the
JSON/NumPy files go through ``sdn.io``).
"""

from __future__ import annotations

import colorsys
import io
import math
import os
import shutil
import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sdn.data.detections import save_detections_npy, save_detections_npz
from sdn.data.human_masks import FILE_NAMES, save_human_masks
from sdn.data.scene_labels import save_scene_labels_npy, save_scene_labels_npz
from sdn.data.test_splits import SplitVideo, write_split_annotation
from sdn.errors import SdnError
from sdn.io import atomic_write_json

CLASS_NAMES = ("rise", "fall", "sway", "circle", "pulse", "bounce", "cross", "approach")
PATTERNS = ("hstripes", "vstripes", "checker", "gradient")
# Scene groups (more scenes than actions) use six patterns, so that scenes differ in texture as well as palette.
GROUP_PATTERNS = ("hstripes", "vstripes", "checker", "gradient", "diagonal", "dots")
GOLDEN = 0.618033988749895  # hue step between consecutive grouped scenes: every hue far from its neighbours
ID_ALPHABET = string.ascii_letters + string.digits + "_-"
GRID = 4  # the scene model looks at GRID x GRID block colours
TEXTURE_WEIGHT = 6.0  # weight of the scene model's edge features against its colour features (scene groups)
PROTOTYPE_RENDERINGS = 16  # scene groups: a prototype is the mean of this many renderings under random camera and light
SCENE_TEMPERATURE = 0.02  # softmax temperature of the scene model on mean squared distances
SCENE_MODEL_FRAMES = 5  # K frames per video get a scene prediction, as the released labels
JPEG_QUALITY = 90
LIGHTING_GAIN = (0.65, 1.35)  # per-video brightness range: what the scene model is not told about
LIGHTING_SHIFT = 0.1  # per-video colour cast (standard deviation per channel, 0..1 scale)
OUTLINE_COLOUR = (0.0, 0.0, 0.0)  # the actor's one-pixel contour


@dataclass(frozen=True)
class SynthOptions:
    """Generation options (also recorded in ``synth.json``)."""

    classes: int = 4
    scenes: int | None = None
    places: int | None = None
    train_per_class: int = 8
    val_per_class: int = 4
    ooc_per_class: int = 4
    test_per_class: int = 0
    heldout_scenes: int = 6
    frames: int = 20
    width: int = 80
    height: int = 60
    bias: float = 0.9
    seed: int = 0
    diving48: bool = True

    def resolved(self) -> "SynthOptions":
        """Fill the defaults that depend on other options and reject impossible values."""
        scenes = self.classes if self.scenes is None else self.scenes
        places = scenes if self.places is None else self.places
        checks = [
            (1 <= self.classes <= len(CLASS_NAMES), f"--classes must be 1..{len(CLASS_NAMES)}"),
            (scenes >= 1, "--scenes must be at least 1"),
            (places >= scenes, "--places must be at least the number of scenes"),
            (self.train_per_class >= 1 and self.val_per_class >= 1, "--train-per-class and --val-per-class must be at least 1"),
            (self.ooc_per_class >= 0, "--ooc-per-class must not be negative"),
            (self.test_per_class >= 0, "--test-per-class must not be negative"),
            (self.heldout_scenes >= 1, "--heldout-scenes must be at least 1"),
            (self.frames >= 2, "--frames must be at least 2"),
            (self.width >= 32 and self.height >= 32, "--width and --height must be at least 32"),
            (0.0 <= self.bias <= 1.0, "--bias must be within 0..1 (e.g. 0.999)"),
            (self.seed >= 0, "--seed must not be negative"),
        ]
        for ok, message in checks:
            if not ok:
                raise SdnError(message)
        return SynthOptions(**{**asdict(self), "scenes": scenes, "places": places})

    @property
    def grouped(self) -> bool:
        """Several scenes per action: scenes then differ in pattern and palette, and the scene model sees texture."""
        return self.scenes > self.classes


# ----------------------------------------------------------------------------------------------
# scenes and the scene model


@dataclass(frozen=True)
class Scene:
    name: str
    pattern: str
    colour_a: tuple[float, float, float]
    colour_b: tuple[float, float, float]
    period: int


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(h % 1.0, s, v)


def make_scenes(n_scenes: int, rng: np.random.Generator) -> list[Scene]:
    """Scenes with evenly spaced hues and a texture each, so they differ in colour layout."""
    scenes = []
    for s in range(n_scenes):
        hue = s / n_scenes + rng.uniform(-0.03, 0.03)
        scenes.append(Scene(
            name=f"scene_{s}",
            pattern=PATTERNS[s % len(PATTERNS)],
            colour_a=_hsv(hue, rng.uniform(0.5, 0.8), rng.uniform(0.75, 0.95)),
            colour_b=_hsv(hue + rng.uniform(0.08, 0.15), rng.uniform(0.4, 0.7), rng.uniform(0.3, 0.5)),
            period=int(rng.integers(8, 17)),
        ))
    return scenes


def make_grouped_scenes(n_scenes: int, n_classes: int, rng: np.random.Generator,
                        first: int = 0) -> list[Scene]:
    """Scenes for scene groups: scene ``s`` belongs to action ``s % n_classes``.

    Hues follow the golden-ratio sequence (so the groups' hues interleave: no hue threshold tells
    the actions apart, the scene has to be recognised), and the pattern cycles *within* a group
    (every action has each pattern once), so neither colour nor texture alone reveals the action.
    ``first`` continues the sequence, for held-out scenes never used in training.
    """
    scenes = []
    for s in range(first, first + n_scenes):
        hue = (s * GOLDEN) % 1.0
        bright = s % 2 == 0
        scenes.append(Scene(
            name=f"scene_{s}",
            pattern=GROUP_PATTERNS[(s // n_classes) % len(GROUP_PATTERNS)],
            colour_a=_hsv(hue, rng.uniform(0.55, 0.85), rng.uniform(0.8, 0.95) if bright else rng.uniform(0.45, 0.6)),
            colour_b=_hsv(hue + rng.uniform(0.25, 0.4), rng.uniform(0.4, 0.7),
                          rng.uniform(0.2, 0.35) if bright else rng.uniform(0.75, 0.9)),
            period=int(rng.integers(8, 17)),
        ))
    return scenes


def stripe_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A sinusoidal grating of two random colours at a random angle and period: a background of no scene."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle, period = rng.uniform(0.0, math.pi), rng.uniform(6.0, 20.0)
    wave = 0.5 + 0.5 * np.sin(2.0 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period
                              + rng.uniform(0.0, 2.0 * math.pi))
    a = np.asarray(_hsv(rng.uniform(), rng.uniform(0.3, 0.9), rng.uniform(0.5, 1.0)), np.float32)
    b = np.asarray(_hsv(rng.uniform(), rng.uniform(0.3, 0.9), rng.uniform(0.1, 0.6)), np.float32)
    return (a * (1.0 - wave[..., None]) + b * wave[..., None]).astype(np.float32)


def render_background(scene: Scene, height: int, width: int, phase: tuple[int, int] = (0, 0),
                      gain: float = 1.0, shift: np.ndarray | None = None) -> np.ndarray:
    """float32 ``[H, W, 3]`` in 0..1; ``phase``/``gain``/``shift`` are a video's camera and lighting."""
    yy, xx = np.mgrid[0:height, 0:width]
    yy, xx = yy + phase[0], xx + phase[1]
    half = scene.period // 2
    if scene.pattern == "hstripes":
        weight = ((yy // half) % 2).astype(np.float32)
    elif scene.pattern == "vstripes":
        weight = ((xx // half) % 2).astype(np.float32)
    elif scene.pattern == "checker":
        weight = (((yy // half) + (xx // half)) % 2).astype(np.float32)
    elif scene.pattern == "diagonal":
        weight = (((yy + xx) // half) % 2).astype(np.float32)
    elif scene.pattern == "dots":
        weight = ((((yy % scene.period) - half) ** 2 + ((xx % scene.period) - half) ** 2)
                  <= (0.3 * scene.period) ** 2).astype(np.float32)
    else:
        weight = (yy - phase[0]) / max(height - 1, 1) * np.ones_like(xx, dtype=np.float32)
    a, b = np.asarray(scene.colour_a, np.float32), np.asarray(scene.colour_b, np.float32)
    image = a * (1.0 - weight[..., None]) + b * weight[..., None]
    image = image * gain + (0.0 if shift is None else shift)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def block_features(image: np.ndarray, texture: bool = False) -> np.ndarray:
    """GRID x GRID block-mean colours (0..1) of an ``[H, W, 3]`` image, as one flat vector.

    With ``texture``, each block also gives its mean absolute brightness change along x, along y
    and along both diagonals (weighted 3x: stripes of one orientation then differ from another's).
    """
    height, width = image.shape[:2]
    rows = np.array_split(np.arange(height), GRID)
    cols = np.array_split(np.arange(width), GRID)
    colours = np.array([image[r[0]:r[-1] + 1, c[0]:c[-1] + 1].reshape(-1, 3).mean(axis=0)
                        for r in rows for c in cols], dtype=np.float64).reshape(-1)
    if not texture:
        return colours
    grey = image.mean(axis=2)
    changes = [np.abs(np.diff(grey, axis=1))[:-1, :], np.abs(np.diff(grey, axis=0))[:, :-1],
               np.abs(grey[1:, 1:] - grey[:-1, :-1]), np.abs(grey[1:, :-1] - grey[:-1, 1:])]
    inner_rows = np.array_split(np.arange(height - 1), GRID)
    inner_cols = np.array_split(np.arange(width - 1), GRID)
    edges = np.array([[change[r[0]:r[-1] + 1, c[0]:c[-1] + 1].mean() for change in changes]
                      for r in inner_rows for c in inner_cols], dtype=np.float64).reshape(-1)
    return np.concatenate([colours, TEXTURE_WEIGHT * edges])


class SceneModel:
    """Nearest-prototype scene classifier: the stand-in for the Places365 network.

    Prototypes are the canonical backgrounds of the scenes (plus random colour layouts for the
    extra places when ``places > scenes``). It sees the whole frame, actor included, and no
    notion of lighting changes, so it is usually but not always right. With scene groups (many
    scenes per action) it also compares texture, and its prototypes are averages over renderings
    under varied light, as a trained classifier's would be: with twelve scenes, colour alone under
    the generator's lighting jitter agreed with the true scene on only about 60% of videos.
    """

    def __init__(self, scenes: list[Scene], n_places: int, height: int, width: int, rng: np.random.Generator,
                 texture: bool = False):
        self.texture = texture
        if texture:  # scene groups: a "trained" model, whose prototypes average lighting and camera variations
            opts = SynthOptions(height=height, width=width)
            prototypes = [np.mean([block_features(scene_background(scene, opts, rng), True)
                                   for _ in range(PROTOTYPE_RENDERINGS)], axis=0) for scene in scenes]
        else:
            prototypes = [block_features(render_background(scene, height, width)) for scene in scenes]
        size = len(prototypes[0])
        prototypes += [rng.uniform(0.0, 1.0, size) for _ in range(n_places - len(scenes))]
        self.prototypes = np.stack(prototypes)

    def predict(self, frame: np.ndarray) -> np.ndarray:
        """Place probabilities (float32 ``[P]``, sum 1) for a uint8 ``[H, W, 3]`` frame."""
        distances = ((self.prototypes - block_features(frame / 255.0, self.texture)) ** 2).mean(axis=1)
        logits = -distances / SCENE_TEMPERATURE
        probs = np.exp(logits - logits.max())
        return (probs / probs.sum()).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# the actor


@dataclass(frozen=True)
class Actor:
    """A person-like figure: head, torso and two legs, with random colours and proportions."""

    height: float
    width_ratio: float
    head: tuple[float, float, float]
    torso: tuple[float, float, float]
    legs: tuple[float, float, float]


def make_actor(frame_height: int, rng: np.random.Generator) -> Actor:
    return Actor(
        height=float(rng.uniform(0.35, 0.5) * frame_height),
        width_ratio=float(rng.uniform(0.3, 0.45)),
        head=_hsv(rng.uniform(0.0, 0.12), rng.uniform(0.3, 0.6), rng.uniform(0.6, 1.0)),
        torso=_hsv(rng.uniform(), rng.uniform(0.3, 1.0), rng.uniform(0.2, 1.0)),
        legs=_hsv(rng.uniform(), rng.uniform(0.0, 0.8), rng.uniform(0.1, 0.7)),
    )


def motion_path(class_index: int, n_frames: int, height: int, width: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Actor centre x, y and scale per frame: the ONLY thing that tells the classes apart."""
    t = np.linspace(0.0, 1.0, n_frames)
    phase = rng.uniform(0.0, 2.0 * math.pi)
    cycles = rng.uniform(1.0, 2.0)
    wave = np.sin(2.0 * math.pi * cycles * t + phase)
    cx = np.full(n_frames, rng.uniform(0.3, 0.7) * width)
    cy = np.full(n_frames, rng.uniform(0.45, 0.6) * height)
    scale = np.ones(n_frames)
    name = CLASS_NAMES[class_index]
    if name in ("rise", "fall"):
        # a long travel (more than half the frame): a clear displacement between the 8 frames of a clip
        start, travel = rng.uniform(0.78, 0.85) * height, rng.uniform(0.5, 0.6) * height
        cy = start - travel * t if name == "rise" else (start - travel) + travel * t
    elif name == "sway":
        cx = cx + rng.uniform(0.12, 0.2) * width * wave
    elif name == "circle":
        radius = rng.uniform(0.15, 0.22) * min(width, height)
        angle = phase + rng.choice([-1.0, 1.0]) * 2.0 * math.pi * cycles * t
        cx, cy = cx + radius * np.cos(angle), cy + radius * np.sin(angle)
    elif name == "pulse":
        scale = 1.0 + 0.35 * wave
    elif name == "bounce":
        cy = cy + rng.uniform(0.12, 0.2) * height * wave
    elif name == "cross":
        start, end = rng.uniform(0.15, 0.3) * width, rng.uniform(0.7, 0.85) * width
        if rng.random() < 0.5:
            start, end = end, start
        cx = start + (end - start) * t
    else:  # approach
        scale = rng.uniform(0.6, 0.75) + rng.uniform(0.6, 0.8) * t
    return cx, cy, scale


def draw_actor(image: np.ndarray, actor: Actor, cx: float, cy: float,
               scale: float) -> tuple[tuple[float, float, float, float], np.ndarray]:
    """Paint the figure (with a dark one-pixel contour) onto a float ``[H, W, 3]`` image in place; return its
    box (x1, y1, x2, y2), clipped to the frame, and its exact mask (bool ``[H, W]``, contour included)."""
    height, width = image.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width]
    h = actor.height * scale
    w = h * actor.width_ratio
    top, bottom = cy - h / 2.0, cy + h / 2.0
    radius = 0.125 * h
    head_cy = top + radius
    torso_top, torso_bottom = top + 2.0 * radius, top + 0.65 * h
    leg_w = 0.35 * w
    parts = [
        (((xx - cx) ** 2 + (yy - head_cy) ** 2) <= radius ** 2, actor.head),
        ((xx >= cx - w / 2) & (xx <= cx + w / 2) & (yy >= torso_top) & (yy <= torso_bottom), actor.torso),
        ((xx >= cx - w / 2) & (xx <= cx - w / 2 + leg_w) & (yy > torso_bottom) & (yy <= bottom), actor.legs),
        ((xx >= cx + w / 2 - leg_w) & (xx <= cx + w / 2) & (yy > torso_bottom) & (yy <= bottom), actor.legs),
    ]
    figure = np.zeros((height, width), dtype=bool)
    for mask, _ in parts:
        figure |= mask
    outline = _dilate(figure) & ~figure
    image[outline] = OUTLINE_COLOUR  # a dark contour: the figure stands out from any background
    for mask, colour in parts:
        image[mask] = colour
    box = (max(cx - w / 2, 0.0), max(top, 0.0), min(cx + w / 2, width - 1.0), min(bottom, height - 1.0))
    return box, figure | outline


def _dilate(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by one pixel in the 8 directions (no wrap-around at the borders)."""
    grown = mask.copy()
    height, width = mask.shape
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            src = mask[max(-dy, 0):height - max(dy, 0), max(-dx, 0):width - max(dx, 0)]
            grown[max(dy, 0):height - max(-dy, 0), max(dx, 0):width - max(-dx, 0)] |= src
    return grown


# ----------------------------------------------------------------------------------------------
# detections


def detect(true_box: tuple[float, float, float, float], miss_rate: float, height: int, width: int,
           rng: np.random.Generator) -> np.ndarray:
    """A noisy person detector's float32 ``[N, 5]`` output for one frame (score-sorted, clipped to the frame)."""
    boxes = []
    if rng.random() >= miss_rate:
        x1, y1, x2, y2 = true_box
        noise = rng.normal(0.0, 0.05, 4) * np.array([x2 - x1, y2 - y1, x2 - x1, y2 - y1])
        boxes.append([x1 + noise[0], y1 + noise[1], x2 + noise[2], y2 + noise[3], rng.uniform(0.55, 0.99)])
    if rng.random() < 0.1:  # a low-confidence false positive somewhere
        bw, bh = rng.uniform(0.1, 0.3) * width, rng.uniform(0.15, 0.4) * height
        x1, y1 = rng.uniform(0, width - bw), rng.uniform(0, height - bh)
        boxes.append([x1, y1, x1 + bw, y1 + bh, rng.uniform(0.05, 0.4)])
    if not boxes:
        return np.zeros((0, 5), dtype=np.float32)
    array = np.asarray(boxes, dtype=np.float64)
    array[:, [0, 2]] = np.clip(array[:, [0, 2]], 0, width - 1)
    array[:, [1, 3]] = np.clip(array[:, [1, 3]], 0, height - 1)
    return array[np.argsort(-array[:, 4], kind="stable")].astype(np.float32)


# ----------------------------------------------------------------------------------------------
# the dataset


def _unique_ids(count: int, rng: np.random.Generator) -> list[str]:
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < count:
        candidate = "".join(rng.choice(list(ID_ALPHABET), 11))
        if candidate not in seen:
            seen.add(candidate)
            ids.append(candidate)
    return ids


def own_scenes(class_index: int, n_classes: int, n_scenes: int) -> list[int]:
    """The scenes an action owns: scenes ``c, c + C, c + 2C, ...`` (one scene when there are no more scenes than
    actions, shared by actions ``c mod S``)."""
    return list(range(class_index, n_scenes, n_classes)) or [class_index % n_scenes]


def _pick_scene(class_index: int, split: str, opts: SynthOptions, rng: np.random.Generator) -> int:
    """In context: one of the action's own scenes with probability ``bias`` (uniformly), else one of the other
    scenes (uniformly); ``conflicting``: always another action's scene; out of context (``ooc``): any scene."""
    if split == "ooc":
        return int(rng.integers(opts.scenes))
    own = own_scenes(class_index, opts.classes, opts.scenes)
    others = [s for s in range(opts.scenes) if s not in own]
    if split != "conflicting" and (not others or rng.random() < opts.bias):
        return own[0] if len(own) == 1 else int(own[rng.integers(len(own))])
    if not others:
        raise SdnError("the conflicting split needs scenes that belong to other actions (--scenes > 1)")
    return int(others[rng.integers(len(others))])


def _plan_videos(opts: SynthOptions, rng: np.random.Generator) -> list[dict[str, Any]]:
    counts = {"training": opts.train_per_class, "validation": opts.val_per_class, "ooc": opts.ooc_per_class}
    plan = []
    for split, per_class in counts.items():
        for class_index in range(opts.classes):
            for _ in range(per_class):
                plan.append({"split": split, "class_index": class_index, "label": CLASS_NAMES[class_index],
                             "scene": _pick_scene(class_index, split, opts, rng)})
    for video, youtube_id in zip(plan, _unique_ids(len(plan), rng)):
        video["youtube_id"] = youtube_id
        video["key"] = f"{youtube_id}_000000_000010"
        video["frame_dir"] = f"jpg/{'train' if video['split'] == 'training' else 'val'}/{video['label']}/{video['key']}"
    return plan


def scene_background(scene: Scene, opts: SynthOptions, rng: np.random.Generator) -> np.ndarray:
    """A video's background: the scene under its own camera offset, lighting and sensor noise."""
    background = render_background(
        scene, opts.height, opts.width,
        phase=(int(rng.integers(scene.period)), int(rng.integers(scene.period))),
        gain=float(rng.uniform(*LIGHTING_GAIN)), shift=rng.normal(0.0, LIGHTING_SHIFT, 3).astype(np.float32))
    return background + rng.normal(0.0, 0.02, background.shape).astype(np.float32)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def render_actor(background: np.ndarray, class_index: int, opts: SynthOptions,
                 rng: np.random.Generator) -> tuple[np.ndarray, list, np.ndarray]:
    """A random actor performing the action on ``background``: uint8 frames ``[T, H, W, 3]``, the true box per
    frame and the exact masks (bool ``[T, H, W]``)."""
    actor = make_actor(opts.height, rng)
    cx, cy, scale = motion_path(class_index, opts.frames, opts.height, opts.width, rng)
    frames, boxes, masks = [], [], []
    for i in range(opts.frames):
        image = background.copy()
        box, mask = draw_actor(image, actor, float(cx[i]), float(cy[i]), float(scale[i]))
        boxes.append(box)
        masks.append(mask)
        frames.append(_to_uint8(image))
    return np.stack(frames), boxes, np.stack(masks)


def _render_video(video: dict[str, Any], scene: Scene, opts: SynthOptions,
                  rng: np.random.Generator) -> tuple[np.ndarray, list, np.ndarray]:
    """uint8 frames ``[T, H, W, 3]``, the actor's true box per frame and its exact masks."""
    return render_actor(scene_background(scene, opts, rng), video["class_index"], opts, rng)


def _write_frames(directory: Path, frames: np.ndarray) -> None:
    directory.mkdir(parents=True)
    for i, frame in enumerate(frames, start=1):
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        (directory / f"image_{i:05d}.jpg").write_bytes(buffer.getvalue())
    (directory / "n_frames").write_text(str(len(frames)))  # as the original n_frames utility: no newline


def _scene_labels(frames: np.ndarray, model: SceneModel) -> dict[str, np.ndarray]:
    """Predictions on K evenly spaced frames, in the released multiple-frame layout."""
    picks = np.unique(np.linspace(0, len(frames) - 1, min(SCENE_MODEL_FRAMES, len(frames))).round().astype(int))
    probs = np.stack([model.predict(frames[i]) for i in picks])
    return {"pred_cls": probs.argmax(axis=1).astype(np.int64), "probs": probs}


def _annotation(videos: list[dict[str, Any]], subsets: dict[str, str]) -> dict[str, Any]:
    database = {}
    for video in videos:
        if video["split"] in subsets:
            database[video["key"]] = {"subset": subsets[video["split"]],
                                      "annotations": {"label": video["label"], "segment": [0, 10]}}
    return database


def _write_diving48(root: Path, videos: list[dict[str, Any]], opts: SynthOptions) -> None:
    """Diving48 layout over the same frames (hard links, copies where links are impossible)."""
    annotations = root / "diving48" / "annotations"
    annotations.mkdir(parents=True)
    lists: dict[str, list] = {"training": [], "validation": []}
    for number, video in enumerate(v for v in videos if v["split"] in lists):
        vid_name = f"{video['youtube_id']}_{number:05d}"
        target = root / "diving48" / "frames" / vid_name
        target.mkdir(parents=True)
        for i in range(1, opts.frames + 1):
            name = f"image_{i:05d}.jpg"
            try:
                os.link(root / video["frame_dir"] / name, target / name)
            except OSError:
                shutil.copyfile(root / video["frame_dir"] / name, target / name)
        start = (7 * number) % 50  # only end - start + 1 matters; vary start to show it
        lists[video["split"]].append({"vid_name": vid_name, "label": video["class_index"],
                                      "start_frame": start, "end_frame": start + opts.frames - 1})
        video["diving48_vid_name"] = vid_name
    atomic_write_json(annotations / "Diving48_train.json", lists["training"])
    atomic_write_json(annotations / "Diving48_test.json", lists["validation"])
    atomic_write_json(annotations / "Diving48_vocab.json", [name.split("_") for name in CLASS_NAMES[:opts.classes]])


def _statistics(videos: list[dict[str, Any]], opts: SynthOptions) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    for split in ("training", "validation", "ooc"):
        chosen = [v for v in videos if v["split"] == split]
        own = [v["scene"] in own_scenes(v["class_index"], opts.classes, opts.scenes) for v in chosen]
        stats[f"{split}_own_scene_fraction"] = float(np.mean(own)) if own else None
    stats["scene_model_agreement"] = float(np.mean([v["scene_model_place"] == v["scene"] for v in videos]))
    stats["place_from_action_accuracy"] = place_from_action_accuracy(
        [(v["class_index"], v["scene_model_place"]) for v in videos if v["split"] == "training"])
    stats["videos_with_few_detections"] = sum(not v["enough_detections"] for v in videos)
    return stats


def place_from_action_accuracy(pairs: list[tuple[int, int]]) -> float | None:
    """How often the training place label is each action's most frequent place: what a scene adversary gets
    right from the action alone, without any scene feature (1.0 = the place label is a function of the action)."""
    if not pairs:
        return None
    counts: dict[int, dict[int, int]] = {}
    for action, place in pairs:
        counts.setdefault(action, {}).setdefault(place, 0)
        counts[action][place] += 1
    return sum(max(places.values()) for places in counts.values()) / len(pairs)


# ----------------------------------------------------------------------------------------------
# test splits: the field's scene-bias protocols on the generated world


def _write_test_splits(root: Path, scenes: list[Scene], model: SceneModel, opts: SynthOptions) -> dict[str, Any]:
    """``splits/{iid,conflicting,scuba,scufo,background_only}``, ``test_per_class`` videos per action each.

    * ``iid`` follows the training distribution (own scenes with probability ``bias``);
    * ``conflicting`` shows only other actions' scenes;
    * ``scuba`` renders a new actor with the exact same drawing onto a background never used in
      training (half held-out scenes, half sinusoidal gratings): compositing with an exact mask;
    * ``scufo`` repeats one random frame of each ``scuba`` clip (same keys): no motion left;
    * ``background_only`` is each ``iid`` clip with the actor removed (same keys as ``iid``).

    A separate random stream (seeded from ``seed``) keeps the rest of the dataset byte-identical to a
    generation without test splits.
    """
    rng = np.random.default_rng([opts.seed, 1])
    heldout = make_grouped_scenes(opts.heldout_scenes, opts.classes, rng, first=max(opts.scenes, opts.places))
    labels = list(CLASS_NAMES[:opts.classes])
    written: dict[str, list[SplitVideo]] = {name: [] for name in ("iid", "conflicting", "scuba", "scufo",
                                                                  "background_only")}
    agreement = []
    for class_index, label in enumerate(labels):
        for number in range(opts.test_per_class):
            key = f"{label}_{number:04d}"
            for split in ("iid", "conflicting"):
                scene = _pick_scene(class_index, split, opts, rng)
                background = scene_background(scenes[scene], opts, rng)
                frames, _, _ = render_actor(background, class_index, opts, rng)
                _write_frames(root / "splits" / split / label / key, frames)
                written[split].append(SplitVideo(key, label, f"{split}/{key}", scenes[scene].name))
                if split == "iid":
                    _write_frames(root / "splits" / "background_only" / label / key,
                                  np.repeat(_to_uint8(background)[None], opts.frames, axis=0))
                    written["background_only"].append(SplitVideo(key, label, f"iid/{key}", scenes[scene].name))
                    agreement.append(int(model.predict(frames[0]).argmax()) == scene)
            if number % 2 == 0:
                scene = heldout[int(rng.integers(len(heldout)))]
                background, name = scene_background(scene, opts, rng), f"heldout {scene.name}"
            else:
                background, name = stripe_background(opts.height, opts.width, rng), "sinusoidal stripes"
            frames, _, _ = render_actor(background, class_index, opts, rng)
            _write_frames(root / "splits" / "scuba" / label / key, frames)
            still = int(rng.integers(opts.frames))
            _write_frames(root / "splits" / "scufo" / label / key,
                          np.repeat(frames[still:still + 1], opts.frames, axis=0))
            written["scuba"].append(SplitVideo(key, label, f"scuba/{key}", name))
            written["scufo"].append(SplitVideo(key, label, f"scuba/{key} frame {still + 1}", name))
    for split, entries in written.items():
        write_split_annotation(root / "splits" / split, split, labels, entries)
    return {"statistics": {"iid_scene_model_agreement": float(np.mean(agreement))},
            **{split: f"splits/{split}" for split in written}}


def _prepare_output(out_dir: Path) -> Path:
    """Refuse to mix with an existing dataset; return a fresh staging directory next to ``out_dir``."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise SdnError(f"{out_dir}: exists and is not an empty directory; choose a new output directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def _build(root: Path, opts: SynthOptions) -> dict[str, Any]:
    rng = np.random.default_rng(opts.seed)
    scenes = make_grouped_scenes(opts.scenes, opts.classes, rng) if opts.grouped else make_scenes(opts.scenes, rng)
    model = SceneModel(scenes, opts.places, opts.height, opts.width, rng, texture=opts.grouped)
    videos = _plan_videos(opts, rng)
    places: dict[str, dict] = {"train": {}, "val": {}}
    dets: dict[str, dict] = {"train": {}, "val": {}}
    masks: dict[str, dict] = {"train": {}, "val": {}}
    for video in videos:
        frames, true_boxes, actor_masks = _render_video(video, scenes[video["scene"]], opts, rng)
        _write_frames(root / video["frame_dir"], frames)
        part = "train" if video["split"] == "training" else "val"
        masks[part][(video["label"], video["youtube_id"])] = actor_masks
        labels = _scene_labels(frames, model)
        places[part].setdefault(video["label"], {})[video["youtube_id"]] = labels
        video["scene_model_place"] = int(np.bincount(labels["pred_cls"]).argmax())
        miss_rate = 0.45 if rng.random() < 0.15 else float(rng.uniform(0.0, 0.1))
        per_frame = {i + 1: {"human_boxes": detect(box, miss_rate, opts.height, opts.width, rng)}
                     for i, box in enumerate(true_boxes)}
        dets[part].setdefault(video["label"], {})[video["youtube_id"]] = per_frame
        confident = sum(bool(np.any(f["human_boxes"][:, 4] > np.float32(0.3))) for f in per_frame.values())
        video["detection_miss_rate"] = miss_rate
        video["enough_detections"] = confident / opts.frames >= 0.7
        video["true_boxes"] = [[round(float(c), 3) for c in box] for box in true_boxes]
    for directory in ("places", "places_safe", "dets", "dets_safe", "masks"):
        (root / directory).mkdir()
    for part in ("train", "val"):
        save_human_masks(root / "masks" / FILE_NAMES[part], masks[part], "exact")
        save_scene_labels_npy(root / "places" / f"places_{part}.npy", places[part])
        save_scene_labels_npz(root / "places_safe" / f"places_{part}.npz", places[part])
        save_detections_npy(root / "dets" / f"detection_{part}_merged_rearranged.npy", dets[part])
        save_detections_npz(root / "dets_safe" / f"detection_{part}.npz", dets[part])
    labels = list(CLASS_NAMES[:opts.classes])
    atomic_write_json(root / "kinetics.json", {"labels": labels, "database": _annotation(
        videos, {"training": "training", "validation": "validation"})})
    if opts.ooc_per_class:
        atomic_write_json(root / "kinetics_ooc.json", {"labels": labels, "database": _annotation(
            videos, {"training": "training", "ooc": "validation"})})
    if opts.diving48:
        _write_diving48(root, videos, opts)
    splits = _write_test_splits(root, scenes, model, opts) if opts.test_per_class else {}
    summary = {
        "generator": "sdn synth", "format_version": 1, "options": asdict(opts),
        "classes": labels, "num_places": opts.places,
        "scenes": [asdict(scene) for scene in scenes],
        "statistics": {**_statistics(videos, opts), **splits.pop("statistics", {})},
        "test_splits": splits, "videos": videos,
    }
    atomic_write_json(root / "synth.json", summary, indent=1)
    return summary


def generate(out_dir: str | os.PathLike, **options: Any) -> dict[str, Any]:
    """Write the dataset to ``out_dir`` (new or empty) and return the summary stored in ``synth.json``.

    ``options`` are the fields of :class:`SynthOptions` (``classes``, ``scenes``, ``bias``, ``seed``, ...).

    Layout: ``jpg/{train,val}/<label>/<key>/image_%05d.jpg`` + ``n_frames``; ``kinetics.json``;
    ``kinetics_ooc.json`` (training + out-of-context validation, frames also under ``jpg/val``; only
    when ``ooc_per_class > 0``);
    ``places/places_{train,val}.npy`` and ``places_safe/*.npz``;
    ``dets/detection_{train,val}_merged_rearranged.npy`` and ``dets_safe/detection_{train,val}.npz``;
    ``masks/masks_{train,val}.npz`` (exact actor masks, :mod:`sdn.data.human_masks`);
    ``diving48/{frames,annotations}``; ``splits/<name>/`` test splits when ``test_per_class > 0``
    (:mod:`sdn.data.test_splits`); ``synth.json``.
    """
    opts = SynthOptions(**options).resolved()
    out_dir = Path(out_dir)
    staging = _prepare_output(out_dir)
    try:
        summary = _build(staging, opts)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary
