"""Clip loading speed: sdn's loader path against the original per-frame PIL path and a decode-only ceiling.

Kept for the command the README used to give; it is ``sdn bench loader`` (the code lives in
``sdn.bench.loader``) and takes the same options, e.g.
``.venv/bin/python bench/bench_loader.py --rounds 7 --draft``.
"""

from __future__ import annotations

import sys

from sdn.cli.main import run_guarded
from sdn.cli.bench import main

if __name__ == "__main__":
    raise SystemExit(run_guarded(main, ["loader", *sys.argv[1:]]))
