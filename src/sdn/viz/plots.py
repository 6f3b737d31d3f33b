"""Training curves from a run's ``train.log`` and ``val.log`` (``sdn plot``).

The logs are tab-separated with a header row, and their columns depend on the mode (baseline:
``epoch loss acc lr``; scene-adversarial: ``loss total``, ``loss act``, ``loss place``,
``acc act``, ``acc place``; full mode adds ``loss mask``, ``acc mask``, ``masked share``;
``val.log`` has no ``lr``). So nothing here knows a mode: every column other than ``epoch`` is
placed by its name — ``loss*`` with the losses, ``acc*`` with the accuracies, ``lr`` on its own,
anything else under "other" — and a panel appears only when some log has its columns.
Training and validation share a colour per column (solid and dashed), so they compare at a glance.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sdn.errors import SdnError
from sdn.io import atomic_write_bytes

PANELS = ("loss", "accuracy", "learning rate", "other")
PANEL_SIZE = (5.0, 3.6)  # inches per panel
DPI = 100
LOG_SCALE_RATIO = 100.0  # a positive series spanning more than this factor is drawn on a log axis


@dataclass(frozen=True)
class Log:
    """One log file: epochs and, per column, one value per epoch."""

    path: str
    epochs: list[int]
    series: dict[str, list[float]]


def _cells(line: str, width: int, path: str, number: int) -> list[str]:
    cells = line.rstrip("\r\n").split("\t")
    if len(cells) != width:
        raise SdnError(f"{path}:{number}: expected {width} tab-separated values (as the header), found {len(cells)}")
    return cells


def _number(text: str, column: str, path: str, number: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise SdnError(f"{path}:{number}: column {column!r}: {text[:40]!r} is not a number") from None


def read_log(path: str | os.PathLike) -> Log:
    """Parse a log; a repeated epoch (a resumed run appends) keeps its last row."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            lines = [line for line in handle if line.strip()]
    except FileNotFoundError:
        raise SdnError(f"{path}: log file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SdnError(f"{path}: cannot read log file ({error})") from None
    if not lines:
        raise SdnError(f"{path}: empty log file (no header row)")
    header = lines[0].rstrip("\r\n").split("\t")
    if header[0] != "epoch" or len(header) < 2:
        raise SdnError(f"{path}: not an sdn log (the header must start with 'epoch' and name at least one "
                       f"value column, found {lines[0].strip()[:60]!r})")
    rows: dict[int, list[float]] = {}
    for number, line in enumerate(lines[1:], start=2):
        cells = _cells(line, len(header), path, number)
        values = [_number(text, column, path, number) for column, text in zip(header, cells)]
        if not values[0].is_integer():
            raise SdnError(f"{path}:{number}: epoch {values[0]} is not a whole number")
        rows[int(values[0])] = values[1:]
    epochs = sorted(rows)
    return Log(path, epochs, {column: [rows[epoch][i] for epoch in epochs] for i, column in enumerate(header[1:])})


def panel_of(column: str) -> str:
    """Which panel a log column belongs to, from its name alone."""
    if column == "lr":
        return "learning rate"
    if column.startswith("loss"):
        return "loss"
    if column.startswith("acc"):
        return "accuracy"
    return "other"


def _wants_log_scale(panel: str, values: list[float]) -> bool:
    """Learning rates (decays by factors of ten) and losses spanning orders of magnitude, when all positive."""
    finite = [value for value in values if math.isfinite(value)]
    if not finite or min(finite) <= 0:
        return False
    return panel == "learning rate" or (panel == "loss" and max(finite) / min(finite) > LOG_SCALE_RATIO)


def _draw_panel(axes, panel: str, logs: dict[str, Log]) -> None:
    columns = sorted({column for log in logs.values() for column in log.series if panel_of(column) == panel})
    colours = {column: f"C{i % 10}" for i, column in enumerate(columns)}
    drawn: list[float] = []
    for phase, log in logs.items():
        style = "o-" if phase == "train" else "s--"
        for column in columns:
            if column in log.series:
                axes.plot(log.epochs, log.series[column], style, color=colours[column], label=f"{phase} {column}",
                          markersize=4)
                drawn.extend(log.series[column])
    if _wants_log_scale(panel, drawn):
        axes.set_yscale("log")
    axes.set_title(panel)
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)


def curves_figure(logs: dict[str, Log], title: str) -> Figure:
    """One panel per group that has data; ``logs`` maps ``train``/``val`` to their log."""
    panels = [panel for panel in PANELS if any(panel_of(column) == panel and values
                                               for log in logs.values() for column, values in log.series.items())]
    if not panels:
        raise SdnError(f"{title}: the logs have no rows yet; nothing to plot")
    figure = Figure(figsize=(PANEL_SIZE[0] * len(panels), PANEL_SIZE[1]), dpi=DPI, layout="constrained")
    for axes, panel in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        _draw_panel(axes, panel, logs)
    figure.suptitle(title)
    return figure


def plot_run(result_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Draw ``result_dir``'s ``train.log``/``val.log`` (either may be absent, not both) to a PNG; returns its path."""
    result_dir = Path(result_dir)
    if not result_dir.is_dir():
        raise SdnError(f"{result_dir}: no such result directory")
    found = {phase: result_dir / f"{phase}.log" for phase in ("train", "val") if (result_dir / f"{phase}.log").exists()}
    if not found:
        raise SdnError(f"{result_dir}: neither train.log nor val.log found (is this an 'sdn train' --result_path?)")
    logs = {phase: read_log(path) for phase, path in found.items()}
    figure = curves_figure(logs, str(result_dir))
    out_path = Path(out) if out is not None else result_dir / "curves.png"
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    atomic_write_bytes(out_path, buffer.getvalue())
    return out_path
