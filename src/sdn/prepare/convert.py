"""``sdn prepare convert``: scene labels and human detections between the original ``.npy`` and the safe ``.npz``.

The released files are pickles; loading them needs a restricted unpickler every time. Converted
once to ``.npz`` (plain arrays, no pickle), they load faster and with ``allow_pickle=False``.
The way back exists for tools that only read the original layout. Both directions validate the
content with the same checks training applies, so a converted file always loads.
"""

from __future__ import annotations

import argparse
import glob
import os

from tqdm import tqdm

from sdn.errors import SdnError
from sdn.prepare import formats


def sources(src: str, extension: str) -> list[str]:
    """The files to convert: ``src`` itself, or every file of the other format in the directory ``src``."""
    if os.path.isfile(src):
        if src.endswith(extension):
            raise SdnError(f"{src}: already a {extension} file")
        return [src]
    if not os.path.isdir(src):
        raise SdnError(f"{src}: no such file or directory")
    other = ".npy" if extension == ".npz" else ".npz"
    found = sorted(glob.glob(os.path.join(glob.escape(src), f"*{other}")))
    if not found:
        raise SdnError(f"{src}: no {other} file to convert")
    return found


def convert_file(source: str, out_dir: str, extension: str) -> tuple[str, str]:
    """Convert one file into ``out_dir``; return (kind, written path)."""
    kind, data = formats.load(source)
    target = os.path.join(out_dir, formats.converted_name(os.path.basename(source), kind, extension))
    if os.path.abspath(target) == os.path.abspath(source):
        raise SdnError(f"{source}: the converted file would replace its source")
    formats.save(target, kind, data)
    return kind, target


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdn prepare convert",
        description="Convert scene-label and human-detection files between the original pickled .npy and "
        "sdn's safe .npz (the kind is recognised from the content). Detection files get the names the "
        "loader looks for (detection_train.npz <-> detection_train_merged_rearranged.npy).")
    parser.add_argument("src", help="A file, or a directory whose files of the other format are all converted")
    parser.add_argument("dst", help="Output directory (created)")
    parser.add_argument("--to", choices=("npz", "npy"), default="npz",
                        help="Target format: npz (safe, default) or npy (the original pickles)")
    return parser


def run(args: argparse.Namespace) -> int:
    extension = f".{args.to}"
    files = sources(args.src, extension)
    os.makedirs(args.dst, exist_ok=True)
    for source in tqdm(files, desc="convert", unit="file", disable=len(files) < 2):
        kind, target = convert_file(source, args.dst, extension)
        print(f"{source} -> {target} ({kind})")
    print(f"converted {len(files)} file(s) to {args.to} in {args.dst}")
    return 0
