"""``sdn demo``: which debiasing method makes an action model look at the actor? One command, no download.

Generates the scene-biased benchmark (scene groups, a bias sweep, SCUBA/SCUFO test splits), trains
the baseline, SDN's variants, BE, ActorCutMix, FAME, StillMix and ALBAR, an unbiased upper bound
and a static 2D reference on the same seeds and data, measures each the way the field measures
scene bias, and writes ``report.md``, ``results.json``, ``differences.png`` and ``sweep.png``
(see :mod:`sdn.demo`). ``--quick`` runs a small version for a first look; ``--full`` adds the
0.999 bias and SDN's extra variants (scene-adversarial from scratch, other ``--alpha`` values).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from sdn.demo import DEFAULT, FULL, METHODS, QUICK, difference_table, run_demo
from sdn.errors import SdnError

# options that override a field of the preset (name -> type); None keeps the preset's value
OVERRIDES = {"seeds": int, "phase_epochs": int, "train_per_class": int, "test_per_class": int,
             "learning_rate": float, "resnet_width": int, "workers": int}


def _biases(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _methods(text: str) -> tuple[str, ...]:
    keys = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [key for key in keys if key not in METHODS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"unknown method(s) {', '.join(unknown) or '(none given)'}; "
                                         f"known: {', '.join(METHODS)}")
    return keys if "baseline" in keys else ("baseline", *keys)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdn demo",
        description="Generate a scene-biased benchmark, train every debiasing method on the same seeds and data, "
        "measure scene bias (SCUBA, SCUFO, Contra. Acc., conflicting scenes, scene probe) and write report.md, "
        "results.json and PNG figures.")
    parser.add_argument("--out", default="demo_out", metavar="DIR", help="output directory, new or empty "
                        "(default: demo_out)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help=f"a first look ({QUICK.seeds} seeds, bias "
                      f"{QUICK.top_bias:g}, methods {', '.join(QUICK.method_keys())}; 0.5-2 minutes on 2 CPU cores)")
    size.add_argument("--full", action="store_true", help=f"everything, {FULL.seeds} seeds: biases {', '.join(map(str, FULL.biases))}, "
                      f"all methods ({', '.join(FULL.method_keys())}); about an hour on 2 CPU cores, estimated from "
                      "the default run's per-method costs")
    overrides = parser.add_argument_group("overrides of the preset (results are then not comparable to the README's)")
    for name, kind in OVERRIDES.items():
        overrides.add_argument(f"--{name}", type=kind, metavar="N" if kind is int else "X",
                               help=f"default {getattr(DEFAULT, name)} ({getattr(QUICK, name)} with --quick)")
    overrides.add_argument("--biases", type=_biases, metavar="B1,B2", help="training biases of the sweep, every "
                           f"method at the last (default {','.join(map(str, DEFAULT.biases))})")
    overrides.add_argument("--methods", type=_methods, metavar="M1,M2", help="methods to train (the baseline is "
                           f"always added); known: {', '.join(METHODS)}")
    parser.add_argument("--no_progress", action="store_true", help="do not show the progress bars")
    return parser


def _check_out(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise SdnError(f"{path}: exists and is not an empty directory; choose a new --out")


def run(args: argparse.Namespace) -> int:
    config = QUICK if args.quick else FULL if args.full else DEFAULT
    names = (*OVERRIDES, "biases", "methods")
    chosen = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    config = replace(config, **chosen).check()
    out = Path(args.out)
    _check_out(out)
    results = run_demo(out, config, progress=not args.no_progress)
    print(difference_table(results["summary"], results["keys"]))
    for name, item in results["targets"].items():
        value = item.get("value", item.get("scuba_gain"))
        print(f"target {name}: {'met' if item['met'] else 'not met'}" + ("" if value is None else f" ({value:.1f})"))
    print(f"wrote {out / 'report.md'}, {out / 'results.json'}, {out / 'differences.png'}, {out / 'sweep.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
