"""γ policies side by side on real prompts: adaptive vs off vs fixed γ vs vLLM's batch-size table.

One gateway (ngram, γ ≤ gamma_max) switches policy at run time through PUT /v1/speculative;
`off` is its `off` policy (no drafts proposed or verified). With `--engine-off` a second
gateway with speculation disabled in the engine is the `off` baseline instead; on a 2-core
machine the second engine's threads disturb the first, so the default is one engine. At each
(workload, concurrency) every mode runs back to back in rotating order, so machine noise
lands on all of them. Prints output tokens/s per mode and the issue's ratios:
adaptive / best mode per point, and geometric means vs the best single fixed setting and
vs the table.

    python -m loadtests.bench_gamma_policies --workloads mtbench,humaneval,squad \
        --concurrency 1,2,4,8,16,32,64 --json loadtests/results/gamma_policies.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
from pathlib import Path

import os

import httpx

from loadtests.loadgen import LoadSpec, run_load
from loadtests.servers import exit_cleanly_on_sigterm, running_gateway
from loadtests.workloads import load_workload

DEFAULT_TABLE = "table:[[1,4,4],[5,16,2],[17,32,1],[33,4096,0]]"  # this CPU's crossover, by hand
DEFAULT_MODES = f"off,fixed:1,fixed:2,fixed:4,fixed:8,{DEFAULT_TABLE},adaptive"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="mtbench,humaneval,squad")
    parser.add_argument("--concurrency", default="1,2,4,8,16,32,64")
    parser.add_argument("--modes", default=DEFAULT_MODES)
    parser.add_argument("--gamma-max", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--min-requests", type=int, default=4, help="requests per point: max(this, per-worker·concurrency)")
    parser.add_argument("--requests-per-worker", type=float, default=2.0)
    parser.add_argument("--gateway-args", default="", help="extra flags for the gateway(s)")
    parser.add_argument("--engine-off", action="store_true", help="`off` = a second gateway with --speculative off")
    parser.add_argument("--json", type=Path, default=None)
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


async def run_point(base_url: str, model: str, requests, concurrency: int, num_requests: int) -> float:
    spec = LoadSpec(base_url=base_url, model=model, concurrency=concurrency, num_requests=num_requests,
                    warmup_requests=min(concurrency, 4), max_duration_seconds=600)
    summary = (await run_load(spec, requests)).summary
    if summary.num_errors:
        raise RuntimeError(f"{summary.num_errors} errors: {summary.errors_by_kind}")
    return summary.output_tokens_per_second


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main(argv=None) -> int:
    args = parse_args(argv)
    exit_cleanly_on_sigterm()
    modes = split_modes(args.modes)
    levels = [int(c) for c in args.concurrency.split(",")]
    extra = args.gateway_args.split()
    model = "SmolLM2-135M-Instruct"
    results: dict[str, dict[int, dict[str, float]]] = {}
    # Two engines side by side: 2 GiB of KV cache each holds 64 × (prompt + 128) tokens with room.
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    with contextlib.ExitStack() as stack:
        spec_gw = stack.enter_context(running_gateway(["--speculative", "ngram", "--gamma-max", str(args.gamma_max), *extra]))
        off_gw = stack.enter_context(running_gateway(["--speculative", "off", *extra])) if args.engine_off else None
        for workload_name in args.workloads.split(","):
            workload = load_workload(workload_name, max_tokens=args.max_tokens)
            results[workload_name] = {}
            for level_index, concurrency in enumerate(levels):
                point = results[workload_name][concurrency] = {}
                rotation = level_index % len(modes)
                for mode in modes[rotation:] + modes[:rotation]:
                    if mode == "off" and off_gw is not None:
                        url = off_gw.base_url
                    else:
                        url = spec_gw.base_url
                        httpx.put(f"{spec_gw.base_url}/speculative", json={"policy": mode}, timeout=30).raise_for_status()
                    num_requests = max(args.min_requests, round(args.requests_per_worker * concurrency))
                    point[mode] = asyncio.run(run_point(url, model, workload.requests, concurrency, num_requests))
                    print(f"{workload_name:<10} c={concurrency:<3} {mode:<40} {point[mode]:8.1f} tok/s", flush=True)
    return report(results, modes, args.json)


def report(results, modes, json_path) -> int:
    fixed_modes = [m for m in modes if m == "off" or m.startswith("fixed:")]
    table_modes = [m for m in modes if m.startswith("table:")]
    print()
    summary = {"points": results, "per_point": [], "modes": modes}
    ratios_best, ratios_table = [], []
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
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
