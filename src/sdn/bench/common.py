"""What every benchmark part shares: interleaved timing, the machine description, tables, outputs.

Timing is interleaved: after warm-up, each round runs every variant once, the order rotating from
round to round, so that a burst of background load (this kind of machine is often shared) falls on
all variants alike instead of on whichever ran during it. Each variant keeps its wall time (a
monotonic clock) and the CPU time of the process for every round; a table shows the best (the
least disturbed round, the usual choice on a shared machine, where noise only ever adds time) or
the median of the rounds, as asked, and says which.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATISTICS = ("best", "median")


@dataclass
class Samples:
    """Per-round wall and process-CPU seconds of one variant."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def seconds(self, statistic: str) -> float:
        return _reduce(self.wall, statistic)

    def cpu_seconds(self, statistic: str) -> float:
        return _reduce(self.cpu, statistic)

    def as_dict(self) -> dict[str, Any]:
        return {"wall_s": self.wall, "cpu_s": self.cpu, "best_s": min(self.wall), "median_s": statistics.median(self.wall)}


def _reduce(values: Sequence[float], statistic: str) -> float:
    if statistic == "best":
        return min(values)
    if statistic == "median":
        return statistics.median(values)
    raise ValueError(f"statistic must be one of {STATISTICS}, not {statistic!r}")


def interleaved(runs: dict[str, Callable[[], Any]], rounds: int, *, warmup: int | dict[str, int] = 1,
                progress: Callable[[str], None] | None = None) -> dict[str, Samples]:
    """Time each callable once per round, in a rotating order, after its warm-up calls.

    ``warmup`` is a count for all, or per name (a compiled variant needs more). ``progress``
    receives a short line per warm-up and per round.
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    names = list(runs)
    for name in names:
        count = warmup.get(name, 1) if isinstance(warmup, dict) else warmup
        for _ in range(count):
            if progress:
                progress(f"warm-up: {name}")
            runs[name]()
    samples = {name: Samples() for name in names}
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            cpu_start, start = time.process_time(), time.perf_counter()
            runs[name]()
            samples[name].wall.append(time.perf_counter() - start)
            samples[name].cpu.append(time.process_time() - cpu_start)
        if progress:
            progress(f"round {round_number + 1}/{rounds} done")
    return samples


# ----------------------------------------------------------------------------------------------
# The machine


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_info(device: str) -> dict[str, Any]:
    """What a reader needs to compare numbers: processor, cores, libraries, GPU, load, date."""
    import PIL
    import torch
    import torchvision

    info: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
        "device": device,
        "load_average_1_5_15min": load_average(),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        # PyTorch's defaults: convolutions may use TF32 tensor cores, float32 matmuls do not
        info["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        info["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    return info


def describe_machine(info: dict[str, Any]) -> str:
    line = (f"{info['cpu']} ({info['cpu_capability']}), {info['cores']} cores, torch {info['torch']}, "
            f"torchvision {info['torchvision']}, Pillow {info['pillow']}, Python {info['python']}")
    if "gpu" in info:
        line += f"; GPU {info['gpu']} (CUDA {info['cuda']}, cuDNN {info['cudnn']})"
    load = info.get("load_average_1_5_15min")
    return line + (f"; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start; {info['date_utc']}"
                   if load else f"; {info['date_utc']}")


# ----------------------------------------------------------------------------------------------
# Tables and targets


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(cell) for cell in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for number, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        lines.append("  ".join(parts).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def number(value: float) -> str:
    """Three significant figures at most, without exponents for the sizes a benchmark meets."""
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 0.01 else f"{value:.2g}"


def target(name: str, value: float, threshold: float, *, at_least: bool) -> dict[str, Any]:
    """A target from the issues, with whether this run met it."""
    met = value >= threshold if at_least else value <= threshold
    return {"name": name, "value": value, "threshold": threshold, "at_least": at_least, "met": bool(met)}


def describe_target(entry: dict[str, Any]) -> str:
    sign = ">=" if entry["at_least"] else "<="
    verdict = "met" if entry["met"] else "NOT met"
    return f"{entry['name']}: {entry['value']:.2f} (target {sign} {entry['threshold']:g}) -> {verdict}"



# ----------------------------------------------------------------------------------------------
# Outputs


@dataclass
class Panel:
    """One bar chart: a bar per label, with an annotation (a ratio) written beside each bar."""

    title: str
    xlabel: str
    labels: list[str]
    values: list[float]
    notes: list[str]


def chart_png(panels: Sequence[Panel], title: str) -> bytes:
    """The panels stacked vertically, as PNG bytes (matplotlib's Agg canvas, no display needed)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    heights = [0.9 + 0.38 * len(panel.labels) for panel in panels]
    figure = Figure(figsize=(8.5, sum(heights) + 0.6), dpi=100)
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(len(panels), 1, height_ratios=heights)
    for index, panel in enumerate(panels):
        axes = figure.add_subplot(grid[index])
        positions = list(range(len(panel.labels)))[::-1]
        bars = axes.barh(positions, panel.values, color=[f"C{i % 10}" for i in range(len(panel.values))])
        axes.set_yticks(positions, panel.labels)
        axes.set_xlabel(panel.xlabel)
        axes.set_title(panel.title, fontsize=10, loc="left")
        top = max(panel.values) if panel.values else 1.0
        axes.set_xlim(0, top * 1.3)
        for bar, note in zip(bars, panel.notes):
            axes.text(bar.get_width() + top * 0.01, bar.get_y() + bar.get_height() / 2, note, va="center", fontsize=8)
        axes.grid(axis="x", alpha=0.3)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_outputs(out: str | os.PathLike, results: dict[str, Any], text: str, panels: Sequence[Panel],
                  title: str) -> dict[str, Path]:
    """``bench.json`` (every number, every round), ``bench.txt`` (the tables) and ``bench.png``."""
    from sdn.io import atomic_write_bytes, atomic_write_json, atomic_write_text

    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / "bench.json", "text": directory / "bench.txt", "png": directory / "bench.png"}
    atomic_write_json(paths["json"], results, indent=1)
    atomic_write_text(paths["text"], text + "\n")
    atomic_write_bytes(paths["png"], chart_png(panels, title))
    return paths


def say(message: str) -> None:
    """Progress to stderr, so that stdout holds only the tables."""
    print(message, file=sys.stderr, flush=True)
