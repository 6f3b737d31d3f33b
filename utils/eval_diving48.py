"""The original utils/eval_diving48.py: video-level top-1 accuracy of a val.json on Diving48 (sdn eval)."""

import os
import sys

try:
    import sdn  # noqa: F401  (installed package)
except ImportError:  # a plain checkout: use its src/ folder
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

import sdn.cli.eval
import sdn.cli.main

if __name__ == "__main__":
    # The dataset goes last so that a train.py --dataset copied along cannot override it (the original ignored it).
    sys.exit(sdn.cli.main.run_guarded(sdn.cli.eval.main, [*sys.argv[1:], "--dataset", "diving48"]))
