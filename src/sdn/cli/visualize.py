"""``sdn visualize``: where one or more trained models look, on the same clips.

For every clip it writes ``<name>.png`` (evenly spaced frames; a row of input frames, then one
row per checkpoint with its activation map blended over the frames) and ``<name>.gif`` (all
frames of the clip, rows stacked). Giving a baseline and an SDN checkpoint gives the SDN paper's
comparison figure. Clips come from video files / frame folders (``--video``) or from the
validation set the first checkpoint was trained on (``--val_clips``), and go through the
validation pipeline (centre window, short side scaled, centre crop) at the checkpoint's
``sample_size`` x ``sample_duration``.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import torch
from tqdm import tqdm

from sdn import analysis
from sdn.data.transforms import TemporalCenterCrop, val_spatial_transform
from sdn.data.video import FRAME_NAME, VIDEO_EXTENSIONS, open_video
from sdn.errors import SdnError
from sdn.viz.cam import METHODS, activation_maps
from sdn.viz.checkpoints import LoadedModel, load_model
from sdn.viz.render import Row, animation, clip_to_rgb, overlay, save_gif, save_png, spread, strip


@dataclass(frozen=True)
class Clip:
    """A clip as the models see it (uint8 ``[3, T, S, S]``, before normalisation), named for the output files."""

    name: str
    clip: torch.Tensor
    label: str | None = None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdn visualize",
        description="Class activation maps of one or more checkpoints on the same clips, as a PNG strip and a GIF "
        "per clip (one row per checkpoint).")
    parser.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="save_<epoch>.pth files of 'sdn train'")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", action="append", metavar="PATH", help="a video file, a frame folder "
                        "(image_00001.jpg, ...) or a directory of those; repeatable")
    source.add_argument("--val_clips", type=int, metavar="N", help="N clips spread over the validation set the first "
                        "checkpoint was trained on (the dataset options saved in it)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (created if needed)")
    parser.add_argument("--labels", nargs="+", metavar="NAME", help="row titles, one per checkpoint "
                        "(default: <directory>/<file name>)")
    parser.add_argument("--class", dest="class_spec", metavar="NAME_OR_INDEX", help="explain this class "
                        "(default: each model's own prediction)")
    parser.add_argument("--method", choices=METHODS, default="cam", help="cam: classifier weights x last feature map "
                        "(default); gradcam: gradient-weighted map of --layer")
    parser.add_argument("--layer", help="Grad-CAM layer, a module name such as layer3 or layer4.0.conv2 "
                        "(default: the last feature map)")
    parser.add_argument("--frames", type=int, default=8, help="frames shown in the PNG strip (default 8)")
    parser.add_argument("--cell_size", type=int, default=112, help="pixels per drawn frame (default 112)")
    parser.add_argument("--alpha", type=float, default=0.5, help="opacity of the map over the frame (default 0.5)")
    parser.add_argument("--fps", type=float, default=4.0, help="GIF frames per second (default 4)")
    parser.add_argument("--allow_pickle", action="store_true", help="trust the checkpoint files fully (a pickle can "
                        "run code); by default they load with weights_only=True")
    parser.add_argument("--no_cuda", action="store_true", help="run on the CPU even when CUDA is available")
    parser.add_argument("--no_progress", action="store_true", help="do not show a progress bar")
    return parser


def _check_arguments(args: argparse.Namespace) -> None:
    if args.frames < 1:
        raise SdnError(f"--frames must be at least 1, got {args.frames}")
    if args.cell_size < 16:
        raise SdnError(f"--cell_size must be at least 16 pixels, got {args.cell_size}")
    if not 0.0 <= args.alpha <= 1.0:
        raise SdnError(f"--alpha must be in [0, 1], got {args.alpha}")
    if args.fps <= 0:
        raise SdnError(f"--fps must be positive, got {args.fps}")
    if args.val_clips is not None and args.val_clips < 1:
        raise SdnError(f"--val_clips must be at least 1, got {args.val_clips}")
    if args.labels is not None and len(args.labels) != len(args.checkpoints):
        raise SdnError(f"--labels gives {len(args.labels)} names for {len(args.checkpoints)} checkpoints")
    if args.layer is not None and args.method != "gradcam":
        raise SdnError("--layer applies to --method gradcam; CAM always explains the last feature map")


def _default_label(path: str) -> str:
    parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
    stem = os.path.splitext(os.path.basename(path))[0]
    return f"{parent}/{stem}" if parent else stem


def _clip_geometry(models: list[LoadedModel]) -> tuple[int, int]:
    """(sample_size, sample_duration) shared by all checkpoints: the rows must show the same pixels."""
    sizes = {(m.opt.sample_size, m.opt.sample_duration) for m in models}
    if len(sizes) > 1:
        found = ", ".join(f"{m.path}: {m.opt.sample_size}px x {m.opt.sample_duration} frames" for m in models)
        raise SdnError(f"the checkpoints were trained on different clip sizes ({found}); "
                       "compare checkpoints with the same --sample_size and --sample_duration")
    return sizes.pop()


def _is_frame_folder(path: str) -> bool:
    return os.path.isdir(path) and any(os.path.isfile(os.path.join(path, name))
                                       for name in ("n_frames", FRAME_NAME.format(1)))


def _is_video_file(path: str) -> bool:
    return os.path.isfile(path) and path.lower().endswith(VIDEO_EXTENSIONS)


def video_paths(arguments: list[str]) -> list[str]:
    """``--video`` values expanded: files and frame folders as given, directories to their videos (sorted)."""
    paths: list[str] = []
    for argument in arguments:
        if os.path.isfile(argument) or _is_frame_folder(argument):
            paths.append(argument)
        elif os.path.isdir(argument):
            children = [os.path.join(argument, name) for name in sorted(os.listdir(argument))]
            found = [child for child in children if _is_video_file(child) or _is_frame_folder(child)]
            if not found:
                raise SdnError(f"{argument}: no video files ({', '.join(VIDEO_EXTENSIONS)}) or frame folders in this "
                               "directory")
            paths.extend(found)
        else:
            raise SdnError(f"{argument}: no such video file, frame folder or directory")
    return paths


def _frame_count(path: str) -> int | None:
    """Frames of a folder without an ``n_frames`` file: the consecutive images from 1 (None: let the source decide)."""
    if not os.path.isdir(path) or os.path.isfile(os.path.join(path, "n_frames")):
        return None
    count = 0
    while os.path.isfile(os.path.join(path, FRAME_NAME.format(count + 1))):
        count += 1
    return count


def read_clip(path: str, sample_size: int, sample_duration: int) -> torch.Tensor:
    """The centre window of a video through the validation transform, uint8 ``[3, T, S, S]``."""
    source = open_video(path, _frame_count(path))
    n_frames = source.num_frames()
    if n_frames < 1:
        raise SdnError(f"{path}: the video has no frames")
    indices = TemporalCenterCrop(sample_duration)(list(range(1, n_frames + 1)))
    return val_spatial_transform(sample_size)(source.read(indices)).permute(1, 0, 2, 3).contiguous()


def _unique_name(path: str, taken: set[str]) -> str:
    base = os.path.splitext(os.path.basename(os.path.normpath(path)))[0] or "clip"
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}_{number}"
    taken.add(name)
    return name


def video_clips(arguments: list[str], sample_size: int, sample_duration: int) -> list[Clip]:
    taken: set[str] = set()
    return [Clip(_unique_name(path, taken), read_clip(path, sample_size, sample_duration))
            for path in video_paths(arguments)]


def validation_clips(loaded: LoadedModel, count: int) -> list[Clip]:
    """``count`` clips spread over the checkpoint's validation set, read as training validated them."""
    dataset = analysis.validation_clips(loaded.opt)  # the clips alone: no scene labels or detections needed
    clips = []
    for index in spread(len(dataset), count):
        sample = dataset.samples[index]
        video = sample.video
        name = f"{video.class_dir}_{video.video_id}_{sample.frame_indices[0]}"
        label = dataset.class_names[video.label] if video.label >= 0 else None
        clips.append(Clip(name, dataset[index]["clip"], label))
    return clips


def explain(loaded: LoadedModel, clip: Clip, args: argparse.Namespace, label: str, class_index: int | None) -> Row:
    """One model's row: its map for ``class_index`` (None: its prediction) over the clip."""
    inputs = loaded.prepare(clip.clip[None])
    result = activation_maps(loaded.model, inputs, args.method, args.layer, class_index)
    shown, predicted = int(result.classes[0]), int(result.predicted[0])
    title = f"{label}: {args.method} {loaded.class_name(shown)} p={float(result.probabilities[0, shown]):.2f}"
    if shown != predicted:
        title += f" (predicted {loaded.class_name(predicted)})"
    if not bool(result.maps[0].any()):
        # A 1x1 feature map (tiny clips) or a Grad-CAM that its ReLU emptied localises nothing: say so.
        title += " (flat map)"
    return Row(title, overlay(clip_to_rgb(clip.clip), result.maps[0], args.alpha))


def _make_output_dir(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise SdnError(f"{path}: cannot create the output directory ({error.strerror or error})") from None


def run(args: argparse.Namespace) -> int:
    _check_arguments(args)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.no_cuda else "cpu")
    models = [load_model(path, allow_pickle=args.allow_pickle, device=device) for path in args.checkpoints]
    labels = args.labels or [_default_label(path) for path in args.checkpoints]
    classes = [m.resolve_class(args.class_spec) if args.class_spec is not None else None for m in models]
    sample_size, sample_duration = _clip_geometry(models)
    clips = (video_clips(args.video, sample_size, sample_duration) if args.video
             else validation_clips(models[0], args.val_clips))
    _make_output_dir(args.out)
    for clip in tqdm(clips, desc="visualize", unit="clip", disable=args.no_progress):
        title = clip.name + (f" (label: {clip.label})" if clip.label else "")
        rows = [Row(title, clip_to_rgb(clip.clip))]
        rows += [explain(loaded, clip, args, label, class_index)
                 for loaded, label, class_index in zip(models, labels, classes)]
        save_png(strip(rows, args.frames, args.cell_size), os.path.join(args.out, f"{clip.name}.png"))
        save_gif(animation(rows, args.cell_size), os.path.join(args.out, f"{clip.name}.gif"), args.fps)
    print(f"wrote {len(clips)} PNG strip(s) and GIF(s) to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
