"""Turn a saved sweep (``sweep.json``) into its report: every point as JSON and CSV, the
derived figures (speedup over ``off``, crossover, the controller's ratio to fixed settings,
the roofline check, the gateway's overhead over vLLM's own server), PNG plots and a markdown
summary. ``specgate loadtest report DIR`` rebuilds all of it from ``DIR/sweep.json``.

Roofline check. Each speculative gateway point's speedup over ``off`` is predicted from the
``off`` run at the same workload and concurrency plus the calibrated roofline, and compared
with the measured one (see `speedup_from_off`): ``off``'s wall time outside its decode-only
steps is kept, its decode-only time (measured by its own scheduler, ``specgate_*``
histograms) is scaled by the roofline's decode seconds per emitted token over ``off``'s
measured ones. The roofline side is the planner for the served model's config.json on the
controller's hardware preset, with the calibration (t0, per-token cost, scale, and the
per-batch-size corrections where the controller reports them) it reported after the point,
priced at the point's decode batch per step and mean context length. Acceptance comes from the point's ``/metrics`` delta, per decode request-step (a
request-step with no ngram match drafts nothing): with ``steps`` = output tokens after the
first − accepted tokens, ``D`` = drafted tokens / steps and ``a_k`` = accepted at position k /
steps, a decode step costs ``t(B, 1) · R(B, 1 + D)`` and emits ``B · (1 + Σ a_k)`` tokens, where
``R`` is the calibrated step cost relative to a plain decode step, interpolated at fractional
query lengths and batch sizes (the controller prices its per-request allocations the same
way). Measured speedup is the mode's output tokens/s over ``off``'s. The earlier check, the
roofline-only decode-step speedup ``(1 + Σ a_k) / R(B, 1 + D)``, stays as a diagnostic.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
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


@dataclass(slots=True)
class DecodeOnlySteps:
    """A run's decode-only engine steps, from its scheduler's ``specgate_*`` histograms."""

    seconds: float  # summed measured step time (specgate_observed_step_seconds)
    count: float
    batch: float  # decoding requests per step (specgate_batch_size), steps that have any

    @property
    def seconds_per_request_step(self) -> float:
        return self.seconds / (self.count * self.batch)


def measured_decode_only_steps(point: dict[str, Any] | None) -> DecodeOnlySteps | None:
    histograms = (point or {}).get("specgate") or {}
    observed = histograms.get("specgate_observed_step_seconds") or {}
    batch = (histograms.get("specgate_batch_size") or {}).get("mean")
    if not observed.get("count") or not observed.get("sum") or not batch:
        return None
    return DecodeOnlySteps(observed["sum"], observed["count"], batch)


def _lerp(low: float, high: float, fraction: float) -> float:
    return low + fraction * (high - low)


def _across_batch(value_at: Callable[[int], float], batch: float) -> float:
    """``value_at`` (priced at whole batches) interpolated linearly at a fractional batch ≥ 1."""
    batch = max(batch, 1.0)
    low = int(batch)
    if batch == low:
        return value_at(low)
    return _lerp(value_at(low), value_at(low + 1), batch - low)


def _cost_ratio(planner, batch: int, seq: int, drafts: float) -> float:
    """R(B, 1 + D): calibrated step cost relative to a plain decode step, interpolated in D."""
    ratios = planner.cost_ratios(batch, seq)
    low = min(int(drafts), planner.gamma_max - 1)
    return _lerp(ratios[low], ratios[low + 1], drafts - low)


def predicted_speedup(
    planner,
    batch: float,
    seq_len: float,
    drafts_per_step: float,
    accepted_per_step: Sequence[float],
) -> float:
    """(1 + Σ a_k) / R(B, 1 + D), R interpolated in D and in B (see the module docstring)."""
    drafts = min(max(drafts_per_step, 0.0), float(planner.gamma_max))
    expected = 1.0 + sum(accepted_per_step)
    seq = max(round(seq_len), 1)
    return _across_batch(lambda b: expected / _cost_ratio(planner, b, seq, drafts), batch)


MIN_COST_FRACTION = 0.1
"""A batch-size correction never prices a step below this share of the calibrated roofline's
(as in the controller's step-cost model)."""


@dataclass(slots=True)
class BatchCorrection:
    """The controller's correction of the calibrated roofline for batches low..high:
    ``offset_seconds + seconds_per_token · tokens in the step``."""

    low: int
    high: int
    offset_seconds: float
    seconds_per_token: float


def batch_corrections(calibration: dict[str, Any]) -> list[BatchCorrection]:
    """From the controller's status (``calibration.by_batch_bucket``: "lo-hi" → offset and
    per-token seconds); none where the controller reports none (older gateways)."""
    corrections = []
    for span, fit in (calibration.get("by_batch_bucket") or {}).items():
        low, _, high = str(span).partition("-")
        corrections.append(
            BatchCorrection(
                int(low), int(high or low), fit["offset_seconds"], fit["seconds_per_token"]
            )
        )
    return corrections


def corrected_step_seconds(
    seconds: float, batch: int, tokens: float, corrections: Sequence[BatchCorrection]
) -> float:
    for c in corrections:
        if c.low <= batch <= c.high:
            corrected = seconds + c.offset_seconds + c.seconds_per_token * tokens
            return max(corrected, MIN_COST_FRACTION * seconds)
    return seconds


def spec_seconds_per_token(
    planner,
    batch: float,
    seq_len: float,
    drafts_per_step: float,
    accepted_per_step: Sequence[float],
    corrections: Sequence[BatchCorrection] = (),
) -> float:
    """Calibrated seconds per emitted token of a speculative decode-only step:
    t(B, 1) · R(B, 1 + D) / (B · (1 + Σ a_k)), interpolated in D and B like
    `predicted_speedup` (t: the planner's calibrated step time, R: its cost ratio), plus the
    controller's correction for the batch size where it reports one."""
    drafts = min(max(drafts_per_step, 0.0), float(planner.gamma_max))
    expected = 1.0 + sum(accepted_per_step)
    seq = max(round(seq_len), 1)

    def per_token(b: int) -> float:
        step = planner.step_seconds(b, 1, seq) * _cost_ratio(planner, b, seq, drafts)
        step = corrected_step_seconds(step, b, b * (1.0 + drafts), corrections)
        return step / (b * expected)

    return _across_batch(per_token, batch)


def speedup_from_off(
    off_wall_seconds: float, off_steps: DecodeOnlySteps, spec_per_token: float
) -> dict[str, float] | None:
    """The speculative run predicted from the `off` run: 1 / ((1 − f) + f · r).

    Per output token, `off` spends its wall time W in two parts: its decode-only steps (summed
    measured time T, share f = T / W) and everything else (steps that carry prefill, gaps
    between engine steps, the API process's detokenising and streaming on the shared cores,
    ramp-up and tail). The speculative run serves the same requests; it is predicted to spend
    the same time per token outside decode-only steps and r times `off`'s decode time, where
    r = (calibrated roofline seconds per emitted token of a speculative decode step, at the
    measured batch, drafts and acceptance; `spec_seconds_per_token`) / (`off`'s measured
    decode seconds per emitted token, T / (steps · batch per step), one token per request and
    step). So the predicted speculative wall time is (W − T) + T · r and the speedup in
    tokens/s is W / ((W − T) + T · r), both runs' times taken per output token.

    Neither side uses the speculative run's timings: `off` contributes its own measured
    decode cost (no proposer or spec-decode bookkeeping in it), the spec side is the roofline
    with the controller's calibration. Left out, so in the error: decode work inside
    prefill-bearing steps (sped up by speculation, counted here as not) and per-step gaps
    (fewer steps with speculation, counted here per token)."""
    if off_wall_seconds <= 0 or spec_per_token <= 0:
        return None
    share = min(off_steps.seconds / off_wall_seconds, 1.0)
    ratio = spec_per_token / off_steps.seconds_per_request_step
    return {
        "off_decode_share": share,
        "decode_cost_ratio": ratio,
        "predicted_speedup": 1.0 / ((1.0 - share) + share * ratio),
    }


def roofline_for_point(
    point: dict[str, Any], context: RooflineContext | None, fallback: dict[str, float] | None
) -> dict[str, Any] | None:
    """The calibrated roofline at a speculative point: the roofline-only speedup (diagnostic)
    and the seconds per emitted token of its decode steps (input to `speedup_from_off`)."""
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
    # Per-step pricing wants the scheduler's per-step batch, as `off`'s is measured; the client's
    # time-weighted one (Little's law) stands in where the point has none.
    own = measured_decode_only_steps(point)
    step_batch = own.batch if own else load["mean_decoding"]
    return {
        "predicted_speedup": speedup,
        "batch": load["mean_decoding"],
        "step_batch": step_batch,
        "seq_len": seq_len,
        "drafts_per_step": drafts_per_step,
        "accepted_per_step": accepted,
        "spec_seconds_per_token": spec_seconds_per_token(
            planner, step_batch, seq_len, drafts_per_step, accepted, batch_corrections(calibration)
        ),
        "calibration": {
            k: calibration.get(k)
            for k in ("overhead_seconds", "per_token_seconds", "scale", "samples")
        },
        "calibration_source": "point" if calibration_of(point) else "latest in sweep",
    }


NO_ROOFLINE = "no roofline inputs (controller calibration, model config.json, acceptance or load)"
NO_OFF_POINT = "no `off` point at this workload and concurrency"
NO_OFF_STEPS = (
    "the `off` points carry no decode-step metrics (`specgate_observed_step_seconds`, "
    "`specgate_batch_size`): the sweep predates the `off` gateway exporting them"
)


def roofline_check(
    point: dict[str, Any],
    base: dict[str, Any] | None,
    prediction: dict[str, Any] | None,
    measured: float | None,
) -> dict[str, Any]:
    """The check's row fields: the prediction from `off` (`speedup_from_off`), its error
    against the measured speedup, and why it is missing where it is."""
    off_steps = measured_decode_only_steps(base)
    fields: dict[str, Any] = {
        "off_step_batch": off_steps.batch if off_steps else None,
        "off_decode_ms_per_token": _ms(off_steps.seconds_per_request_step) if off_steps else None,
        "spec_step_batch": prediction["step_batch"] if prediction else None,
        "off_decode_share": None,
        "decode_cost_ratio": None,
        "roofline_speedup": None,
        "roofline_error": None,
        "roofline_unavailable": None,
    }
    if prediction is None:
        fields["roofline_unavailable"] = NO_ROOFLINE
    elif base is None:
        fields["roofline_unavailable"] = NO_OFF_POINT
    elif off_steps is None:
        fields["roofline_unavailable"] = NO_OFF_STEPS
    else:
        wall = base["client"]["duration_seconds"]
        from_off = speedup_from_off(wall, off_steps, prediction["spec_seconds_per_token"])
        if from_off is None:
            fields["roofline_unavailable"] = "`off` has no wall time"
        else:
            fields.update(from_off)
            fields["roofline_speedup"] = fields.pop("predicted_speedup")
    fields["roofline_error"] = _relative_error(fields["roofline_speedup"], measured)
    return fields


def _relative_error(predicted: float | None, measured: float | None) -> float | None:
    return None if predicted is None or not measured else (predicted - measured) / measured


def roofline_fields(
    point: dict[str, Any],
    base: dict[str, Any] | None,
    context: RooflineContext | None,
    fallback: dict[str, float] | None,
    measured: float | None,
) -> dict[str, Any]:
    """A row's roofline columns: the check (`roofline_check`) and, as a diagnostic, the
    roofline-only speedup (a decode-step speedup that prices `off` with the speculative
    engine's calibrated t(B, 1)). Empty at `off` points and where nothing was drafted."""
    speculative = point["mode"] not in ("off", "vllm:off") and bool(point.get("spec_decode"))
    prediction = roofline_for_point(point, context, fallback) if speculative else None
    only = prediction["predicted_speedup"] if prediction else None
    per_token = prediction["spec_seconds_per_token"] if prediction else None
    fields = {
        "roofline_calibration": prediction["calibration_source"] if prediction else None,
        "spec_decode_ms_per_token": _ms(per_token),
        **roofline_check(point, base, prediction, measured),
        "roofline_only_speedup": only,
        "roofline_only_error": _relative_error(only, measured),
    }
    if not speculative:
        fields["roofline_unavailable"] = None
    return fields


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
        row.update(roofline_fields(point, base, context, latest_calibration, row["speedup"]))
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


def _error_stats(rows: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    """Median, mean and max |error| and the mean signed error of ``key`` over ``rows``."""
    errors = [r[key] for r in rows if r.get(key) is not None]
    absolute = [abs(e) for e in errors]
    by_mode: dict[str, list[float]] = {}
    for r in rows:
        if r.get(key) is not None:
            by_mode.setdefault(r["mode"], []).append(abs(r[key]))
    return {
        "points": len(errors),
        "median_abs_error": statistics.median(absolute) if absolute else None,
        "mean_abs_error": statistics.fmean(absolute) if absolute else None,
        "max_abs_error": max(absolute) if absolute else None,
        "median_abs_error_by_mode": {m: statistics.median(v) for m, v in by_mode.items()},
        "mean_signed_error": statistics.fmean(errors) if errors else None,
    }


def roofline_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The check over the speculative gateway points (`roofline_error`: predicted from `off`),
    why points lack it, and the roofline-only diagnostic's errors beside it."""
    gateway = [r for r in rows if not r["peer"] and r["mode"] != "off"]
    check = _error_stats(gateway, "roofline_error")
    median = check["median_abs_error"]
    unavailable = sorted(
        {r["roofline_unavailable"] for r in gateway if r.get("roofline_unavailable")}
    )
    return {
        **check,
        "unavailable": unavailable,
        "roofline_only": _error_stats(gateway, "roofline_only_error"),
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


NA = "n/a"


def _na(value: float | None, spec: str = ".2f") -> str:
    return NA if value is None else f"{value:{spec}}"


def _signed_pct(value: float | None) -> str:
    return NA if value is None else f"{value * 100:+.1f}%"


ROOFLINE_LEGEND = (
    "*predicted* = 1 / ((1 − f) + f · r), from the `off` run at the same concurrency and the roofline: "
    "`off`'s wall time W splits into its decode-only steps (summed measured step time T from `off`'s own "
    "scheduler; *off decode share* f = T / W) and the rest (steps that carry prefill, gaps between engine "
    "steps, the API process's streaming), which is kept; the decode part is scaled by "
    "*r* = spec ÷ off *decode ms / token*. `off`'s is measured: T / (decode-only steps × *batch / step*). "
    "The speculative one is the controller's calibrated roofline (reported after the point) for one decode "
    "step (with its batch-size correction, where it reports one) at the speculative gateway's *batch / step*, verifying *drafted / step* and keeping "
    "*accepted / step* per request, divided by the tokens it emits. *batch / step*: decoding requests per "
    "engine step, from each gateway's `specgate_batch_size`. The speculative run gives acceptance and batch, "
    "none of its timings. *step model / observed*: that calibration's step time over the measured one on the "
    "speculative run's decode-only steps (1.00: it fits this point). *roofline only* (diagnostic, the earlier "
    "check): (1 + accepted / step) / R(B, 1 + drafted / step) at the client's *decode batch* (Little's law), "
    "a decode-step speedup that prices `off` with the speculative engine's t(B, 1) and leaves out the time "
    "outside decode steps. n/a: see the Roofline check section."
)


def roofline_table(
    rows: Sequence[dict[str, Any]], workload: str, modes: Sequence[str]
) -> list[str]:
    """The per-point roofline check of one workload as markdown lines (none if no point has it)."""
    checked = [
        r
        for r in rows
        if r["workload"] == workload
        and not r["peer"]
        and (r.get("roofline_error") is not None or r.get("roofline_only_error") is not None)
    ]
    if not checked:
        return []
    lines = ["Roofline check: speedup over `off` predicted from the `off` run and the calibrated roofline:", "",
             ("| concurrency | mode | decode batch | batch / step: off; spec | drafted / step | accepted / step "
              "| step model / observed | off decode share | decode ms / token: off; spec | r | predicted | measured "
              "| error | roofline only | its error |"),
             "|---" * 15 + "|"]  # fmt: skip
    for r in sorted(checked, key=lambda r: (r["concurrency"], modes.index(r["mode"]))):
        lines.append(
            f"| {r['concurrency']} | `{r['mode']}` | {_na(r['mean_decode_batch'], '.1f')} "
            f"| {_na(r['off_step_batch'], '.1f')}; {_na(r['spec_step_batch'], '.1f')} "
            f"| {_na(r['drafted_per_step'])} | {_na(r['accepted_per_step'])} | {_na(r['step_model_ratio'])} "
            f"| {_na(r['off_decode_share'])} "
            f"| {_na(r['off_decode_ms_per_token'])}; {_na(r['spec_decode_ms_per_token'])} "
            f"| {_na(r['decode_cost_ratio'], '.3f')} | {_na(r['roofline_speedup'], '.3f')} | {_na(r['speedup'], '.3f')} "
            f"| {_signed_pct(r['roofline_error'])} | {_na(r['roofline_only_speedup'], '.3f')} "
            f"| {_signed_pct(r['roofline_only_error'])} |"
        )
    return [*lines, "", ROOFLINE_LEGEND, ""]


def _error_sentence(stats: dict[str, Any]) -> str:
    return (
        f"mean {_pct(stats['mean_abs_error'])}, max {_pct(stats['max_abs_error'])}, mean signed error "
        f"{_pct(stats['mean_signed_error'])} (positive: the model is optimistic). By mode: "
        + ", ".join(f"`{m}` {_pct(v)}" for m, v in stats["median_abs_error_by_mode"].items())
        + "."
    )


def roofline_section(roofline: dict[str, Any], rows: Sequence[dict[str, Any]]) -> list[str]:
    """The summary's closing Roofline check section: the headline error, or why there is none."""
    lines = ["## Roofline check", ""]
    only = roofline["roofline_only"]
    reasons = "; ".join(roofline["unavailable"])
    if roofline["median_abs_error"] is not None:
        verdict = "meets" if roofline["met"] else "**misses**"
        checked = [r for r in rows if r["roofline_error"] is not None and not r["peer"]]
        calibrations = sorted({r["roofline_calibration"] for r in checked})
        lines += [
            f"Median absolute relative error of the speedup predicted from `off` and the roofline: "
            f"**{_pct(roofline['median_abs_error'])}** over {roofline['points']} speculative gateway points "
            f"({verdict} the {_pct(roofline['target'])} target); " + _error_sentence(roofline),
            "",
        ]
        if reasons:
            lines += [f"Points without a prediction: {reasons}.", ""]
        lines += [
            (
                "Prediction: the speculative run's wall time is `off`'s time outside its decode-only steps plus "
                "`off`'s decode-only time scaled by r, the roofline's decode seconds per emitted token over "
                "`off`'s measured ones; the roofline is the planner for the served model's config.json on the "
                "controller's hardware preset, calibrated with the (t0, per-token, scale) the controller "
                f"reported after each point (source: {', '.join(calibrations)}), at the speculative gateway's "
                "batch per step and the mean context length, with acceptance per position from the point's "
                "`/metrics` delta (per decode request-step, so steps where ngram found no match count as zero "
                "drafts). Measured: tokens/s of the mode over `off`'s."
            ),
            "",
        ]
    elif only["median_abs_error"] is not None:
        lines += [
            (
                f"**No prediction from `off`** (the check is n/a): {reasons or 'unknown'}. "
                "Rerun the sweep with the current gateway to get it."
            ),
            "",
        ]
    else:
        lines += [
            "No roofline prediction could be made"
            + (f" ({reasons})." if reasons else " (no speculative gateway point)."),
            "",
        ]
    if only["median_abs_error"] is not None:
        lines += [
            f"Diagnostic, not the check: the roofline-only speedup (a decode-step speedup that prices `off` "
            f"with the speculative engine's calibrated t(B, 1) and ignores time outside decode steps) has a "
            f"median absolute error of {_pct(only['median_abs_error'])} over {only['points']} points; "
            + _error_sentence(only),
            "",
        ]
    return lines


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
        lines += roofline_table(rows, workload, modes)
        for path in plots.get(workload, []):
            lines += [f"![{Path(path).stem}]({Path(path).name})", ""]
    lines += roofline_section(roofline, rows)
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
