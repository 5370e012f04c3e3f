"""Benchmark GammaPlanner.optimal, the call the controller makes every scheduling step.

Prints per-call microseconds (median and p99) at γ_max = 16 against the 20 µs budget, for:
  warm        the same (batch, seq bucket) as the previous call: cost ratios come from the cache
  cold        a new (batch, seq) every call: C(B, q, S) for q = 1..17 is computed afresh
  per-position  a per-position acceptance vector instead of a scalar α (warm)
  draft-model   cold, with a draft model's roofline step as the draft cost

usage: python loadtests/bench_roofline.py [--model llama-3.1-8b] [--hardware h100-sxm] [--calls 50000]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roofline import load_hardware, load_model  # noqa: E402
from roofline.planner import GammaPlanner  # noqa: E402

BUDGET_MICROSECONDS = 20.0
GAMMA_MAX = 16


def time_calls(call, arguments: list[tuple]) -> list[float]:
    """Microseconds per call, one timing per call (perf_counter_ns costs ~0.1 µs of it)."""
    clock = time.perf_counter_ns
    samples = []
    gc.disable()
    try:
        for args in arguments:
            start = clock()
            call(*args)
            samples.append((clock() - start) / 1e3)
    finally:
        gc.enable()
    return samples


def summary(name: str, samples: list[float]) -> dict:
    ordered = sorted(samples)
    median = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {
        "case": name,
        "calls": len(samples),
        "median_us": median,
        "p99_us": p99,
        "median_over_budget": median / BUDGET_MICROSECONDS,
        "p99_over_budget": p99 / BUDGET_MICROSECONDS,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="llama-3.1-8b")
    parser.add_argument("--hardware", default="h100-sxm")
    parser.add_argument("--draft-model", default="smollm2-135m")
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    model, hardware = load_model(args.model), load_hardware(args.hardware)
    planner = GammaPlanner(model, hardware, gamma_max=GAMMA_MAX, draft_cost_ratio=0.05)
    drafted = GammaPlanner(model, hardware, gamma_max=GAMMA_MAX, draft_model=load_model(args.draft_model))
    calls = args.calls
    cold_calls = min(calls, 20_000)

    def cold(planner: GammaPlanner):
        # A new seq bucket every call (a cache holds 4096 entries: clear it to stay cold).
        def call(batch: int, seq_len: int, acceptance):
            planner._cache.clear()
            return planner.optimal(batch, seq_len, acceptance)

        return call

    warm_args = [(16, 1024, 0.6)] * calls
    cold_args = [(1 + i % 256, 64 + 37 * i, 0.6) for i in range(cold_calls)]
    vector_args = [(16, 1024, [0.77, 0.63, 0.48, 0.40])] * calls
    planner.optimal(16, 1024, 0.6)
    time_calls(planner.optimal, warm_args[:1000])  # warm the interpreter
    results = [
        summary("warm (cached B, seq bucket)", time_calls(planner.optimal, warm_args)),
        summary("cold (new B, seq every call)", time_calls(cold(planner), cold_args)),
        summary("per-position acceptance, warm", time_calls(planner.optimal, vector_args)),
        summary("draft model, cold", time_calls(cold(drafted), cold_args)),
    ]
    clear_cost = summary("cache.clear() alone", time_calls(lambda: planner._cache.clear(), [()] * cold_calls))

    if args.json:
        print(
            json.dumps(
                {"model": model.name, "hardware": hardware.name, "gamma_max": GAMMA_MAX, "results": results}, indent=2
            )
        )
        return 0
    print(
        f"GammaPlanner.optimal, {model.name} on {hardware.name}, gamma_max={GAMMA_MAX}, budget {BUDGET_MICROSECONDS:g} us"
    )
    print(f"{'case':32} {'calls':>7} {'median us':>10} {'p99 us':>8} {'median/budget':>14} {'p99/budget':>11}")
    for r in results:
        print(
            f"{r['case']:32} {r['calls']:>7} {r['median_us']:>10.2f} {r['p99_us']:>8.2f} "
            f"{r['median_over_budget']:>14.2f} {r['p99_over_budget']:>11.2f}"
        )
    print(f"(cold rows include a cache.clear(): {clear_cost['median_us']:.2f} us median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
