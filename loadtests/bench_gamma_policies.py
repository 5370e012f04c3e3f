"""γ policies side by side on real prompts: adaptive vs off vs fixed γ vs vLLM's batch-size table.

One gateway (ngram, γ ≤ gamma_max) switches policy at run time through PUT /v1/speculative;
`off` is its `off` policy (no drafts proposed or verified). Prefix caching is off (as in the
sweep): every mode replays the same prompts, and with it the first mode at each concurrency
would pay the new prompts' prefills that the later ones skip. With `--engine-off` a second
gateway with speculation disabled in the engine is the `off` baseline instead; on a 2-core
machine the second engine's threads disturb the first, so the default is one engine. At each
(workload, concurrency) every mode runs back to back in rotating order, so machine noise
lands on all of them; with `--rounds R` every mode runs R times per point, each round in
another order, and the point reports the mean. Prints output tokens/s per mode and the issue's ratios:
adaptive / best mode per point, and geometric means vs the best single fixed setting and
vs the table. Throughput is steady-state (tokens/s until the last request is sent: the
closed loop's drain is packing luck); the whole-run figure is printed beside it.

    python -m loadtests.bench_gamma_policies --workloads mtbench,humaneval,squad \
        --concurrency 1,2,4,8,16,32,64 --json loadtests/results/gamma_policies.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from loadtests.loadgen import LoadSpec, run_load
from loadtests.metrics_scrape import histogram_delta, histogram_totals, metrics_url
from loadtests.servers import exit_cleanly_on_sigterm, running_gateway
from loadtests.stats import steady_output_tokens_per_second
from loadtests.workloads import load_workload

DEFAULT_TABLE = "table:[[1,4,4],[5,16,2],[17,32,1],[33,4096,0]]"  # this CPU's crossover, by hand
DEFAULT_MODES = f"off,fixed:1,fixed:2,fixed:4,fixed:8,{DEFAULT_TABLE},adaptive"
SERVED_MODEL = "SmolLM2-135M-Instruct"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="mtbench,humaneval,squad")
    parser.add_argument("--concurrency", default="1,2,4,8,16,32,64")
    parser.add_argument("--modes", default=DEFAULT_MODES)
    parser.add_argument("--gamma-max", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--min-requests", type=int, default=4, help="requests per point: max(this, per-worker·concurrency)")
    parser.add_argument("--requests-per-worker", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every mode this many times per point, each round in another order; report the mean")
    parser.add_argument("--gateway-args", default="--vllm-args=--no-enable-prefix-caching",
                        help="extra flags for the gateway(s)")
    parser.add_argument("--engine-off", action="store_true", help="`off` = a second gateway with --speculative off")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--from-json", type=Path, default=None, help="print the report of a saved run; run nothing")
    return parser.parse_args(argv)


def split_modes(text: str) -> list[str]:
    """Comma-separated modes; table JSON contains commas, so split only outside brackets."""
    modes, depth, current = [], 0, ""
    for char in text:
        depth += char == "["
        depth -= char == "]"
        if char == "," and depth == 0:
            modes.append(current)
            current = ""
        else:
            current += char
    return [m for m in [*modes, current] if m]


@dataclass(slots=True, frozen=True)
class PointThroughput:
    steady: float | None  # output tokens/s while every worker is busy (loadtests.stats)
    whole: float  # output tokens/s over the whole run, drain included

    @property
    def value(self) -> float:
        """What the ratios use: steady-state where the run has one (the drain is packing luck)."""
        return self.whole if self.steady is None else self.steady


async def run_point(base_url: str, model: str, requests, concurrency: int, num_requests: int) -> PointThroughput:
    spec = LoadSpec(base_url=base_url, model=model, concurrency=concurrency, num_requests=num_requests,
                    warmup_requests=min(concurrency, 4), max_duration_seconds=600)
    result = await run_load(spec, requests)
    if result.summary.num_errors:
        raise RuntimeError(f"{result.summary.num_errors} errors: {result.summary.errors_by_kind}")
    return PointThroughput(steady_output_tokens_per_second(result.records), result.summary.output_tokens_per_second)


def measure_mode(url: str, policy: str | None, requests, concurrency: int,
                 num_requests: int) -> tuple[PointThroughput, dict]:
    """One closed-loop run, after switching the gateway to `policy` (None: leave it, the separate
    `off` engine): its throughput and the engine's step profile meanwhile."""
    if policy is not None:
        httpx.put(f"{url}/speculative", json={"policy": policy}, timeout=30).raise_for_status()
    before, started = scrape_histograms(url), time.perf_counter()
    measured = asyncio.run(run_point(url, SERVED_MODEL, requests, concurrency, num_requests))
    return measured, step_profile(before, scrape_histograms(url), time.perf_counter() - started)


def mean_of(runs: list[PointThroughput], attribute: str) -> float:
    return sum(getattr(run, attribute) for run in runs) / len(runs)


def step_profile(before: dict, after: dict, wall_seconds: float) -> dict[str, float | None]:
    """What the engine's steps looked like during one run, from specgate's histograms: mean γ,
    batch, accepted tokens and decode-step seconds (observed vs the controller's prediction),
    and wall seconds per step (everything the engine did, not only the timed decode steps)."""
    delta = histogram_delta(before, after)
    mean = {name.removeprefix("specgate_"): entry["mean"] for name, entry in delta.items()}
    steps = delta.get("specgate_batch_size", {}).get("count") or 0
    return {"steps": steps, "wall_seconds_per_step": wall_seconds / steps if steps else None,
            "mean_gamma": mean.get("gamma_chosen"), "mean_batch": mean.get("batch_size"),
            "mean_accepted_tokens": mean.get("accepted_tokens_per_step"),
            "observed_step_seconds": mean.get("observed_step_seconds"),
            "predicted_step_seconds": mean.get("predicted_step_seconds")}


def scrape_histograms(base_url: str) -> dict:
    return histogram_totals(httpx.get(metrics_url(base_url), timeout=30).text)


def format_profile(profile: dict) -> str:
    def show(key: str, scale: float = 1.0, digits: int = 2) -> str:
        value = profile.get(key)
        return "-" if value is None else f"{value * scale:.{digits}f}"
    return (f"γ {show('mean_gamma')}  B {show('mean_batch', digits=1)}  acc/step {show('mean_accepted_tokens', digits=1)}"
            f"  step ms obs {show('observed_step_seconds', 1e3, 1)} pred {show('predicted_step_seconds', 1e3, 1)}"
            f" wall {show('wall_seconds_per_step', 1e3, 1)}")


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        points = {w: {int(c): p for c, p in levels.items()} for w, levels in saved["points"].items()}
        return report(points, saved["modes"], args.json, saved.get("step_profiles"))
    exit_cleanly_on_sigterm()
    modes = split_modes(args.modes)
    levels = [int(c) for c in args.concurrency.split(",")]
    extra = args.gateway_args.split()
    results: dict[str, dict[int, dict[str, float]]] = {}
    profiles: dict[str, dict[int, dict[str, dict]]] = {}
    # Two engines side by side: 2 GiB of KV cache each holds 64 × (prompt + 128) tokens with room.
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    with contextlib.ExitStack() as stack:
        spec_gw = stack.enter_context(running_gateway(["--speculative", "ngram", "--gamma-max", str(args.gamma_max), *extra]))
        off_gw = stack.enter_context(running_gateway(["--speculative", "off", *extra])) if args.engine_off else None
        for workload_name in args.workloads.split(","):
            workload = load_workload(workload_name, max_tokens=args.max_tokens)
            results[workload_name], profiles[workload_name] = {}, {}
            for level_index, concurrency in enumerate(levels):
                runs: dict[str, list[PointThroughput]] = {mode: [] for mode in modes}
                point_profiles = profiles[workload_name][concurrency] = {}
                num_requests = max(args.min_requests, round(args.requests_per_worker * concurrency))
                for round_index in range(args.rounds):
                    rotation = (level_index + round_index) % len(modes)
                    for mode in modes[rotation:] + modes[:rotation]:
                        separate_off = mode == "off" and off_gw is not None
                        url, policy = (off_gw.base_url, None) if separate_off else (spec_gw.base_url, mode)
                        measured, profile = measure_mode(url, policy, workload.requests, concurrency, num_requests)
                        runs[mode].append(measured)
                        point_profiles[mode] = {**profile, "whole_run_tokens_per_second": mean_of(runs[mode], "whole"),
                                                "rounds_tokens_per_second": [r.value for r in runs[mode]]}
                        print(f"{workload_name:<10} c={concurrency:<3} {mode:<40} {measured.value:8.1f} tok/s "
                              f"(whole run {measured.whole:6.1f})  {format_profile(profile)}", flush=True)
                results[workload_name][concurrency] = {mode: mean_of(runs[mode], "value") for mode in modes}
    return report(results, modes, args.json, profiles)


def table_twin(table_mode: str, concurrency: int, modes: list[str]) -> str | None:
    """The fixed mode that a table policy equals at this concurrency (same γ at every batch
    1..c), if the run has one: two runs of the same policy, so their gap is the noise."""
    rows = json.loads(table_mode.removeprefix("table:"))
    gammas = {next((k for lo, hi, k in rows if lo <= b <= hi), None) for b in range(1, concurrency + 1)}
    if len(gammas) != 1 or None in gammas:
        return None
    twin = "off" if gammas == {0} else f"fixed:{gammas.pop()}"
    return twin if twin in modes else None


def whole_run_points(profiles: dict) -> dict:
    """The same points in whole-run throughput (drain included), from the step profiles."""
    return {w: {int(c): {m: p["whole_run_tokens_per_second"] for m, p in point.items()}
                for c, point in levels.items()} for w, levels in profiles.items()}


def report(results, modes, json_path, profiles=None) -> int:
    """Ratios on steady-state throughput, then (where profiles carry it) the same on whole-run."""
    summary = {"points": results, "modes": modes, "step_profiles": profiles or {}, **ratios_report(results, modes)}
    whole_ok = profiles and all("whole_run_tokens_per_second" in p for levels in profiles.values()
                                for point in levels.values() for p in point.values())
    if whole_ok:
        print("\n--- the same on whole-run throughput (the drain included) ---")
        summary["whole_run"] = ratios_report(whole_run_points(profiles), modes)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(summary, indent=2))
    return 0


def ratios_report(results, modes) -> dict:
    """Print the per-point table and the issue's ratios; return them."""
    fixed_modes = [m for m in modes if m == "off" or m.startswith("fixed:")]
    table_modes = [m for m in modes if m.startswith("table:")]
    print()
    summary = {"per_point": []}
    ratios_best, ratios_table, twin_gaps = [], [], []
    by_fixed_mode = {m: [] for m in fixed_modes}
    adaptive_all = []
    for workload, levels in results.items():
        header = f"{workload:<10} {'conc':>4} " + " ".join(f"{m[:12]:>12}" for m in modes) + "  adaptive/best"
        print(header)
        for concurrency, point in levels.items():
            best_other = max(v for m, v in point.items() if m != "adaptive")
            ratio = point["adaptive"] / best_other
            ratios_best.append(ratio)
            adaptive_all.append(point["adaptive"])
            for m in fixed_modes:
                by_fixed_mode[m].append(point[m])
            if table_modes:
                ratios_table.append(point["adaptive"] / point[table_modes[0]])
                twin = table_twin(table_modes[0], concurrency, modes)
                if twin is not None:
                    twin_gaps.append(abs(point[twin] / point[table_modes[0]] - 1))
            summary["per_point"].append({"workload": workload, "concurrency": concurrency,
                                         "adaptive_over_best": ratio})
            print(f"{'':<10} {concurrency:>4} " + " ".join(f"{point[m]:12.1f}" for m in modes) + f"  {ratio:12.3f}")
    best_single = max(fixed_modes, key=lambda m: geomean(by_fixed_mode[m]))
    over_single = geomean([a / f for a, f in zip(adaptive_all, by_fixed_mode[best_single])])
    summary.update(min_adaptive_over_best=min(ratios_best), best_single_fixed=best_single,
                   adaptive_over_best_single_geomean=over_single,
                   adaptive_over_table_geomean=geomean(ratios_table) if ratios_table else None)
    print(f"\nadaptive / best mode per point: min {min(ratios_best):.3f}, geomean {geomean(ratios_best):.3f}"
          f"  (target ≥ 0.98 everywhere)")
    print(f"adaptive / best single setting ({best_single}), geomean: {over_single:.3f}  (target ≥ 1.05)")
    if ratios_table:
        print(f"adaptive / vLLM table ({table_modes[0]}), geomean: {geomean(ratios_table):.3f}  (target ≥ 1.0)")
    if twin_gaps:
        summary["identical_policy_gaps"] = twin_gaps
        print(f"noise: where the table equals a fixed mode (same policy run twice), |gap| mean "
              f"{sum(twin_gaps) / len(twin_gaps):.3f}, max {max(twin_gaps):.3f} over {len(twin_gaps)} points")
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
