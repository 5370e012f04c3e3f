"""A useless draft model (the target's first 6 layers): adaptive γ vs speculation off.

Two gateways side by side: `--speculative draft:<6-layer truncation>` with the adaptive policy,
and `--speculative off`, both without prefix caching (every mode replays the same prompts).
Rounds alternate between them. Target: adaptive ≥ 0.95x off.
For reference the same draft gateway is also measured at fixed:4 (what vLLM would do) and
with its `off` policy (`draft-off`: no drafts, draft model paused — what is left is the cost of
an engine built for speculation, which no γ can remove).

    python -m loadtests.bench_useless_draft --concurrency 1,8 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
from pathlib import Path

import httpx

from loadtests.bench_gamma_policies import run_point
from loadtests.draft_models import truncated_draft
from loadtests.servers import exit_cleanly_on_sigterm, running_gateway
from loadtests.workloads import load_workload
from server.model_prep import prepare_embedded_model

MODEL = "SmolLM2-135M-Instruct"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", default="mtbench")
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--warmup-requests", type=int, default=24, help="lets the controller learn first")
    parser.add_argument("--min-requests", type=int, default=8,
                        help="requests per point: max(this, 2·concurrency); at 4, c=1 points were ±6 %% apart")
    args = parser.parse_args(argv)
    exit_cleanly_on_sigterm()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    workload = load_workload(args.workload, max_tokens=args.max_tokens)
    levels = [int(c) for c in args.concurrency.split(",")]
    draft = truncated_draft(prepare_embedded_model().path, Path(tempfile.mkdtemp(prefix="draft-")) / "draft-6")
    modes = ["off", "adaptive", "fixed:4", "draft-off"]
    results = {c: {mode: [] for mode in modes} for c in levels}
    no_cache = "--vllm-args=--no-enable-prefix-caching"
    with running_gateway(["--speculative", f"draft:{draft}", "--gamma-max", "4", no_cache]) as draft_gw, \
            running_gateway(["--speculative", "off", no_cache]) as off_gw:
        asyncio.run(run_point(draft_gw.base_url, MODEL, workload.requests, 4, args.warmup_requests))
        for round_index in range(args.rounds):
            for concurrency in levels:
                num_requests = max(args.min_requests, 2 * concurrency)
                order = modes if round_index % 2 == 0 else modes[::-1]
                for mode in order:
                    url = off_gw.base_url if mode == "off" else draft_gw.base_url
                    if mode != "off":
                        policy = "off" if mode == "draft-off" else mode
                        httpx.put(f"{draft_gw.base_url}/speculative", json={"policy": policy}).raise_for_status()
                    tps = asyncio.run(run_point(url, MODEL, workload.requests, concurrency, num_requests)).value
                    results[concurrency][mode].append(tps)
                    print(f"round {round_index} c={concurrency:<3} {mode:<9} {tps:7.1f} tok/s", flush=True)
        status = httpx.get(f"{draft_gw.base_url}/speculative").json()
    print(f"\ncontroller: acceptance by position {[round(p, 3) for p in status['acceptance_by_position']]}")
    print(f"{'conc':>4}  {'off':>8}  {'adaptive':>8}  {'fixed:4':>8}  {'draft-off':>9}  {'adaptive/off':>12}  "
          f"{'fixed:4/off':>11}  {'draft-off/off':>13}")
    ratios = []
    for concurrency in levels:
        med = {m: statistics.median(v) for m, v in results[concurrency].items()}
        ratios.append(med["adaptive"] / med["off"])
        print(f"{concurrency:>4}  {med['off']:8.1f}  {med['adaptive']:8.1f}  {med['fixed:4']:8.1f}  "
              f"{med['draft-off']:9.1f}  {med['adaptive'] / med['off']:12.3f}  {med['fixed:4'] / med['off']:11.3f}  "
              f"{med['draft-off'] / med['off']:13.3f}")
    print(f"\nadaptive / off, worst point: {min(ratios):.3f}  (target ≥ 0.95)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
