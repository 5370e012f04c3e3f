"""Answers to the questions the CLI asks, as plain data (the CLI only parses and prints).

Each function returns a dict ready for ``json.dumps``; tables are rendered from the same dicts.
"""

from __future__ import annotations

from collections.abc import Sequence

from roofline.cost import fits_in_memory, step_cost
from roofline.planner import GammaPlanner
from roofline.speculation import (
    Acceptance,
    best_gamma,
    classic_speedup,
    expected_tokens_for,
    operations_factor,
)


def _acceptance_json(acceptance: Acceptance) -> float | list[float]:
    return float(acceptance) if isinstance(acceptance, (int, float)) else [float(p) for p in acceptance]


def speedup_report(
    acceptance: Acceptance,
    gamma: int,
    draft_cost: float,
    classic: bool,
    planner: GammaPlanner | None = None,
    batch: int = 1,
    seq_len: int = 4096,
) -> dict:
    """S(γ) for one γ. Without a planner (no model/hardware) verification costs one target
    step, where the roofline form and Leviathan et al.'s Thm 3.8 coincide."""
    expected = expected_tokens_for(acceptance, gamma)
    report = {
        "mode": "classic" if classic or planner is None else "roofline",
        "acceptance": _acceptance_json(acceptance),
        "gamma": gamma,
        "draft_cost": draft_cost,
        "expected_tokens": expected,
    }
    if classic or planner is None:
        report["speedup"] = classic_speedup(acceptance, gamma, draft_cost)
        report["verify_cost_ratio"] = 1.0
        report["operations_factor"] = operations_factor(acceptance, gamma, draft_cost)
        return report
    curve = planner.speedup_curve(batch, seq_len, acceptance)
    report.update(_planner_context(planner, batch, seq_len))
    report["speedup"] = curve[gamma]
    report["verify_cost_ratio"] = planner.step_seconds(batch, gamma + 1, seq_len) / planner.step_seconds(
        batch, 1, seq_len
    )
    return report


def optimal_report(
    acceptance: Acceptance,
    draft_cost: float,
    gamma_max: int,
    classic: bool,
    planner: GammaPlanner | None = None,
    batch: int = 1,
    seq_len: int = 4096,
) -> dict:
    """γ* = argmax over 0..γ_max and its speedup, with the whole S(γ) curve."""
    if classic or planner is None:
        curve = [classic_speedup(acceptance, g, draft_cost) for g in range(gamma_max + 1)]
        mode, context = "classic", {}
    else:
        curve = planner.speedup_curve(batch, seq_len, acceptance)
        mode, context = "roofline", _planner_context(planner, batch, seq_len)
    gamma, speedup = best_gamma(curve)
    return {
        "mode": mode,
        "acceptance": _acceptance_json(acceptance),
        "draft_cost": draft_cost,
        "gamma_max": len(curve) - 1,
        **context,
        "gamma": gamma,
        "speedup": speedup,
        "curve": curve,
    }


def _planner_context(planner: GammaPlanner, batch: int, seq_len: int) -> dict:
    return {"model": planner.model.name, "hardware": planner.hardware.name, "batch": batch, "seq_len": seq_len}


def estimate_report(planner: GammaPlanner, batches: Sequence[int], seq_len: int, acceptance: Acceptance) -> dict:
    """Per batch size: decode step time, bound, γ*, speedup, and whether the KV cache fits."""
    rows = []
    for batch in batches:
        cost = step_cost(planner.model, planner.hardware, batch, 1, seq_len)
        step_seconds = planner.step_seconds(batch, 1, seq_len)
        gamma, speedup = planner.optimal(batch, seq_len, acceptance)
        rows.append(
            {
                "batch": batch,
                "step_ms": step_seconds * 1e3,
                "tokens_per_second": batch / step_seconds,
                "bound": cost.bound,
                "compute_bound_fraction": cost.compute_bound_fraction,
                "gamma": gamma,
                "speedup": speedup,
                "tokens_per_second_with_sd": batch * speedup / step_seconds,
                "fits_in_memory": fits_in_memory(planner.model, planner.hardware, batch, seq_len),
            }
        )
    return {**_settings(planner, seq_len, acceptance), "rows": rows}


def _settings(planner: GammaPlanner, seq_len: int, acceptance: Acceptance) -> dict:
    return {
        "model": planner.model.name,
        "hardware": planner.hardware.name,
        "weight_dtype": planner.model.weight_dtype,
        "kv_cache_dtype": planner.model.kv_cache_dtype,
        "seq_len": seq_len,
        "acceptance": _acceptance_json(acceptance),
        "draft_cost": planner.draft_cost_ratio,
        "draft_model": planner.draft_model.name if planner.draft_model else None,
        "draft_block_size": planner.draft_block_size,
        "gamma_max": planner.gamma_max,
        "overhead_seconds": planner.overhead_seconds,
        "scale": planner.scale,
        "per_token_seconds": planner.per_token_seconds,
    }


def crossover_report(
    planner: GammaPlanner,
    seq_len: int,
    acceptance: Acceptance,
    max_batch: int = 4096,
    min_speedup: float = 1.0,
) -> dict:
    """The largest batch at which speculation still pays (best speedup > ``min_speedup``).

    Doubles the batch until it stops paying, then bisects; assumes one crossing (speedup
    falls with batch size once the linear layers turn compute-bound)."""

    def pays(batch: int) -> bool:
        return planner.optimal(batch, seq_len, acceptance)[1] > min_speedup

    settings = {**_settings(planner, seq_len, acceptance), "min_speedup": min_speedup, "max_batch": max_batch}
    if not pays(1):
        return {**settings, "crossover_batch": 0, "pays_up_to_max_batch": False, "note": "speculation never pays"}
    low = 1
    while low < max_batch and pays(min(2 * low, max_batch)):
        low = min(2 * low, max_batch)
    if low >= max_batch:
        return {
            **settings,
            "crossover_batch": None,
            "pays_up_to_max_batch": True,
            "note": f"pays up to batch {max_batch}",
        }
    high = min(2 * low, max_batch)
    while high - low > 1:
        middle = (low + high) // 2
        if pays(middle):
            low = middle
        else:
            high = middle
    gamma, speedup = planner.optimal(low, seq_len, acceptance)
    return {
        **settings,
        "crossover_batch": low,
        "pays_up_to_max_batch": False,
        "gamma_at_crossover": gamma,
        "speedup_at_crossover": speedup,
        "first_batch_not_paying": high,
    }


__all__ = ["crossover_report", "estimate_report", "optimal_report", "speedup_report"]
