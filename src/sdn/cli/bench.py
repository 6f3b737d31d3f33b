"""``sdn bench``: loader, training-step and full-SDN cost benchmarks, side by side in one run.

    sdn bench [loader|train|sdn-cost|all ...] [--model_depth 18 --sample_size 112 --sample_duration 16
              --batch_size N --rounds R --device cpu|cuda --compile --out bench_results ...]

Prints the tables (progress goes to stderr) and writes ``bench.json`` (every round of every
variant, the machine, the settings, the targets), ``bench.txt`` (the tables) and ``bench.png``
(a bar chart per part) to ``--out``. The defaults take a few minutes on a 2-core CPU; the
README-scale training configuration is ``--batch_size 32`` (and a GPU).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from sdn.errors import SdnError

PARTS = ("loader", "train", "sdn-cost", "scuba")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdn bench",
        description="Measure, side by side in one run: (a) clip loading per core, sdn against the original "
        "per-frame PIL pipeline and the decode-only ceiling; (b) training-step clips/s and GFLOP/s of each "
        "speed option against the measured matmul peak; (c) a full-SDN iteration against a baseline "
        "iteration. Variants run interleaved in rounds; tables show the best (default) or median round.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("parts", nargs="*", metavar="PART",
                        help=f"what to measure: {', '.join(PARTS)} or all (default: all)")
    parser.add_argument("--out", default="bench_results", help="directory for bench.json, bench.txt, bench.png")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved timed rounds after warm-up (default: 5 for the loader, 3 for the "
                        "training parts)")
    parser.add_argument("--statistic", default="best", choices=("best", "median"),
                        help="which round the tables show (JSON keeps every round)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="device of the training parts (default: cuda when available, else cpu); the loader "
                        "always measures CPU work")
    model = parser.add_argument_group("model and clips (the sdn train options of the same names)")
    model.add_argument("--model", default="resnet")
    model.add_argument("--model_depth", type=int, default=18)
    model.add_argument("--resnet_shortcut", default="A", choices=("A", "B"))
    model.add_argument("--n_classes", type=int, default=200)
    model.add_argument("--num_places_classes", type=int, default=365)
    model.add_argument("--sample_size", type=int, default=112)
    model.add_argument("--sample_duration", type=int, default=16)
    model.add_argument("--batch_size", type=int, default=4, help="clips per batch (per loader in the full mode)")
    train = parser.add_argument_group("training parts")
    train.add_argument("--variants", default="",
                       help="comma-separated speed options to compare with fp32 eager, each a '+'-joined set of "
                       "fp32, channels_last, bf16, fp16, cudnn_benchmark, compile (default: those that apply "
                       "to the device)")
    train.add_argument("--compile", action="store_true",
                       help="add torch.compile variants to the defaults (warm-up takes a minute or more on a CPU)")
    train.add_argument("--cost_variant", default="fp32", help="speed option of the sdn-cost part")
    train.add_argument("--threads", type=int, default=0, help="torch threads for the training parts (0: default)")
    train.add_argument("--matmul_size", type=int, default=0,
                       help="side of the peak-measuring matmul (0: 2048 on the CPU, 8192 on CUDA)")
    train.add_argument("--seed", type=int, default=1)
    loader = parser.add_argument_group("loader part")
    loader.add_argument("--clips", type=int, default=48, help="clips per timed round")
    loader.add_argument("--videos", type=int, default=8, help="frame folders to generate")
    loader.add_argument("--frames", type=int, default=64, help="frames per generated video")
    loader.add_argument("--width", type=int, default=320, help="frame width")
    loader.add_argument("--height", type=int, default=240, help="frame height")
    loader.add_argument("--draft", action="store_true",
                        help="also time a DCT-domain 1/2 decode (PIL draft mode) where the crop allows it, and "
                        "report its fidelity: an investigation, not sdn's loader")
    loader.add_argument("--video", action="store_true",
                        help="also compare reading clips from video files (generated 10 s H.264 videos, 1280x720 "
                        "and 320x240, keyframes every 0.5, 2 and 5 s): sequential decoding, seeking and frame "
                        "folders, and the per-video cost of counting frames (decoding, demuxing, the index file); "
                        "adds 3 to 6 minutes on 2 cores")
    loader.add_argument("--video_clips", type=int, default=8, help="random windows read per video per round "
                        "(with --video)")
    return parser


def _check(args: argparse.Namespace) -> None:
    unknown = [part for part in args.parts if part not in (*PARTS, "all")]
    if unknown:
        raise SdnError(f"unknown part {unknown[0]!r}: choose from {', '.join(PARTS)}, all")
    if args.rounds is not None and args.rounds < 1:
        raise SdnError(f"--rounds must be at least 1, got {args.rounds}")
    positive = ("model_depth", "n_classes", "num_places_classes", "sample_size", "sample_duration",
                "batch_size", "clips", "videos", "frames", "width", "height", "video_clips")
    for name in positive:
        if getattr(args, name) < 1:
            raise SdnError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.frames <= args.sample_duration:
        raise SdnError(f"--frames ({args.frames}) must be larger than --sample_duration ({args.sample_duration})")
    if args.threads < 0 or args.matmul_size < 0:
        raise SdnError("--threads and --matmul_size must be >= 0")
    from sdn.models.registry import check_model_choice

    check_model_choice(args.model, args.model_depth)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise SdnError(f"{args.out}: --out exists and is not a directory")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check(args)
    parts = list(PARTS) if not args.parts or "all" in args.parts else [part for part in PARTS if part in args.parts]

    import torch

    from sdn.bench import common, loader, train
    from sdn.bench import scuba as scuba_bench

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SdnError("--device cuda: no CUDA device is available")
    for variant in [args.cost_variant, *args.variants.split(",")]:  # before minutes of measuring
        if variant.strip():
            train.option_flags(variant.strip(), device)
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = common.machine_info(device)
    results: dict[str, Any] = {"machine": machine, "parts": parts, "statistic": args.statistic}
    texts = [f"machine: {common.describe_machine(machine)}"]
    panels = []
    load = machine.get("load_average_1_5_15min")
    if load and load[0] >= 0.5:
        texts.append(f"warning: load average {load[0]:.2f} on {machine['cores']} cores before starting: other "
                     "processes compete for the CPU, and multi-threaded steps suffer most (a thread that loses "
                     "its core stalls the others); compare with --threads 1, or rerun on an idle machine")
    print("\n".join(texts), flush=True)

    settings = train.TrainSettings(
        model=args.model, model_depth=args.model_depth, resnet_shortcut=args.resnet_shortcut,
        sample_size=args.sample_size, sample_duration=args.sample_duration, batch_size=args.batch_size,
        n_classes=args.n_classes, num_places_classes=args.num_places_classes, rounds=args.rounds or 3,
        statistic=args.statistic, device=device,
        variants=[v.strip() for v in args.variants.split(",") if v.strip()], compile=args.compile,
        cost_variant=args.cost_variant, matmul_size=args.matmul_size, seed=args.seed)
    runners = {
        "loader": lambda: loader.run(loader.LoaderSettings(
            sample_size=args.sample_size, sample_duration=args.sample_duration, width=args.width,
            height=args.height, videos=args.videos, frames=args.frames, clips=args.clips, rounds=args.rounds or 5,
            statistic=args.statistic, draft=args.draft, video=args.video, video_clips=args.video_clips,
            video_rounds=args.rounds or 3), progress=common.say),
        "train": lambda: train.run_train(settings, progress=common.say),
        "sdn-cost": lambda: train.run_sdn_cost(settings, progress=common.say),
        "scuba": lambda: scuba_bench.run(scuba_bench.ScubaSettings(
            videos=args.videos, frames=args.frames, width=args.width, height=args.height,
            rounds=args.rounds or 5, statistic=args.statistic), progress=common.say),
    }
    renderers = {"loader": (loader.render, loader.panel), "train": (train.render_train, train.panel_train),
                 "sdn-cost": (train.render_sdn_cost, train.panel_sdn_cost),
                 "scuba": (scuba_bench.render, scuba_bench.panel)}
    for part in parts:
        load_before = common.load_average()
        result = runners[part]()
        result["load_average_before_after"] = [load_before, common.load_average()]
        results[part] = result
        render, make_panel = renderers[part]
        text = render(result)
        load = result["load_average_before_after"]
        if load[0] and load[1]:
            text += f"\nload average (1 min) {load[0][0]:.2f} before, {load[1][0]:.2f} after"
        print("\n" + text, flush=True)
        texts.append(text)
        panels.append(make_panel(result))

    results["targets"] = [entry for part in parts for entry in results[part]["targets"]]
    summary = "targets:\n" + "\n".join("  " + common.describe_target(entry) for entry in results["targets"])
    print("\n" + summary)
    texts.append(summary)
    title = f"sdn bench — {machine['cpu']}" + (f", {machine['gpu']}" if "gpu" in machine else "") + \
        f" — {machine['date_utc']}"
    paths = common.write_outputs(args.out, results, "\n\n".join(texts), panels, title)
    print(f"\nwrote {', '.join(os.fspath(path) for path in paths.values())}")
    return 0
