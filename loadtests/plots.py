"""PNG plots of a sweep report (matplotlib, Agg backend), four per workload:

throughput_W.png  output tokens/s vs concurrency, one line per mode
speedup_W.png     speedup over `off` vs concurrency, the crossover marked
latency_W.png     TTFT, TPOT, ITL and end-to-end p50 / p99 vs concurrency
roofline_W.png    roofline-predicted vs measured speedup (scatter, and both vs concurrency)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FixedLocator, NullLocator

from loadtests.report import ROOFLINE_TARGET, describe_crossover

DPI = 110


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "workload"


def _label(mode: str) -> str:
    return mode if len(mode) <= 28 else mode[:25] + "..."


def mode_styles(modes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """A fixed colour and line style per mode, shared by every plot."""
    palette = plt.get_cmap("tab10").colors
    markers = "osD^v<>ph*"
    styles = {}
    for index, mode in enumerate(modes):
        styles[mode] = {
            "color": "black" if mode == "off" else palette[index % len(palette)],
            "marker": markers[index % len(markers)],
            "linestyle": "--" if mode.startswith("vllm:") else "-",
            "linewidth": 2.2 if mode == "adaptive" else 1.5,
        }
    return styles


def _log2_axis(axis, levels: Sequence[int]) -> None:
    axis.set_xscale("log", base=2)
    axis.xaxis.set_major_locator(FixedLocator(list(levels)))
    axis.xaxis.set_minor_locator(NullLocator())
    axis.set_xticklabels([str(c) for c in levels])
    axis.set_xlabel("concurrency (closed-loop clients)")
    axis.grid(True, which="major", alpha=0.3)


def _series(rows, workload: str, mode: str, key: str) -> tuple[list[int], list[float]]:
    points = sorted(
        (r["concurrency"], r[key]) for r in rows
        if r["workload"] == workload and r["mode"] == mode and r.get(key) is not None
    )  # fmt: skip
    return [c for c, _ in points], [v for _, v in points]


def plot_throughput(analysis, workload: str, path: Path, styles) -> None:
    rows, levels = analysis["rows"], analysis["workloads"][workload]["levels"]
    figure, axis = plt.subplots(figsize=(8, 5))
    for mode in analysis["modes"]:
        xs, ys = _series(rows, workload, mode, "output_tok_s")
        if xs:
            axis.plot(xs, ys, label=_label(mode), **styles[mode])
    _log2_axis(axis, levels)
    axis.set_ylabel("output tokens/s")
    axis.set_ylim(bottom=0)
    axis.set_title(f"{workload}: throughput vs concurrency")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def plot_speedup(analysis, workload: str, path: Path, styles) -> None:
    rows, summary = analysis["rows"], analysis["workloads"][workload]
    levels = summary["levels"]
    figure, axis = plt.subplots(figsize=(8, 5))
    axis.axhline(1.0, color="black", linewidth=1.2, label="off (1.0x)")
    for mode in analysis["modes"]:
        if mode in ("off", "vllm:off"):
            continue
        xs, ys = _series(rows, workload, mode, "speedup")
        if xs:
            axis.plot(xs, ys, label=_label(mode), **styles[mode])
    crossover = summary["crossover"]
    if crossover.get("kind") == "between":
        axis.axvspan(crossover["low"], crossover["high"], color="tab:red", alpha=0.08)
        axis.axvline(crossover["interpolated"], color="tab:red", linestyle=":", linewidth=1.8,
                     label=f"crossover ≈ {crossover['interpolated']:.1f}")  # fmt: skip
    _log2_axis(axis, levels)
    axis.set_ylabel("speedup over off (output tokens/s ratio)")
    axis.set_title(
        f"{workload}: speedup over off\ncrossover {describe_crossover(crossover)}", fontsize=10
    )
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def plot_latency(analysis, workload: str, path: Path, styles) -> None:
    rows, levels = analysis["rows"], analysis["workloads"][workload]["levels"]
    panels = (("ttft", "time to first token"), ("tpot", "time per output token"),
              ("itl", "inter-token latency"), ("e2e", "end-to-end latency"))  # fmt: skip
    figure, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
    for axis, (key, title) in zip(axes.flat, panels):
        for mode in analysis["modes"]:
            for percentile, alpha, style in (("p50", 1.0, {}), ("p99", 0.45, {"marker": None})):
                xs, ys = _series(rows, workload, mode, f"{key}_{percentile}_ms")
                if xs:
                    kwargs = {**styles[mode], **style}
                    label = _label(mode) if percentile == "p50" else None
                    axis.plot(xs, ys, alpha=alpha, label=label, **kwargs)
        _log2_axis(axis, levels)
        axis.set_yscale("log")
        axis.set_ylabel("ms")
        axis.set_title(f"{title} (solid p50, faint p99)", fontsize=10)
    axes.flat[0].legend(fontsize=8)
    figure.suptitle(f"{workload}: latency percentiles vs concurrency")
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def plot_roofline(analysis, workload: str, path: Path, styles) -> bool:
    rows = [r for r in analysis["rows"]
            if r["workload"] == workload and r["roofline_error"] is not None and not r["peer"]]  # fmt: skip
    if not rows:
        return False
    levels = analysis["workloads"][workload]["levels"]
    figure, (scatter, lines) = plt.subplots(1, 2, figsize=(13, 5.5))
    values = [r["speedup"] for r in rows] + [r["roofline_speedup"] for r in rows]
    low, high = min(values) * 0.95, max(values) * 1.05
    grid = [low, high]
    scatter.plot(grid, grid, color="black", linewidth=1, label="predicted = measured")
    scatter.fill_between(grid, [v * (1 - ROOFLINE_TARGET) for v in grid], [v * (1 + ROOFLINE_TARGET) for v in grid],
                         color="grey", alpha=0.15, label=f"±{ROOFLINE_TARGET:.0%}")  # fmt: skip
    for mode in analysis["modes"]:
        chosen = [r for r in rows if r["mode"] == mode]
        if not chosen:
            continue
        scatter.scatter([r["speedup"] for r in chosen], [r["roofline_speedup"] for r in chosen],
                        color=styles[mode]["color"], marker=styles[mode]["marker"], label=_label(mode), s=40)  # fmt: skip
        for r in chosen:
            scatter.annotate(str(r["concurrency"]), (r["speedup"], r["roofline_speedup"]), fontsize=7,
                             xytext=(3, 3), textcoords="offset points")  # fmt: skip
        xs, measured = _series(rows, workload, mode, "speedup")
        _, predicted = _series(rows, workload, mode, "roofline_speedup")
        lines.plot(xs, measured, label=f"{_label(mode)} measured", **styles[mode])
        lines.plot(xs, predicted, label=f"{_label(mode)} roofline",
                   **{**styles[mode], "linestyle": ":", "marker": "x"})  # fmt: skip
    scatter.set_xlim(low, high)
    scatter.set_ylim(low, high)
    scatter.set_xlabel("measured speedup over off")
    scatter.set_ylabel("roofline-predicted speedup")
    median = analysis["roofline"]["median_abs_error"]
    scatter.set_title(f"predicted vs measured (labels: concurrency); median |error| {median:.1%} (all workloads)",
                      fontsize=10)  # fmt: skip
    scatter.grid(True, alpha=0.3)
    scatter.legend(fontsize=8)
    lines.axhline(1.0, color="black", linewidth=1)
    _log2_axis(lines, levels)
    lines.set_ylabel("speedup over off")
    lines.set_title("measured (solid) and predicted (dotted) by concurrency", fontsize=10)
    lines.legend(fontsize=7, ncol=2)
    figure.suptitle(f"{workload}: roofline model vs measurement")
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return True


def plot_all(analysis: dict[str, Any], out_dir: Path) -> dict[str, list[str]]:
    """Write every plot; return the file names per workload."""
    styles = mode_styles(analysis["modes"])
    written: dict[str, list[str]] = {}
    for workload in analysis["workloads"]:
        slug = _slug(workload)
        files = []
        for name, plot in (("throughput", plot_throughput), ("speedup", plot_speedup),
                           ("latency", plot_latency), ("roofline", plot_roofline)):  # fmt: skip
            path = out_dir / f"{name}_{slug}.png"
            if plot(analysis, workload, path, styles) is not False:
                files.append(path.name)
        written[workload] = files
    return written
