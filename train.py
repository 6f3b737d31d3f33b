"""``python train.py ...`` from the repository root runs ``sdn train ...`` (the original README's commands)."""

import os
import sys

try:
    import sdn  # noqa: F401  (installed with `pip install -e .`)
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

from sdn.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
