"""Pictures of the roofline model: where speculation pays, with which γ, and why.

One PNG, four panels: γ* and speedup heatmaps over batch size × acceptance, speedup-vs-γ
curves for chosen batch sizes, and the verification cost C(B, γ+1, S) / C(B, 1, S) behind them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from roofline.planner import GammaPlanner
from roofline.speculation import Acceptance

HEATMAP_ACCEPTANCES = tuple(round(0.30 + 0.05 * i, 2) for i in range(14))  # 0.30 … 0.95


def heatmap_batches(max_batch: int) -> list[int]:
    """Powers of two from 1 up to ``max_batch`` (and ``max_batch`` itself)."""
    batches = [1 << i for i in range(max_batch.bit_length()) if 1 << i <= max_batch]
    return batches if batches[-1] == max_batch else [*batches, max_batch]


def gamma_speedup_grid(
    planner: GammaPlanner, seq_len: int, batches: Sequence[int], acceptances: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """γ* and S(γ*) for every (acceptance, batch): arrays of shape (len(acceptances), len(batches))."""
    gammas = np.zeros((len(acceptances), len(batches)), dtype=int)
    speedups = np.ones((len(acceptances), len(batches)))
    for i, alpha in enumerate(acceptances):
        for j, batch in enumerate(batches):
            gammas[i, j], speedups[i, j] = planner.optimal(batch, seq_len, alpha)
    return gammas, speedups


def plot_overview(
    planner: GammaPlanner,
    seq_len: int,
    acceptance: Acceptance,
    curve_batches: Sequence[int],
    max_batch: int,
    output: str | Path,
) -> Path:
    """Write the four-panel overview PNG to ``output`` and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = heatmap_batches(max_batch)
    acceptances = HEATMAP_ACCEPTANCES
    gammas, speedups = gamma_speedup_grid(planner, seq_len, batches, acceptances)

    figure, axes = plt.subplots(2, 2, figsize=(15, 11))
    draft = f"draft cost {planner.draft_cost_ratio:g}"
    if planner.draft_model is not None:
        draft += f" + {planner.draft_model.name}"
    if planner.draft_block_size:
        draft += f" (block {planner.draft_block_size})"
    figure.suptitle(
        f"{planner.model.name} on {planner.hardware.name} — seq {seq_len}, {draft}, γ ≤ {planner.gamma_max}, "
        f"t0 {planner.overhead_seconds * 1e3:g} ms, scale {planner.scale:g}"
        + (f", {planner.per_token_seconds * 1e3:g} ms/token" if planner.per_token_seconds else ""),
        fontsize=13,
    )
    _heatmap(axes[0, 0], gammas, batches, acceptances, "γ* (0 = do not speculate)", "viridis", "{:d}")
    _heatmap(axes[0, 1], speedups, batches, acceptances, "speedup at γ* (x)", "magma", "{:.2f}", vmin=1.0)

    gamma_axis = np.arange(planner.gamma_max + 1)
    curves, ratios = axes[1, 0], axes[1, 1]
    for batch in curve_batches:
        curve = planner.speedup_curve(batch, seq_len, acceptance)
        (line,) = curves.plot(gamma_axis, curve, marker="o", markersize=3, label=f"B = {batch}")
        best = int(np.argmax(curve))
        curves.plot([best], [curve[best]], marker="*", markersize=14, color=line.get_color())
        ratio = [
            planner.step_seconds(batch, g + 1, seq_len) / planner.step_seconds(batch, 1, seq_len) for g in gamma_axis
        ]
        ratios.plot(gamma_axis, ratio, marker="o", markersize=3, color=line.get_color(), label=f"B = {batch}")
    alpha_text = f"{acceptance:g}" if isinstance(acceptance, (int, float)) else ",".join(f"{p:g}" for p in acceptance)
    curves.axhline(1.0, color="grey", linewidth=1, linestyle="--")
    curves.set(
        title=f"speedup vs γ at acceptance {alpha_text} (★ = γ*)",
        xlabel="γ (draft tokens per step)",
        ylabel="speedup (x)",
    )
    curves.legend()
    curves.grid(alpha=0.3)
    ratios.plot(gamma_axis, gamma_axis + 1, color="grey", linewidth=1, linestyle="--", label="compute-bound: γ + 1")
    ratios.set(
        title="verification cost C(B, γ+1, S) / C(B, 1, S)",
        xlabel="γ (draft tokens per step)",
        ylabel="target decode steps",
    )
    ratios.legend()
    ratios.grid(alpha=0.3)

    figure.tight_layout(rect=(0, 0, 1, 0.96))
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _heatmap(axis, values, batches, acceptances, title, colormap, fmt, vmin=None) -> None:
    image = axis.imshow(values, origin="lower", aspect="auto", cmap=colormap, vmin=vmin)
    axis.figure.colorbar(image, ax=axis)
    axis.set_xticks(range(len(batches)), [str(b) for b in batches])
    axis.set_yticks(range(len(acceptances)), [f"{a:.2f}" for a in acceptances])
    axis.set(title=title, xlabel="batch size", ylabel="acceptance α")
    middle = (np.nanmax(values) + np.nanmin(values)) / 2
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            value = values[i, j]
            text = fmt.format(int(value)) if fmt == "{:d}" else fmt.format(float(value))
            axis.text(j, i, text, ha="center", va="center", fontsize=7, color="black" if value > middle else "white")


__all__ = ["gamma_speedup_grid", "heatmap_batches", "plot_overview"]
