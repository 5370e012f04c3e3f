"""Gateway overhead: specgate's gateway vs vLLM's own OpenAI server, side by side.

Both serve the same model with the same engine flags (the gateway's `vllm_cli_args`),
both run at once, and each concurrency level alternates between them for several rounds
so that machine noise lands on both. Prints output tokens/s and TTFT p50 per server and
the ratios gateway / vLLM (targets: throughput >= 0.97, TTFT p50 <= 1.05).

Then a paired TTFT probe, finer than the rounds' p50s (at concurrency 1 those move ±5 % from
round to round): the same prompt to each server in turn, one request at a time, order
alternating, after a pause: back to back, whichever went second came out up to 5x slower
(the server that just finished seems to hold the 2 cores for a while).

    python -m loadtests.bench_gateway --workload mtbench --concurrency 1,16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from pathlib import Path

import httpx

from loadtests.loadgen import LoadSpec, run_load
from loadtests.servers import (
    exit_cleanly_on_sigterm,
    running_gateway,
    running_vllm_server,
)
from loadtests.stream_request import RequestRecord, send_streaming_request
from loadtests.workloads import load_workload


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", default="mtbench")
    parser.add_argument("--concurrency", default="1,16")
    # at 2 requests per worker and 3 rounds, c=16 medians moved ±5 % between runs
    parser.add_argument("--requests-per-slot", type=int, default=4, help="requests per worker per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--gateway-args", default="--speculative ngram --gamma-max 4 --gamma-policy fixed:4",
                        help="the peer gets the same engine flags, with vLLM's own scheduler (fixed γ = gamma-max)")
    parser.add_argument("--paired-ttft", type=int, default=30, help="prompts in the paired TTFT probe (0: skip)")
    parser.add_argument("--settle-seconds", type=float, default=1.0, help="pause before each probe request")
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args(argv)


async def measure(base_url: str, model: str, requests, concurrency: int, num_requests: int) -> dict:
    spec = LoadSpec(base_url=base_url, model=model, concurrency=concurrency, num_requests=num_requests,
                    warmup_requests=concurrency, max_duration_seconds=900)
    summary = (await run_load(spec, requests)).summary
    if summary.num_errors:
        raise RuntimeError(f"{summary.num_errors} errors against {base_url}: {summary.errors_by_kind}")
    return {"output_tokens_per_second": summary.output_tokens_per_second, "ttft_p50_seconds": summary.ttft_seconds.p50}


async def paired_ttft(servers: dict, model: str, requests, count: int, settle_seconds: float) -> dict[str, list[float]]:
    """TTFT of each of `count` prompts on every server (max_tokens 1, one request at a time)."""
    ttfts: dict[str, list[float]] = {name: [] for name in servers}
    async with httpx.AsyncClient(timeout=None) as client:
        for index, template in enumerate(requests[:count]):
            names = list(servers) if index % 2 == 0 else list(reversed(servers))
            body = {**template.body, "model": model, "max_tokens": 1, "stream": True}
            for name in names:
                await asyncio.sleep(settle_seconds)
                record = await send_streaming_request(client, servers[name].base_url.rstrip("/") + template.path, body,
                                                      RequestRecord(index, template.endpoint), timeout_seconds=120,
                                                      clock_origin=0.0)
                if not record.ok or record.ttft_seconds is None:
                    raise RuntimeError(f"paired TTFT probe against {name} failed: {record.error_text}")
                ttfts[name].append(record.ttft_seconds)
    return ttfts


def report_paired_ttft(ttfts: dict[str, list[float]]) -> dict:
    gateway, peer = ttfts["gateway"], ttfts["vllm"]
    differences = [g - v for g, v in zip(gateway, peer)]
    ratios = [g / v for g, v in zip(gateway, peer)]
    gateway_median, peer_median = statistics.median(gateway), statistics.median(peer)
    result = {"pairs": len(differences), "gateway_ttft_median_seconds": gateway_median,
              "vllm_ttft_median_seconds": peer_median, "ttft_median_ratio": gateway_median / peer_median,
              "paired_ratio_median": statistics.median(ratios),
              "paired_difference_median_seconds": statistics.median(differences),
              "gateway_slower_pairs": sum(d > 0 for d in differences), "ttfts": ttfts}
    print(f"\npaired TTFT probe ({result['pairs']} prompts, one at a time, max_tokens 1): gateway "
          f"{result['gateway_ttft_median_seconds'] * 1e3:.1f} ms, vLLM {result['vllm_ttft_median_seconds'] * 1e3:.1f} ms "
          f"(medians), ratio {result['ttft_median_ratio']:.3f}; per prompt: ratio median "
          f"{result['paired_ratio_median']:.3f}, difference median "
          f"{result['paired_difference_median_seconds'] * 1e3:+.2f} ms, gateway slower in "
          f"{result['gateway_slower_pairs']} of {result['pairs']}")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_cleanly_on_sigterm()
    from server.engine import resolve_model_path, vllm_cli_args
    from server.settings import ServeSettings

    gateway_args = args.gateway_args.split()
    settings = ServeSettings(_cli_parse_args=gateway_args)
    model_path = resolve_model_path(settings)
    model = settings.served_model_name or model_path.name
    workload = load_workload(args.workload, max_tokens=args.max_tokens)
    levels = [int(c) for c in args.concurrency.split(",")]

    results: dict[int, dict[str, list[dict]]] = {c: {"gateway": [], "vllm": []} for c in levels}
    with running_gateway(gateway_args) as gateway, running_vllm_server(vllm_cli_args(settings, model_path, with_controller=False)) as peer:
        servers = {"gateway": gateway, "vllm": peer}
        for round_index in range(args.rounds):
            for concurrency in levels:
                # alternate which server goes first, so drift over time favours neither
                order = ["gateway", "vllm"] if round_index % 2 == 0 else ["vllm", "gateway"]
                for name in order:
                    point = asyncio.run(measure(servers[name].base_url, model, workload.requests,
                                                concurrency, concurrency * args.requests_per_slot))
                    results[concurrency][name].append(point)
                    print(f"round {round_index} c={concurrency:<3} {name:<8} "
                          f"{point['output_tokens_per_second']:7.1f} tok/s  TTFT p50 {point['ttft_p50_seconds'] * 1e3:7.1f} ms",
                          flush=True)
        ttfts = (asyncio.run(paired_ttft(servers, model, workload.requests, args.paired_ttft, args.settle_seconds))
                 if args.paired_ttft > 0 else None)

    report = {"workload": args.workload, "gateway_args": gateway_args, "rounds": args.rounds, "levels": {}}
    print(f"\n{'conc':>4}  {'gateway tok/s':>13}  {'vLLM tok/s':>10}  {'tok/s ratio':>11}  "
          f"{'gw TTFT p50':>11}  {'vLLM TTFT p50':>13}  {'TTFT ratio':>10}")
    for concurrency in levels:
        gw, peer = results[concurrency]["gateway"], results[concurrency]["vllm"]
        gw_tps = statistics.median(p["output_tokens_per_second"] for p in gw)
        peer_tps = statistics.median(p["output_tokens_per_second"] for p in peer)
        gw_ttft = statistics.median(p["ttft_p50_seconds"] for p in gw)
        peer_ttft = statistics.median(p["ttft_p50_seconds"] for p in peer)
        level = {"gateway_tokens_per_second": gw_tps, "vllm_tokens_per_second": peer_tps,
                 "throughput_ratio": gw_tps / peer_tps, "gateway_ttft_p50_seconds": gw_ttft,
                 "vllm_ttft_p50_seconds": peer_ttft, "ttft_p50_ratio": gw_ttft / peer_ttft, "rounds": results[concurrency]}
        report["levels"][concurrency] = level
        print(f"{concurrency:>4}  {gw_tps:13.1f}  {peer_tps:10.1f}  {level['throughput_ratio']:11.3f}  "
              f"{gw_ttft * 1e3:9.1f}ms  {peer_ttft * 1e3:11.1f}ms  {level['ttft_p50_ratio']:10.3f}")
    if ttfts:
        report["paired_ttft"] = report_paired_ttft(ttfts)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
