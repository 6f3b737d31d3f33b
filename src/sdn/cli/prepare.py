"""``sdn prepare``: frames, annotations, scene labels, human boxes and masks, scene-bias test splits.

Each step lives in ``sdn.prepare.<module>`` with ``build_parser()`` and ``run(args) -> int``; only
the chosen step is imported, so ``sdn prepare annotations`` does not load torchvision's models.
"""

from __future__ import annotations

import importlib
import sys

STEPS = {
    "frames": ("sdn.prepare.frames", "videos to image_%05d.jpg folders + n_frames (+ fps), in parallel, resumable"),
    "annotations": ("sdn.prepare.annotations", "the original annotation JSON from official split files"),
    "scene-labels": ("sdn.prepare.scene_labels", "Places365 scene pseudo labels (--place_pred_path)"),
    "detect-humans": ("sdn.prepare.detect_humans", "per-frame human boxes from a detector (--human_dets_path)"),
    "segment-humans": ("sdn.prepare.segment_humans", "per-frame person masks from Mask R-CNN (--human_masks_path)"),
    "scuba": ("sdn.prepare.scuba", "SCUBA/SCUFO scene-bias test splits of a dataset (sdn analyze --split)"),
    "convert": ("sdn.prepare.convert", "scene labels / detections: original .npy <-> safe .npz"),
}


def _usage() -> str:
    lines = ["usage: sdn prepare <step> [options]", "", "steps (in pipeline order):"]
    lines += [f"  {name:<14} {summary}" for name, (_, summary) in STEPS.items()]
    lines += ["", "Run 'sdn prepare <step> --help' for the options of a step."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in STEPS:
        print(f"sdn prepare: error: unknown step {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(STEPS[name][0])
    return module.run(module.build_parser().parse_args(rest))
