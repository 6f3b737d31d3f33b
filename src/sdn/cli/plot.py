"""``sdn plot``: a run's training and validation curves (losses, accuracies, learning rate) as a PNG."""

from __future__ import annotations

import argparse

from sdn.viz.plots import plot_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdn plot",
        description="Plot train.log and val.log of an 'sdn train' result directory: losses, accuracies and the "
        "learning rate per epoch, training solid and validation dashed.")
    parser.add_argument("result_dir", metavar="RESULT_DIR", help="the --result_path of an 'sdn train' run")
    parser.add_argument("--out", metavar="PNG", help="output file (default: RESULT_DIR/curves.png)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = plot_run(args.result_dir, args.out)
    print(f"wrote {path}")
    return 0
