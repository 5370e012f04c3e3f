"""Turn a saved sweep (``sweep.json``) into its report: every point as JSON and CSV, the
derived figures (speedup over ``off``, crossover, the controller's ratio to fixed settings,
the roofline check, the gateway's overhead over vLLM's own server), PNG plots and a markdown
summary. ``specgate loadtest report DIR`` rebuilds all of it from ``DIR/sweep.json``.

Roofline check. At each speculative point the roofline predicts the speedup over ``off`` from
what was measured there: the planner for the served model's config.json on the controller's
hardware preset, with the calibration (t0, per-token cost, scale) the controller reported after
the point, priced at the measured decode batch (client timestamps, Little's law) and mean
context length. Acceptance comes from the point's ``/metrics`` delta, per decode request-step
(a request-step with no ngram match drafts nothing): with ``steps`` = output tokens after the
first − accepted tokens, ``D`` = drafted tokens / steps and ``a_k`` = accepted at position k /
steps, the prediction is ``(1 + Σ a_k) / R(B, 1 + D)`` where ``R`` is the calibrated step cost
relative to a plain decode step, interpolated at fractional query lengths and batch sizes (the
controller prices its per-request allocations the same way). Measured speedup is the mode's
output tokens/s over ``off``'s at the same workload and concurrency.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.sweep import SWEEP_FILE, SWEEP_FORMAT

REPORT_JSON = "report.json"
POINTS_CSV = "points.csv"
SUMMARY_MD = "summary.md"
ROOFLINE_TARGET = 0.10
"""Median absolute relative error the roofline check aims at."""
LATENCIES = ("ttft", "tpot", "itl", "e2e")
PERCENTILES = ("p50", "p90", "p99")


def load_sweep(path: Path) -> dict[str, Any]:
    """``path``: a sweep folder or its sweep.json."""
    file = path / SWEEP_FILE if path.is_dir() else path
    data = json.loads(file.read_text())
    if data.get("format") != SWEEP_FORMAT:
        raise ValueError(f"{file} is not a {SWEEP_FORMAT} file (format {data.get('format')!r})")
    return data


# ---------------------------------------------------------------------------------------------
# Roofline prediction
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class RooflineContext:
    """The planner for the sweep's model and hardware, without calibration."""

    planner: Any  # roofline.planner.GammaPlanner
    model_name: str
    hardware_name: str

    @classmethod
    def from_sweep(cls, sweep: dict[str, Any], gamma_max: int) -> RooflineContext | None:
        from roofline import load_hardware
        from roofline.planner import GammaPlanner
        from roofline.specs import HardwareSpec, model_from_hf_config

        model, hardware = sweep.get("model") or {}, sweep.get("hardware") or {}
        if not model.get("config") or not hardware.get("preset"):
            return None
        name = model.get("name") or "model"
        model_spec = model_from_hf_config(model["config"], name=name, source=f"{name}/config.json")
        spec = hardware.get("spec")
        hardware_spec = HardwareSpec(**spec) if spec else load_hardware(hardware["preset"])
        planner = GammaPlanner(model_spec, hardware_spec, gamma_max)
        return cls(planner, model_spec.name, hardware_spec.name)


def calibration_of(point: dict[str, Any]) -> dict[str, float] | None:
    status = point.get("controller") or {}
    calibration = status.get("calibration")
    if not calibration or not calibration.get("samples"):
        return None
    return calibration


def decode_steps(point: dict[str, Any]) -> float | None:
    """Decode request-steps of the measured run: tokens after each request's first (which
    prefill produces) minus the accepted drafts (which came without a step of their own)."""
    client, spec = point["client"], point.get("spec_decode")
    if spec is None:
        return None
    steps = client["total_output_tokens"] - client["num_ok"] - spec["num_accepted_tokens"]
    return steps if steps > 0 else None


def _lerp(low: float, high: float, fraction: float) -> float:
    return low + fraction * (high - low)


def predicted_speedup(
    planner,
    batch: float,
    seq_len: float,
    drafts_per_step: float,
    accepted_per_step: Sequence[float],
) -> float:
    """(1 + Σ a_k) / R(B, 1 + D), R interpolated in D and in B (see the module docstring)."""
    gamma_max = planner.gamma_max
    drafts = min(max(drafts_per_step, 0.0), float(gamma_max))
    expected = 1.0 + sum(accepted_per_step)
    seq = max(round(seq_len), 1)

    def ratio(b: int) -> float:
        ratios = planner.cost_ratios(b, seq)
        low = min(int(drafts), gamma_max - 1)
        return _lerp(ratios[low], ratios[low + 1], drafts - low)

    batch = max(batch, 1.0)
    low = int(batch)
    if batch == low:
        return expected / ratio(low)
    return _lerp(expected / ratio(low), expected / ratio(low + 1), batch - low)


def roofline_for_point(
    point: dict[str, Any], context: RooflineContext | None, fallback: dict[str, float] | None
) -> dict[str, Any] | None:
    spec, load = point.get("spec_decode"), point.get("load") or {}
    steps = decode_steps(point)
    calibration = calibration_of(point) or fallback
    if context is None or steps is None or calibration is None or not load.get("mean_decoding"):
        return None
    gamma_max = context.planner.gamma_max
    per_position = spec.get("accepted_per_position") or {}
    accepted = [
        float(per_position.get(str(k), per_position.get(k, 0.0))) / steps for k in range(gamma_max)
    ]
    drafts_per_step = spec["num_draft_tokens"] / steps
    seq_len = (load.get("mean_prompt_tokens") or 0.0) + (load.get("mean_output_tokens") or 0.0) / 2
    planner = context.planner.with_calibration(
        overhead_seconds=calibration["overhead_seconds"],
        scale=calibration["scale"],
        per_token_seconds=calibration.get("per_token_seconds", 0.0),
    )
    speedup = predicted_speedup(planner, load["mean_decoding"], seq_len, drafts_per_step, accepted)
    return {
        "predicted_speedup": speedup,
        "batch": load["mean_decoding"],
        "seq_len": seq_len,
        "drafts_per_step": drafts_per_step,
        "accepted_per_step": accepted,
        "calibration": {
            k: calibration.get(k)
            for k in ("overhead_seconds", "per_token_seconds", "scale", "samples")
        },
        "calibration_source": "point" if calibration_of(point) else "latest in sweep",
    }


# ---------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1e3


def baseline_mode(mode: str, modes_present: set[str]) -> str:
    """Measured speedup is over the same server family's `off` (vLLM peers: vllm:off)."""
    if mode.startswith("vllm:") and "vllm:off" in modes_present:
        return "vllm:off"
    return "off"


def non_decode_diagnostic(
    point: dict[str, Any],
    base: dict[str, Any] | None,
    predicted: float | None,
    measured: float | None,
) -> dict[str, float | None]:
    """Not the check: how much of the roofline's miss comes from time outside decode-only steps.

    The controller calibrates on decode-only steps, and the roofline speedup is a decode-step
    speedup; steps that carry prefill (chunked prefill mixes new prompts into the batch) and
    gaps between steps are not sped up. The speculative gateway's decode-only step time comes
    from ``specgate_observed_step_seconds``; the rest of the run's wall time is taken to cost
    `off` the same (same prompts, same request count), giving `off`'s decode share f and
    Amdahl's 1 / ((1 − f) + f / S)."""
    empty = {
        "off_decode_share": None,
        "roofline_speedup_amdahl": None,
        "roofline_error_amdahl": None,
    }
    steps = ((point.get("specgate") or {}).get("specgate_observed_step_seconds") or {}).get("sum")
    if not predicted or not measured or base is None or not steps:
        return empty
    base_seconds = base["client"]["duration_seconds"]
    outside = point["client"]["duration_seconds"] - steps
    if base_seconds <= 0:
        return empty
    share = min(max(1.0 - outside / base_seconds, 0.0), 1.0)
    amdahl = 1.0 / ((1.0 - share) + share / predicted)
    return {
        "off_decode_share": share,
        "roofline_speedup_amdahl": amdahl,
        "roofline_error_amdahl": (amdahl - measured) / measured,
    }


def build_rows(sweep: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per point, with speedup and the roofline prediction."""
    points = sweep["points"]
    gamma_max = int(sweep["config"].get("gamma_max", 8))
    context = RooflineContext.from_sweep(sweep, gamma_max)
    latest_calibration = None
    for point in points:
        latest_calibration = calibration_of(point) or latest_calibration
    by_key = {(p["workload"], p["concurrency"], p["mode"]): p for p in points}
    modes_present = {p["mode"] for p in points}
    rows = []
    for point in points:
        client, load = point["client"], point.get("load") or {}
        spec, status = point.get("spec_decode") or {}, point.get("controller") or {}
        row: dict[str, Any] = {
            "workload": point["workload"],
            "concurrency": point["concurrency"],
            "mode": point["mode"],
            "server": point["server"],
            "peer": point.get("peer", False),
            "num_requests": client["num_requests"],
            "num_ok": client["num_ok"],
            "num_errors": client["num_errors"],
            "duration_s": client["duration_seconds"],
            "output_tok_s": client["output_tokens_per_second"],
            "req_s": client["requests_per_second"],
            "total_output_tokens": client["total_output_tokens"],
        }
        for name in LATENCIES:
            stats = client[f"{name}_seconds"]
            for percentile in PERCENTILES:
                row[f"{name}_{percentile}_ms"] = _ms(stats[percentile])
        row.update(
            mean_in_flight=load.get("mean_in_flight"),
            mean_decode_batch=load.get("mean_decoding"),
            mean_prompt_tokens=load.get("mean_prompt_tokens"),
            mean_output_tokens=load.get("mean_output_tokens"),
            acceptance_rate=spec.get("acceptance_rate"),
            mean_acceptance_length=spec.get("mean_acceptance_length"),
        )
        steps = decode_steps(point) if spec else None
        row["drafted_per_step"] = spec["num_draft_tokens"] / steps if steps else None
        row["accepted_per_step"] = spec["num_accepted_tokens"] / steps if steps else None
        per_position = spec.get("per_position_acceptance") or {}
        for k in range(gamma_max):
            value = per_position.get(str(k), per_position.get(k))
            row[f"acceptance_pos{k + 1}"] = value
        histograms = point.get("specgate") or {}
        row["mean_gamma"] = (histograms.get("specgate_gamma_chosen") or {}).get("mean")
        row["server_mean_batch"] = (histograms.get("specgate_batch_size") or {}).get("mean")
        # How well the controller's calibrated step model matched this point's decode steps.
        predicted_step = (histograms.get("specgate_predicted_step_seconds") or {}).get("mean")
        observed_step = (histograms.get("specgate_observed_step_seconds") or {}).get("mean")
        row["observed_step_ms"] = _ms(observed_step)
        row["step_model_ratio"] = (
            predicted_step / observed_step if predicted_step and observed_step else None
        )
        calibration = status.get("calibration") or {}
        row.update(
            policy=status.get("policy"),
            last_gamma=status.get("last_gamma"),
            controller_predicted_speedup=status.get("predicted_speedup"),
            calib_overhead_ms=_ms(calibration.get("overhead_seconds")),
            calib_per_token_us=None
            if calibration.get("per_token_seconds") is None
            else calibration["per_token_seconds"] * 1e6,
            calib_scale=calibration.get("scale"),
            calib_samples=calibration.get("samples"),
        )
        base = by_key.get(
            (point["workload"], point["concurrency"], baseline_mode(point["mode"], modes_present))
        )
        base_tps = base["client"]["output_tokens_per_second"] if base else None
        row["baseline"] = base["mode"] if base else None
        row["speedup"] = row["output_tok_s"] / base_tps if base_tps else None
        prediction = None
        if point["mode"] not in ("off", "vllm:off") and spec:
            prediction = roofline_for_point(point, context, latest_calibration)
        row["roofline_speedup"] = prediction["predicted_speedup"] if prediction else None
        row["roofline_calibration"] = prediction["calibration_source"] if prediction else None
        if row["roofline_speedup"] is not None and row["speedup"]:
            row["roofline_error"] = (row["roofline_speedup"] - row["speedup"]) / row["speedup"]
        else:
            row["roofline_error"] = None
        row.update(non_decode_diagnostic(point, base, row["roofline_speedup"], row["speedup"]))
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------


def geomean(values: Iterable[float]) -> float | None:
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def is_fixed_setting(mode: str) -> bool:
    """Gateway settings that do not adapt: `off` (γ = 0 in an engine without drafting) and fixed:K."""
    return mode == "off" or mode.startswith("fixed:")


def find_crossover(levels: Sequence[int], speedups: Sequence[float | None]) -> dict[str, Any]:
    """The smallest concurrency above which speculation no longer beats `off`.

    ``speedups[i]``: the best speculative speedup at ``levels[i]``. Takes the last level where
    it is above 1; the crossover lies between it and the next level, interpolated linearly in
    log2(concurrency) to where the speedup crosses 1."""
    known = [(c, s) for c, s in zip(levels, speedups) if s is not None]
    result: dict[str, Any] = {"low": None, "high": None, "interpolated": None, "monotonic": True}
    if not known:
        result["kind"] = "no data"
        return result
    wins = [i for i, (_, s) in enumerate(known) if s > 1.0]
    if not wins:
        result["kind"] = "never"
        result["high"] = known[0][0]
        return result
    last = wins[-1]
    result["monotonic"] = wins == list(range(last + 1))
    if last == len(known) - 1:
        result["kind"] = "beyond"
        result["low"] = known[-1][0]
        return result
    (c_low, s_low), (c_high, s_high) = known[last], known[last + 1]
    fraction = (s_low - 1.0) / (s_low - s_high) if s_low != s_high else 0.5
    log_c = math.log2(c_low) + fraction * (math.log2(c_high) - math.log2(c_low))
    result.update(kind="between", low=c_low, high=c_high, interpolated=2.0**log_c)
    return result


def describe_crossover(crossover: dict[str, Any]) -> str:
    kind = crossover.get("kind")
    if kind == "between":
        text = (
            f"between concurrency {crossover['low']} and {crossover['high']} "
            f"(≈ {crossover['interpolated']:.1f} interpolated)"
        )
        return text if crossover["monotonic"] else text + "; not monotonic below it"
    if kind == "beyond":
        return f"none up to concurrency {crossover['low']}: speculation still wins there"
    if kind == "never":
        return f"below concurrency {crossover['high']}: speculation never beat off"
    return "not measured (no off or no speculative mode)"


def _table(rows: Sequence[dict[str, Any]], workload: str) -> dict[tuple[int, str], dict[str, Any]]:
    return {(r["concurrency"], r["mode"]): r for r in rows if r["workload"] == workload}


def summarize_workload(
    rows: Sequence[dict[str, Any]], workload: str, modes: Sequence[str]
) -> dict[str, Any]:
    table = _table(rows, workload)
    levels = sorted({c for c, _ in table})
    gateway_speculative = [m for m in modes if not m.startswith("vllm:") and m != "off"]
    fixed_speculative = [m for m in gateway_speculative if m != "adaptive"]
    summary: dict[str, Any] = {"workload": workload, "levels": levels}

    def speedup(c: int, m: str) -> float | None:
        row = table.get((c, m))
        return row["speedup"] if row else None

    best, best_mode = [], []
    for c in levels:
        candidates = [(speedup(c, m), m) for m in fixed_speculative if speedup(c, m) is not None]
        top = max(candidates) if candidates else (None, None)
        best.append(top[0])
        best_mode.append(top[1])
    summary["best_speculative_speedup"] = dict(zip(map(str, levels), best))
    summary["best_speculative_mode"] = dict(zip(map(str, levels), best_mode))
    summary["crossover"] = find_crossover(levels, best)
    summary["crossover_by_mode"] = {
        m: find_crossover(levels, [speedup(c, m) for c in levels]) for m in gateway_speculative
    }

    # The controller against the fixed settings (off and fixed:K on the gateway).
    fixed = [m for m in modes if is_fixed_setting(m)]
    if "adaptive" in modes and fixed:
        per_point = {}
        for c in levels:
            adaptive = table.get((c, "adaptive"))
            others = [table[(c, m)]["output_tok_s"] for m in fixed if (c, m) in table]
            if adaptive and others:
                per_point[str(c)] = adaptive["output_tok_s"] / max(others)
        complete = [c for c in levels if all((c, m) in table for m in [*fixed, "adaptive"])]
        by_mode = {m: geomean(table[(c, m)]["output_tok_s"] for c in complete) for m in fixed}
        best_single = max(by_mode, key=lambda m: by_mode[m] or 0.0) if complete else None
        over_single = geomean(
            table[(c, "adaptive")]["output_tok_s"] / table[(c, best_single)]["output_tok_s"] for c in complete
        ) if best_single else None  # fmt: skip
        tables = [m for m in modes if m.startswith("table:")]
        over_table = geomean(
            table[(c, "adaptive")]["output_tok_s"] / table[(c, tables[0])]["output_tok_s"]
            for c in levels if (c, "adaptive") in table and (c, tables[0]) in table
        ) if tables else None  # fmt: skip
        ratios = list(per_point.values())
        summary["controller"] = {
            "adaptive_over_best_fixed_per_point": per_point,
            "adaptive_over_best_fixed_min": min(ratios) if ratios else None,
            "adaptive_over_best_fixed_geomean": geomean(ratios),
            "best_single_fixed": best_single,
            "adaptive_over_best_single_fixed_geomean": over_single,
            "table_mode": tables[0] if tables else None,
            "adaptive_over_table_geomean": over_table,
        }

    # The gateway against vLLM's own server, where both ran the same setting.
    overhead = {}
    for m in modes:
        if not m.startswith("vllm:"):
            continue
        gateway_mode = m.removeprefix("vllm:")
        pairs = {}
        for c in levels:
            ours, theirs = table.get((c, gateway_mode)), table.get((c, m))
            if ours and theirs and theirs["output_tok_s"]:
                ttft = (ours["ttft_p50_ms"] / theirs["ttft_p50_ms"]
                        if ours["ttft_p50_ms"] and theirs["ttft_p50_ms"] else None)  # fmt: skip
                pairs[str(c)] = {"throughput_ratio": ours["output_tok_s"] / theirs["output_tok_s"],
                                 "ttft_p50_ratio": ttft}  # fmt: skip
        if pairs:
            overhead[f"{gateway_mode} vs {m}"] = pairs
    summary["gateway_overhead"] = overhead
    return summary


def roofline_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    checked = [r for r in rows if r["roofline_error"] is not None and not r["peer"]]
    errors = [abs(r["roofline_error"]) for r in checked]
    median = statistics.median(errors) if errors else None
    by_mode: dict[str, list[float]] = {}
    for r in checked:
        by_mode.setdefault(r["mode"], []).append(abs(r["roofline_error"]))
    amdahl = [
        abs(r["roofline_error_amdahl"])
        for r in checked
        if r.get("roofline_error_amdahl") is not None
    ]
    return {
        "points": len(checked),
        "median_abs_error": median,
        "median_abs_error_amdahl_diagnostic": statistics.median(amdahl) if amdahl else None,
        "mean_abs_error": statistics.fmean(errors) if errors else None,
        "max_abs_error": max(errors) if errors else None,
        "median_abs_error_by_mode": {m: statistics.median(v) for m, v in by_mode.items()},
        "mean_signed_error": statistics.fmean(r["roofline_error"] for r in checked)
        if checked
        else None,
        "target": ROOFLINE_TARGET,
        "met": None if median is None else median <= ROOFLINE_TARGET,
    }


def analyze(sweep: dict[str, Any]) -> dict[str, Any]:
    rows = build_rows(sweep)
    modes = list(dict.fromkeys([*sweep["config"].get("modes", []), *(r["mode"] for r in rows)]))
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    return {
        "modes": modes,
        "workloads": {w: summarize_workload(rows, w, modes) for w in workloads},
        "roofline": roofline_summary(rows),
        "rows": rows,
    }


# ---------------------------------------------------------------------------------------------
# Output files
# ---------------------------------------------------------------------------------------------


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in columns})


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def _fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def markdown_summary(
    sweep: dict[str, Any], analysis: dict[str, Any], plots: dict[str, list[str]]
) -> str:
    config, rows, modes = sweep["config"], analysis["rows"], analysis["modes"]
    environment = sweep.get("environment") or {}
    model = (sweep.get("model") or {}).get("name", "?")
    hardware = (sweep.get("hardware") or {}).get("preset", "?")
    lines = [
        f"# Load-test sweep: {', '.join(analysis['workloads'])}",
        "",
        f"Model **{model}**, roofline hardware preset `{hardware}`, vLLM {environment.get('vllm', '?')}, "
        f"{environment.get('cpu_count', '?')} CPUs ({environment.get('processor', '?')}); "
        f"started {sweep.get('started_at', '?')}, took {_fmt((sweep.get('duration_seconds') or 0) / 60, '.1f')} min"
        + ("" if sweep.get("complete") else " (**incomplete**: the sweep did not finish)")
        + ".",
        "",
    ]
    loads = [p["load_average"] for p in sweep["points"] if p.get("load_average") is not None]
    if loads:
        lines += [
            (
                f"Machine load (1-minute load average after each point): median {statistics.median(loads):.1f}, "
                f"max {max(loads):.1f} on {environment.get('cpu_count', '?')} CPUs. Anything above about "
                "the engine's thread count means other work shared the machine and adds noise."
            ),
            "",
        ]
    if sweep.get("command"):
        lines += ["```", sweep["command"], "```", ""]
    requests = config.get("requests_per_point", {})
    lines += [
        (
            f"Modes: {', '.join(f'`{m}`' for m in modes)}. `off` is a gateway with speculation disabled in "
            f"the engine; the other gateway modes share one gateway (ngram, γ ≤ {config.get('gamma_max')}) "
            "switched by `PUT /v1/speculative`; `vllm:*` modes are vLLM's own OpenAI server with the same "
            "engine flags. Modes run back to back at each concurrency, in an order rotated per level."
        ),
        (
            f"Closed loop; requests per point: {', '.join(f'{c}: {n}' for c, n in requests.items())} "
            f"(after a warm-up); max tokens {config.get('max_tokens') or 'workload default (128)'}; "
            f"engine flags `{config.get('engine_args', '')}`."
        ),
        "",
    ]
    roofline = analysis["roofline"]
    for workload, summary in analysis["workloads"].items():
        lines += [f"## {workload}", ""]
        lines += [
            f"**Crossover** (best fixed-γ speculative mode vs `off`): {describe_crossover(summary['crossover'])}.",
            "",
        ]
        per_mode = summary.get("crossover_by_mode") or {}
        if per_mode:
            lines += [
                "Per mode: "
                + "; ".join(f"`{m}` {describe_crossover(x)}" for m, x in per_mode.items())
                + ".",
                "",
            ]
        controller = summary.get("controller")
        if controller:
            lines += [
                f"**Controller** (`adaptive`) over the best fixed setting (`off`, `fixed:K`) at each point: "
                f"min {_fmt(controller['adaptive_over_best_fixed_min'], '.3f')}, "
                f"geomean {_fmt(controller['adaptive_over_best_fixed_geomean'], '.3f')}; over the best single "
                f"fixed setting across levels (`{controller['best_single_fixed']}`), geomean "
                f"{_fmt(controller['adaptive_over_best_single_fixed_geomean'], '.3f')}"
                + (
                    f"; over `{controller['table_mode']}`, geomean {_fmt(controller['adaptive_over_table_geomean'], '.3f')}"
                    if controller.get("table_mode")
                    else ""
                )
                + ".",
                "",
            ]
        table = _table(rows, workload)
        levels = summary["levels"]
        header = "| concurrency | " + " | ".join(f"`{m}`" for m in modes) + " |"
        lines += [
            "Output tokens/s (speedup over `off`):",
            "",
            header,
            "|---" * (len(modes) + 1) + "|",
        ]
        for c in levels:
            cells = []
            for m in modes:
                row = table.get((c, m))
                if row is None:
                    cells.append("–")
                    continue
                cell = f"{row['output_tok_s']:.1f}"
                if row["speedup"] is not None and m not in ("off",):
                    cell += f" ({row['speedup']:.2f}x)"
                if row["num_errors"]:
                    cell += f" [{row['num_errors']} err]"
                cells.append(cell)
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        lines.append("")
        speculative = [m for m in modes if m not in ("off", "vllm:off")]
        if speculative:
            lines += [("Acceptance: accepted draft tokens per decode request-step; mean acceptance length "
                      "(1 + accepted per draft, vLLM's definition); `adaptive`: mean γ chosen per step."), "",
                      "| concurrency | " + " | ".join(f"`{m}`" for m in speculative) + " |",
                      "|---" * (len(speculative) + 1) + "|"]  # fmt: skip
            for c in levels:
                cells = []
                for m in speculative:
                    row = table.get((c, m))
                    if row is None or row["accepted_per_step"] is None:
                        cells.append("–")
                        continue
                    cell = f"{row['accepted_per_step']:.2f}; {_fmt(row['mean_acceptance_length'])}"
                    if m == "adaptive" and row["mean_gamma"] is not None:
                        cell += f"; γ {row['mean_gamma']:.1f}"
                    cells.append(cell)
                lines.append(f"| {c} | " + " | ".join(cells) + " |")
            lines.append("")
        overhead = summary.get("gateway_overhead") or {}
        if overhead:
            lines += [
                "**Gateway overhead** (gateway / vLLM's own server, same engine setting):",
                "",
                "| pair | " + " | ".join(f"c={c}" for c in levels) + " |",
                "|---" * (len(levels) + 1) + "|",
            ]
            for pair, values in overhead.items():
                cells = [f"{values[str(c)]['throughput_ratio']:.3f} tok/s, {_fmt(values[str(c)]['ttft_p50_ratio'], '.2f')} TTFT"
                         if str(c) in values else "–" for c in levels]  # fmt: skip
                lines.append(f"| {pair} | " + " | ".join(cells) + " |")
            lines.append("")
        checked = [
            r
            for r in rows
            if r["workload"] == workload and r["roofline_error"] is not None and not r["peer"]
        ]
        if checked:
            lines += ["Roofline check (predicted vs measured speedup over `off`):", "",
                      ("| concurrency | mode | decode batch | drafted / step | accepted / step | step model / observed "
                      "| predicted | measured | error | off decode share | diagnostic: Amdahl | its error |"),
                      "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
            for r in sorted(checked, key=lambda r: (r["concurrency"], modes.index(r["mode"]))):
                amdahl_error = r.get("roofline_error_amdahl")
                lines.append(
                    f"| {r['concurrency']} | `{r['mode']}` | {r['mean_decode_batch']:.1f} | {r['drafted_per_step']:.2f} "
                    f"| {r['accepted_per_step']:.2f} | {_fmt(r['step_model_ratio'])} | {r['roofline_speedup']:.3f} "
                    f"| {r['speedup']:.3f} | {r['roofline_error'] * 100:+.1f}% | {_fmt(r.get('off_decode_share'))} "
                    f"| {_fmt(r.get('roofline_speedup_amdahl'), '.3f')} "
                    f"| {'–' if amdahl_error is None else f'{amdahl_error * 100:+.1f}%'} |"
                )
            lines += [
                "",
                (
                    "*step model / observed*: the controller's calibrated decode-step time over the measured "
                    "one, averaged over the point's decode-only steps (1.00: the calibration fits this point). "
                    "*off decode share* and *diagnostic: Amdahl* are not part of the check: the share f of `off`'s "
                    "wall time that decode-only steps would take (the speculative run's time outside its "
                    "decode-only steps, which carry prefill or are gaps, taken to cost `off` the same), and "
                    "1 / ((1 − f) + f / predicted)."
                ),
                "",
            ]
        for path in plots.get(workload, []):
            lines += [f"![{Path(path).stem}]({Path(path).name})", ""]
    lines += ["## Roofline check", ""]
    if roofline["median_abs_error"] is None:
        lines += [("No roofline prediction could be made (no controller calibration, model config or "
                  "acceptance data in the sweep)."), ""]  # fmt: skip
    else:
        verdict = "meets" if roofline["met"] else "**misses**"
        calibrations = sorted(
            {r["roofline_calibration"] for r in rows if r["roofline_calibration"]}
        )
        lines += [
            f"Median absolute relative error of the roofline-predicted speedup: **{_pct(roofline['median_abs_error'])}** "
            f"over {roofline['points']} speculative gateway points ({verdict} the {_pct(roofline['target'])} target); "
            f"mean {_pct(roofline['mean_abs_error'])}, max {_pct(roofline['max_abs_error'])}, mean signed error "
            f"{_pct(roofline['mean_signed_error'])} (positive: the model is optimistic). By mode: "
            + ", ".join(f"`{m}` {_pct(v)}" for m, v in roofline["median_abs_error_by_mode"].items())
            + ".",
            "",
            (
                "Prediction: the planner for the served model's config.json on the controller's hardware preset, "
                "calibrated with the (t0, per-token, scale) the controller reported after each point "
                f"(source: {', '.join(calibrations)}), at the measured decode batch and context length, with "
                "acceptance per position from the point's `/metrics` delta (per decode request-step, so steps where "
                "ngram found no match count as zero drafts). Measured: tokens/s of the mode over `off`'s."
            ),
            "",
        ]
        if roofline.get("median_abs_error_amdahl_diagnostic") is not None:
            lines += [
                (
                    "Diagnostic, not the check: the roofline is a decode-step model and the controller calibrates "
                    "it on decode-only steps, while throughput also pays for steps that carry prefill, which "
                    "speculation does not shorten. Diluting the predicted speedup by `off`'s decode share "
                    "(Amdahl) gives a median absolute error of "
                    f"{_pct(roofline['median_abs_error_amdahl_diagnostic'])}: the part of the miss that "
                    "prefill-bearing steps explain."
                ),
                "",
            ]
    lines += [("Files: `sweep.json` (raw measurements; `specgate loadtest report DIR` rebuilds the rest), "
              f"`{REPORT_JSON}`, `{POINTS_CSV}`, the PNGs above."), ""]  # fmt: skip
    return "\n".join(lines)


def build_report(path: Path, out_dir: Path | None = None, plots: bool = True) -> dict[str, Any]:
    """Write report.json, points.csv, the PNGs and summary.md next to sweep.json (or in
    ``out_dir``); return the analysis."""
    sweep = load_sweep(path)
    folder = path if path.is_dir() else path.parent
    out_dir = out_dir or folder
    out_dir.mkdir(parents=True, exist_ok=True)
    analysis = analyze(sweep)
    written: dict[str, list[str]] = {}
    if plots:
        from loadtests.plots import plot_all

        written = plot_all(analysis, out_dir)
    report = {
        "sweep": {
            k: sweep.get(k)
            for k in (
                "command",
                "started_at",
                "finished_at",
                "duration_seconds",
                "complete",
                "environment",
                "config",
                "servers",
            )
        },
        "model": {k: (sweep.get("model") or {}).get(k) for k in ("name", "path")},
        "hardware": (sweep.get("hardware") or {}).get("preset"),
        "modes": analysis["modes"],
        "workloads": analysis["workloads"],
        "roofline": analysis["roofline"],
        "plots": written,
        "points": analysis["rows"],
    }
    (out_dir / REPORT_JSON).write_text(json.dumps(report, indent=1) + "\n")
    write_csv(analysis["rows"], out_dir / POINTS_CSV)
    (out_dir / SUMMARY_MD).write_text(markdown_summary(sweep, analysis, written))
    return analysis
