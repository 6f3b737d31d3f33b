"""``sdn demo``: the whole SDN story on a generated benchmark, in one command, no download.

Generates the scene-biased benchmark and an unbiased training set, trains the baseline, the
scene-adversarial model and both variants of the full SDN model (plus the unbiased upper bound)
with the same recipe, measures each with ``sdn analyze``'s measurements, and writes
``report.md``, ``results.json``, ``comparison.png``, ``cam.png`` and ``curves/`` (see
:mod:`sdn.demo`). ``--quick`` runs a smaller version for a first look.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from sdn.demo import DEFAULT, METHODS, QUICK, comparison_table, run_demo
from sdn.errors import SdnError

# options that override a field of the preset (name -> type); None keeps the preset's value
OVERRIDES = {"seeds": int, "phase_epochs": int, "train_per_class": int, "val_per_class": int, "ooc_per_class": int,
             "bias": float, "learning_rate": float, "threads": int}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdn demo",
        description="Generate a scene-biased benchmark, train the baseline, scene-adversarial and full SDN models "
        "(original and paper mask loss) and an unbiased upper bound with the same budget, measure scene bias, "
        "and write report.md, results.json and PNG figures.")
    parser.add_argument("--out", default="demo_out", metavar="DIR", help="output directory, new or empty "
                        "(default: demo_out)")
    parser.add_argument("--quick", action="store_true", help=f"a smaller run ({QUICK.seeds} seeds, "
                        f"{QUICK.train_per_class} training videos per action; about 3 minutes "
                        f"on 2 CPU cores) instead of the default ({DEFAULT.seeds} seeds, about 15 minutes)")
    sizes = parser.add_argument_group("overrides of the preset (results are then not comparable to the README's)")
    for name, kind in OVERRIDES.items():
        sizes.add_argument(f"--{name}", type=kind, metavar="N" if kind is int else "X",
                           help=f"default {getattr(DEFAULT, name)} ({getattr(QUICK, name)} with --quick)")
    parser.add_argument("--no_progress", action="store_true", help="do not show the progress bar")
    return parser


def _check_out(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise SdnError(f"{path}: exists and is not an empty directory; choose a new --out")


def run(args: argparse.Namespace) -> int:
    config = QUICK if args.quick else DEFAULT
    config = replace(config, **{name: getattr(args, name) for name in OVERRIDES if getattr(args, name) is not None})
    if not 0.0 <= config.bias <= 1.0:
        raise SdnError(f"--bias must be within 0..1, got {config.bias}")
    out = Path(args.out)
    _check_out(out)
    results = run_demo(out, config, progress=not args.no_progress)
    print(comparison_table(results["summary"]))
    labels = {method.key: method.label for method in METHODS}
    for key, answer in results["against_target"].items():
        print(f"{labels[key]}: out of context {answer['ooc_gain_points']:+.1f} points vs the baseline, in context "
              f"{answer['in_context_change_points']:+.1f}; target {'met' if answer['meets_target'] else 'not met'}")
    print(f"wrote {out / 'report.md'}, {out / 'results.json'}, {out / 'comparison.png'}, {out / 'cam.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
