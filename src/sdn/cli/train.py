"""``sdn train`` (and ``python train.py``): the original train.py, every flag.

The edge of the library: the flags are parsed and resolved once into frozen options
(:func:`sdn.config.resolve`), and :func:`sdn.training.run_training` does the rest.
"""

from __future__ import annotations

from sdn.config import build_parser, resolve
from sdn.training import run_training


def main(argv: list[str] | None = None) -> int:
    return run_training(resolve(build_parser().parse_args(argv)))
