"""``sdn eval`` (and ``python utils/eval_<dataset>.py``): video-level accuracy of a val.json.

Prints what the original evaluation scripts printed, plus sdn's extra metrics before the last
line; the last line stays the bare top-1 accuracy because scripts parse it. The original scripts
parsed train.py's options, so every train.py option is accepted here too (and ignored unless it
is one of ``--root_path``, ``--annotation_path``, ``--prediction_path``).
"""

from __future__ import annotations

import argparse
import os
import sys

from sdn import config
from sdn.errors import SdnError
from sdn.evaluation import DATASETS, DISPLAY_NAMES, GroundTruth, Metrics, evaluate, load_ground_truth, load_predictions
from sdn.io import atomic_write_json


def build_parser() -> argparse.ArgumentParser:
    """The options evaluation uses; path defaults are train.py's so both stay in step."""
    train = config.build_parser()
    parser = argparse.ArgumentParser(
        prog="sdn eval",
        description="Video-level accuracy of a test result file (val.json), as the original utils/eval_*.py. "
        "Every option of train.py is also accepted and ignored.",
        allow_abbrev=False,  # never take a train.py option for an abbreviation of one of these
    )
    parser.add_argument("--dataset", required=True, help="Ground-truth format: " + " | ".join(DATASETS))
    parser.add_argument("--root_path", default=train.get_default("root_path"),
                        help="Joined before --annotation_path unless empty (as train.py)")
    parser.add_argument("--annotation_path", default=train.get_default("annotation_path"),
                        help="Annotation JSON (Diving48: the annotation directory)")
    parser.add_argument("--prediction_path", default=train.get_default("prediction_path"),
                        help="The val.json written by the test step (not joined with --root_path)")
    parser.add_argument("--top_k", type=int, default=5, help="k of the extra top-k accuracy line (default 5)")
    parser.add_argument("--output_json", default="", help="Also write the metrics to this JSON file")
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the evaluation options, accept train.py's, reject anything else in one line."""
    opt, rest = build_parser().parse_known_args(argv)
    _, unknown = config.build_parser(prog="sdn eval").parse_known_args(rest)
    if unknown:
        raise SdnError(f"unrecognized arguments: {' '.join(unknown)}")
    if opt.dataset not in DATASETS:
        raise SdnError(f"--dataset {opt.dataset!r}: evaluation supports {', '.join(DATASETS)}")
    if opt.top_k < 1:
        raise SdnError(f"--top_k must be at least 1, got {opt.top_k}")
    if opt.root_path != "":
        joined = os.path.join(opt.root_path, opt.annotation_path)
        # The default --root_path (/root/data/ActivityNet) rarely exists; a relative path that
        # only makes sense from the working directory is taken as given rather than failing.
        if os.path.exists(joined) or not os.path.exists(opt.annotation_path):
            opt.annotation_path = joined
    return opt


def _print_init(gt: GroundTruth, metrics: Metrics) -> None:
    print(f"[INIT] Loaded annotations from {gt.subset} subset.")
    print(f"\tNumber of ground truth instances: {metrics.n_ground_truth}")
    print(f"\tNumber of predictions: {metrics.n_predictions}")


def _warn(metrics: Metrics) -> None:
    """Say on stderr what the original would not have survived or would have hidden."""
    if metrics.n_unknown_labels:
        print(f"warning: {metrics.n_unknown_labels} predictions have a label that is not a class of the ground "
              "truth; they count as misses (the original scripts stopped with KeyError)", file=sys.stderr)
    if metrics.n_missing_videos:
        print(f"warning: {metrics.n_missing_videos} of {metrics.n_videos} ground-truth videos have no prediction; "
              "they count as misses", file=sys.stderr)


def _print_results(dataset: str, metrics: Metrics) -> None:
    print(f"[RESULTS] Performance on {DISPLAY_NAMES[dataset]} video classification task.")
    print(f"\tError@1: {1.0 - metrics.top1_accuracy}")
    print(f"\tTop-{metrics.top_k} accuracy: {metrics.top_k_accuracy}")
    print(f"\tMean per-class accuracy: {metrics.mean_class_accuracy}")
    print(metrics.top1_accuracy)


def _write_metrics(path: str, opt: argparse.Namespace, metrics: Metrics) -> None:
    record = {"dataset": opt.dataset, "annotation_path": opt.annotation_path,
              "prediction_path": opt.prediction_path, **metrics.as_dict()}
    atomic_write_json(path, record, indent=2)


def main(argv: list[str]) -> int:
    opt = parse_args(argv)
    gt = load_ground_truth(opt.dataset, opt.annotation_path)
    predictions = load_predictions(opt.prediction_path)
    metrics = evaluate(gt, predictions, top_k=opt.top_k)
    _print_init(gt, metrics)
    _warn(metrics)
    if opt.output_json:
        _write_metrics(opt.output_json, opt, metrics)
    _print_results(opt.dataset, metrics)
    return 0
