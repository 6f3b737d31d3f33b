"""The ``sdn`` command: dispatches to one module per subcommand.

Each subcommand module exposes ``main(argv: list[str]) -> int``.
User errors (:class:`sdn.errors.SdnError`) are printed as one line and exit with status 2.
"""

from __future__ import annotations

import importlib
import sys

from sdn.errors import SdnError

# name -> (module, one-line summary). Modules are imported only when their command runs,
# so `sdn --help` does not pay for importing torch.
SUBCOMMANDS = {
    "train": ("sdn.cli.train", "train / fine-tune / test a model (the original train.py flags)"),
    "eval": ("sdn.cli.eval", "video-level accuracy of a val.json (the original utils/eval_*.py)"),
    "synth": ("sdn.cli.synth", "generate a small scene-biased action dataset"),
    "visualize": ("sdn.cli.visualize", "class activation maps of checkpoints over clips (PNG strip + GIF)"),
    "plot": ("sdn.cli.plot", "training and validation curves of a run (PNG)"),
    "analyze": ("sdn.cli.analyze", "scene-bias measurements of a checkpoint (accuracy in/out of context, scene probe)"),
    "demo": ("sdn.cli.demo", "generate the benchmark, train and compare every SDN variant, write a report"),
    "prepare": ("sdn.cli.prepare", "make frames, annotations, scene labels and human detections from raw videos"),
    "bench": ("sdn.cli.bench", "loader, training-step and full-SDN cost benchmarks, side by side (tables, JSON, PNG)"),
}


def _usage() -> str:
    lines = ["usage: sdn <command> [options]", "", "commands:"]
    for name, (_, summary) in SUBCOMMANDS.items():
        lines.append(f"  {name:<10} {summary}")
    lines.append("")
    lines.append("Run 'sdn <command> --help' for the options of a command.")
    return "\n".join(lines)


def one_line(error: SdnError) -> str:
    """The user-facing line of an error, also when a DataLoader worker wrapped it in a traceback."""
    text = str(error)
    if "Original Traceback" not in text:
        return text
    last = text.strip().splitlines()[-1]
    return last.split(": ", 1)[1] if last.startswith("sdn.errors.") else last


def run_guarded(entry, argv: list[str]) -> int:
    """Run ``entry(argv)``; turn user errors into one line on stderr and exit status 2."""
    try:
        return int(entry(argv) or 0)
    except SdnError as error:
        print(f"sdn: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sdn: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from sdn import __version__

        print(f"sdn {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"sdn: error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return run_guarded(module.main, rest)


if __name__ == "__main__":
    raise SystemExit(main())
