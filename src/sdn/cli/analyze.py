"""``sdn analyze CHECKPOINT``: how much a trained model relies on the scene (see :mod:`sdn.analysis`).

The model is rebuilt from the checkpoint, and the data options default to the ones it was trained
with, so ``sdn analyze runs/full/save_3.pth --ooc_annotation_path ...`` needs nothing else on the
machine that trained it. Paths given here are joined to ``--root_path`` as ``sdn train`` joins
them (the scene-label and detection directories are not, also as in ``sdn train``).
"""

from __future__ import annotations

import argparse
import os

import torch

from sdn.analysis import AnalysisSettings, analyze, format_table, json_ready, table_rows
from sdn.config import DATASETS, Options
from sdn.errors import SdnError
from sdn.io import atomic_write_json
from sdn.static_reference import measure_static_reference
from sdn.viz.cam import METHODS
from sdn.viz.checkpoints import load_model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdn analyze",
        description="Scene-bias measurements of a checkpoint: in- and out-of-context accuracy, a linear scene probe "
        "(B_scene), human-masked and static clips, actor attention, and test splits (SCUBA, SCUFO, Contra. Acc.). "
        "Prints a table and writes JSON.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a save_<epoch>.pth file of 'sdn train'")
    parser.add_argument("--out", required=True, metavar="JSON", help="where to write the results (JSON)")
    data = parser.add_argument_group("data (default: what the checkpoint was trained on)")
    data.add_argument("--root_path", default="", help="joined in front of --video_path, --annotation_path and "
                      "--ooc_annotation_path, as in 'sdn train'")
    data.add_argument("--video_path", help="directory of the videos (Kinetics layout: train/ and val/ below it)")
    data.add_argument("--annotation_path", help="annotation file of the training and in-context validation clips")
    data.add_argument("--dataset", choices=DATASETS, help="annotation format (default: the checkpoint's)")
    data.add_argument("--ooc_annotation_path", help="annotation whose validation subset is out of context "
                      "(e.g. kinetics_ooc.json of 'sdn synth')")
    data.add_argument("--split", action="append", default=[], metavar="DIR", help="a test split folder (split.json + "
                      "clips; written by 'sdn synth --test-per-class' or 'sdn prepare scuba'); repeat for several. "
                      "With a SCUBA split and its SCUFO twin, Contra. Acc. is reported too")
    data.add_argument("--place_pred_path", help="scene pseudo-label directory, for the scene probe (default: the "
                      "checkpoint's, when that directory exists)")
    data.add_argument("--human_dets_path", help="human detection directory, for masked clips and actor attention "
                      "(default: the checkpoint's, when that directory exists)")
    data.add_argument("--n_val_samples", type=int, help="validation windows per video (default: the checkpoint's)")
    data.add_argument("--static_reference", action="store_true", help="also train a 2D frame model on the training "
                      "set (seconds at small sizes) and report its accuracy on each --split: how far the static cue "
                      "alone gets")
    run = parser.add_argument_group("running")
    run.add_argument("--attention_method", choices=METHODS, default="cam", help="activation maps for actor "
                     "attention: cam (last feature map, default) or gradcam (of --attention_layer)")
    run.add_argument("--attention_layer", help="Grad-CAM layer, e.g. layer2: finer maps for small clips whose last "
                    "feature map is 1x1")
    run.add_argument("--batch_size", type=int, default=16, help="clips per forward pass (default 16)")
    run.add_argument("--n_threads", type=int, default=0, help="data loading workers (default 0)")
    run.add_argument("--allow_pickle", action="store_true", help="trust the checkpoint file fully (a pickle can run "
                     "code); by default it loads with weights_only=True")
    run.add_argument("--no_cuda", action="store_true", help="run on the CPU even when CUDA is available")
    run.add_argument("--no_progress", action="store_true", help="do not show progress bars")
    return parser


def _joined(root: str, path: str | None) -> str | None:
    return None if path is None else os.path.join(root, path) if root else path


def _label_directory(given: str | None, saved: str, flag: str) -> str | None:
    """A given directory must exist; the checkpoint's is used only where it exists (a baseline has none)."""
    if given is not None:
        if not os.path.isdir(given):
            raise SdnError(f"{given}: {flag} is not a directory")
        return given
    return saved if saved and os.path.isdir(saved) else None


def with_data_paths(args: argparse.Namespace, saved: Options) -> Options:
    """The checkpoint's options with the data paths given on the command line put over them."""
    changes: dict = {}
    for name in ("video_path", "annotation_path"):
        value = _joined(args.root_path, getattr(args, name))
        if value is not None:
            changes[name] = value
    if args.dataset is not None:
        changes["dataset"] = args.dataset
    if args.n_val_samples is not None:
        changes["n_val_samples"] = args.n_val_samples
    opt = saved.replace(**changes)
    for name in ("video_path", "annotation_path"):
        if not os.path.exists(getattr(opt, name)):
            raise SdnError(f"{getattr(opt, name)}: no such file or directory (--{name}; give --root_path/--{name} "
                           "when the data moved since training)")
    return opt


def settings_from(args: argparse.Namespace, saved: argparse.Namespace) -> AnalysisSettings:
    ooc = _joined(args.root_path, args.ooc_annotation_path)
    if ooc is not None and not os.path.isfile(ooc):
        raise SdnError(f"{ooc}: --ooc_annotation_path is not a file")
    return AnalysisSettings(
        ooc_annotation_path=ooc,
        splits=tuple(_joined(args.root_path, split) for split in args.split),
        place_pred_path=_label_directory(args.place_pred_path, saved.place_pred_path, "--place_pred_path"),
        human_dets_path=_label_directory(args.human_dets_path, saved.human_dets_path, "--human_dets_path"),
        attention_method=args.attention_method, attention_layer=args.attention_layer,
        batch_size=args.batch_size, workers=args.n_threads, progress=not args.no_progress)


def _check(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise SdnError(f"--batch_size must be at least 1, got {args.batch_size}")
    if args.n_threads < 0:
        raise SdnError(f"--n_threads must be >= 0, got {args.n_threads}")
    if args.n_val_samples is not None and args.n_val_samples < 1:
        raise SdnError(f"--n_val_samples must be at least 1, got {args.n_val_samples}")
    if args.attention_layer is not None and args.attention_method != "gradcam":
        raise SdnError("--attention_layer applies to --attention_method gradcam")
    if args.static_reference and not args.split:
        raise SdnError("--static_reference is measured on test splits: give at least one --split")


def run(args: argparse.Namespace) -> int:
    _check(args)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.no_cuda else "cpu")
    loaded = load_model(args.checkpoint, allow_pickle=args.allow_pickle, device=device)
    settings = settings_from(args, loaded.opt)
    opt = with_data_paths(args, loaded.opt)
    result = analyze(loaded, opt, settings)
    if args.static_reference:
        result["static_reference"] = measure_static_reference(opt, loaded.normalize.cpu(), settings.splits,
                                                              seed=opt.manual_seed, progress=settings.progress)
    result = json_ready(result)
    print(format_table(table_rows(result)))
    atomic_write_json(args.out, result, indent=1)
    print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
