"""The benchmarks' one plotting helper: `--plot PATH.png` draws a benchmark's figures.

matplotlib with the Agg backend (no display, no browser), imported only when a plot is asked
for, so that a benchmark runs without it. A figure is one row of panels, each a bar chart
(grouped bars, one group per label), horizontal bars or lines; a footnote says when, where
and with which arguments it was measured, so that a plot carries the sizes it was made with.

    from plotting import Panel, add_plot_argument, save_plot
    add_plot_argument(parser)
    ...
    if args.plot:
        save_plot(args.plot, "Title", [Panel("air-s per wall-s", "bar", labels, {"x": values})])
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Panel:
    """One chart. `kind`: "bar" (a group of bars per label, one bar per series), "barh" (one
    series, one horizontal bar per label) or "line" (labels are the x values)."""

    title: str
    kind: str
    labels: list
    series: dict[str, list[float]]
    xlabel: str = ""
    ylabel: str = ""
    target: float | None = None  # a reference line: the target or the old figure
    target_label: str = ""
    log: bool = False
    value_format: str = "{:.3g}"  # printed on each bar; "" prints none
    notes: list[str] = field(default_factory=list)  # one per label, printed under the bar


def add_plot_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="PATH.png",
        help="also draw the results into this PNG (needs matplotlib: the dev extra)",
    )


def measured_on() -> str:
    """When, on what and with which arguments: the footnote of every figure."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    script = Path(sys.argv[0]).name
    arguments = " ".join(shlex.quote(a) for a in sys.argv[1:] if not a.endswith(".png"))
    arguments = arguments.replace("--plot", "").strip()
    return f"measured {now} on {os.cpu_count()} cores: {script} {arguments}".rstrip()


def save_plot(path: Path, title: str, panels: list[Panel], note: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = max(5.0, 4.6 * len(panels))
    figure, axes = plt.subplots(1, len(panels), figsize=(width, 4.2), squeeze=False)
    for axis, panel in zip(axes[0], panels, strict=True):
        _draw(axis, panel)
    figure.suptitle(title, fontsize=12)
    footnote = measured_on() + (f"\n{note}" if note else "")
    figure.text(0.01, 0.01, footnote, fontsize=7, color="0.35", ha="left", va="bottom")
    figure.tight_layout(rect=(0, 0.07 + 0.025 * footnote.count("\n"), 1, 0.95))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"plot: {path}", flush=True)
    return path


def _draw(axis, panel: Panel) -> None:
    labels = [str(label) for label in panel.labels]
    if panel.kind == "line":
        for name, values in panel.series.items():
            axis.plot(panel.labels, values, marker="o", markersize=3, label=name)
        if len(panel.labels) <= 12:
            axis.set_xticks(panel.labels)
    elif panel.kind == "barh":
        ((name, values),) = panel.series.items()
        bars = axis.barh(labels, values, color="tab:blue")
        axis.invert_yaxis()
        _label_bars(axis, bars, values, panel.value_format, horizontal=True)
    else:
        count = len(panel.series)
        width = 0.8 / max(1, count)
        for index, (name, values) in enumerate(panel.series.items()):
            positions = [n + (index - (count - 1) / 2) * width for n in range(len(labels))]
            bars = axis.bar(positions, values, width, label=name)
            _label_bars(axis, bars, values, panel.value_format, horizontal=False)
        long = max(map(len, labels), default=0) > 12
        axis.set_xticks(
            range(len(labels)),
            labels,
            fontsize=8,
            rotation=20 if long else 0,
            ha="right" if long else "center",
        )
    if panel.target is not None:
        line = axis.axvline if panel.kind == "barh" else axis.axhline
        line(panel.target, color="tab:red", linestyle="--", linewidth=1, label=panel.target_label)
    if panel.log:
        (axis.set_xscale if panel.kind == "barh" else axis.set_yscale)("log")
    elif panel.kind == "line":
        axis.set_ylim(bottom=0)  # bars start at 0; lines too, so that no change looks large
    axis.set_title(panel.title, fontsize=10)
    axis.set_xlabel(panel.xlabel, fontsize=9)
    axis.set_ylabel(panel.ylabel, fontsize=9)
    axis.tick_params(labelsize=8)
    axis.grid(axis="x" if panel.kind == "barh" else "y", alpha=0.3)
    if len(panel.series) > 1 or panel.target_label:
        axis.legend(fontsize=7)


def _label_bars(axis, bars, values, value_format: str, horizontal: bool) -> None:
    if not value_format:
        return
    texts = [value_format.format(value) for value in values]
    axis.bar_label(bars, texts, fontsize=7, padding=2)
    if horizontal:
        axis.margins(x=0.15)
    else:
        axis.margins(y=0.12)
