"""`specgate loadtest ...`: argparse subcommands. `run` drives one load test; `sweep` measures
every (workload, concurrency, mode) point with the servers it starts and writes a report;
`report` rebuilds the report from a saved sweep."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from loadtests.datasets import DatasetUnavailable
from loadtests.loadgen import LoadResult, LoadSpec, run_load
from loadtests.metrics_scrape import (
    MetricsSnapshot,
    SpecDecodeDelta,
    scrape_metrics,
    spec_decode_delta,
)
from loadtests.replay import __doc__ as replay_doc
from loadtests.replay import add_replay_commands
from loadtests.stream_request import RequestRecord
from loadtests.workloads import WORKLOAD_NAMES, Workload, load_workload

DEFAULT_URL = "http://127.0.0.1:8000/v1"
CLOSED_LOOP_CONCURRENCY = 4
OPEN_LOOP_CONCURRENCY = 1024
"""Open loop: the in-flight cap is high enough not to throttle arrivals by default."""

Handler = Callable[[argparse.Namespace], int]


def add_run_command(subcommands: argparse._SubParsersAction) -> None:
    run = subcommands.add_parser("run", help="run one load test against a loopback server")
    run.add_argument(
        "--url", default=DEFAULT_URL, help=f"API base URL, loopback only (default {DEFAULT_URL})"
    )
    run.add_argument("--model", required=True, help="model name sent in each request")
    run.add_argument("--workload", default="mtbench", choices=WORKLOAD_NAMES)
    run.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help=f"closed loop: workers (default {CLOSED_LOOP_CONCURRENCY}); "
        f"open loop: cap on requests in flight (default {OPEN_LOOP_CONCURRENCY})",
    )
    run.add_argument("--num-requests", type=int, default=32)
    run.add_argument(
        "--rate",
        type=float,
        default=None,
        help="open loop: Poisson arrivals at this many requests/s (default: closed loop)",
    )
    run.add_argument(
        "--max-duration", type=float, default=300.0, help="wall-clock bound in seconds"
    )
    run.add_argument(
        "--warmup", type=int, default=0, help="warm-up requests, excluded from the stats"
    )
    run.add_argument(
        "--max-tokens", type=int, default=None, help="override the workload's max output tokens"
    )
    run.add_argument(
        "--limit", type=int, default=None, help="use only the first N prompts of the workload"
    )
    run.add_argument("--timeout", type=float, default=120.0, help="per-request timeout in seconds")
    run.add_argument("--seed", type=int, default=0, help="seed of the open-loop arrival times")
    run.add_argument(
        "--api-key",
        default=os.environ.get("SPECGATE_API_KEY"),
        help="bearer token (default: $SPECGATE_API_KEY)",
    )
    run.add_argument(
        "--no-metrics", action="store_true", help="do not scrape /metrics before and after"
    )
    run.add_argument(
        "--no-records", action="store_true", help="leave per-request records out of the JSON"
    )
    run.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    run.set_defaults(handler=run_command)


def add_sweep_command(subcommands: argparse._SubParsersAction) -> None:
    from loadtests.sweep import DEFAULT_CONCURRENCY, DEFAULT_ENGINE_ARGS, DEFAULT_MODES

    sweep = subcommands.add_parser(
        "sweep",
        help="measure every (workload, concurrency, mode) point and write a report",
        description="Start the servers the modes need (on loopback), run each concurrency level "
        "with every mode back to back (rotating order), record client figures, /metrics "
        "acceptance and the controller's status per point, then write the report to OUT. "
        "Modes: off (gateway, speculation off in the engine); fixed:K, table:[[lo,hi,K],...], "
        "adaptive (one ngram gateway, switched by PUT /v1/speculative); vllm:off and vllm:fixed:K "
        "(vLLM's own OpenAI server with the same engine flags).",
    )
    sweep.add_argument("--workload", default="humaneval", help="workload name(s), comma-separated")
    sweep.add_argument("--concurrency", default=DEFAULT_CONCURRENCY, help="closed-loop levels")
    sweep.add_argument(
        "--modes", default=DEFAULT_MODES, help=f"comma-separated (default {DEFAULT_MODES})"
    )
    sweep.add_argument(
        "--out", type=Path, required=True, help="folder for sweep.json and the report"
    )
    sweep.add_argument(
        "--gamma-max", type=int, default=8, help="γ ceiling of the speculative gateway"
    )
    sweep.add_argument("--max-tokens", type=int, default=None, help="output tokens per request")
    sweep.add_argument(
        "--requests-per-worker", type=float, default=2.0,
        help="measured requests per point: max(--min-requests, this × concurrency)",
    )  # fmt: skip
    sweep.add_argument("--min-requests", type=int, default=6)
    sweep.add_argument(
        "--warmup-max", type=int, default=16,
        help="warm-up requests per point: min(this, max(2, concurrency // 2)); 0: none",
    )  # fmt: skip
    sweep.add_argument(
        "--point-max-seconds", type=float, default=600.0, help="wall-clock cap per point"
    )
    sweep.add_argument(
        "--timeout", type=float, default=300.0, help="per-request timeout in seconds"
    )
    sweep.add_argument("--model", default=None, help="model folder (default: the embedded model)")
    sweep.add_argument(
        "--gateway-args", default="", help="extra `specgate serve` flags for every server"
    )
    sweep.add_argument(
        "--engine-args", default=DEFAULT_ENGINE_ARGS,
        help=f"vLLM engine flags for every server (default {DEFAULT_ENGINE_ARGS!r})",
    )  # fmt: skip
    sweep.add_argument(
        "--kv-cache-gib", type=int, default=2,
        help="VLLM_CPU_KVCACHE_SPACE for the engines started (CPU backend); 0 leaves it unset",
    )  # fmt: skip
    sweep.add_argument(
        "--one-server-at-a-time", action="store_true",
        help="run each server's modes with only that server up (less memory; off no longer "
        "alternates with the speculative modes)",
    )  # fmt: skip
    sweep.add_argument(
        "--log-dir", type=Path, default=None, help="server logs (default: a temp folder)"
    )
    sweep.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    sweep.set_defaults(handler=sweep_command)


def add_report_command(subcommands: argparse._SubParsersAction) -> None:
    report = subcommands.add_parser(
        "report",
        help="rebuild a sweep's report (JSON, CSV, PNGs, markdown) from its sweep.json",
    )
    report.add_argument("dir", type=Path, help="sweep folder (or its sweep.json)")
    report.add_argument("--out", type=Path, default=None, help="write here instead of DIR")
    report.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    report.set_defaults(handler=report_command)


def build_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """The parser and its subcommand set, so further subcommands can register themselves."""
    parser = argparse.ArgumentParser(
        prog="specgate loadtest", description="load generator for OpenAI-compatible servers"
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_run_command(subcommands)
    add_sweep_command(subcommands)
    add_report_command(subcommands)
    add_replay_commands(subcommands.add_parser(
        "replay", help="replay γ policies offline on recorded greedy outputs (noise-free A/B)",
        description=replay_doc, formatter_class=argparse.RawDescriptionHelpFormatter))
    return parser, subcommands


@dataclass(slots=True)
class RunOutcome:
    result: LoadResult
    spec_decode: SpecDecodeDelta | None
    metrics_error: str | None


async def _try_scrape(base_url: str) -> tuple[MetricsSnapshot | None, str | None]:
    try:
        return await scrape_metrics(base_url), None
    except Exception as exc:  # metrics are optional: say why they are missing, keep the run
        return None, f"{type(exc).__name__}: {exc}"


async def run_with_metrics(
    spec: LoadSpec,
    workload: Workload,
    *,
    scrape: bool,
    on_record: Callable[[RequestRecord], None] | None = None,
) -> RunOutcome:
    """One load test framed by two /metrics scrapes (best effort) for spec-decode stats."""
    before, error = await _try_scrape(spec.base_url) if scrape else (None, None)
    result = await run_load(spec, workload.requests, on_record=on_record)
    delta = None
    if before is not None:
        after, error = await _try_scrape(spec.base_url)
        delta = spec_decode_delta(before, after) if after is not None else None
    return RunOutcome(result, delta, error)


def outcome_to_dict(
    outcome: RunOutcome, workload: Workload, include_records: bool
) -> dict[str, Any]:
    return {
        "workload": workload.to_dict(),
        **outcome.result.to_dict(include_records=include_records),
        "spec_decode": None if outcome.spec_decode is None else outcome.spec_decode.to_dict(),
        "metrics_error": outcome.metrics_error,
    }


def run_command(args: argparse.Namespace) -> int:
    from loadtests.console import make_progress, summary_tables

    console = Console(stderr=True)
    default_concurrency = CLOSED_LOOP_CONCURRENCY if args.rate is None else OPEN_LOOP_CONCURRENCY
    try:
        spec = LoadSpec(
            base_url=args.url,
            model=args.model,
            concurrency=args.concurrency or default_concurrency,
            num_requests=args.num_requests,
            max_duration_seconds=args.max_duration,
            rate_per_second=args.rate,
            warmup_requests=args.warmup,
            api_key=args.api_key,
            timeout_seconds=args.timeout,
            seed=args.seed,
        )
        workload = load_workload(args.workload, limit=args.limit, max_tokens=args.max_tokens)
    except (ValueError, DatasetUnavailable) as exc:
        console.print(f"[red]specgate loadtest: {exc}")
        return 2

    console.print(
        f"workload {workload.name}: {workload.description} ({len(workload.requests)} prompts)"
    )
    with make_progress(console) as progress:
        task = progress.add_task("requests", total=spec.num_requests, errors=0)
        errors = 0

        def on_record(record: RequestRecord) -> None:
            nonlocal errors
            if record.warmup:
                return
            errors += not record.ok
            progress.update(task, advance=1, errors=errors)

        try:
            outcome = asyncio.run(
                run_with_metrics(spec, workload, scrape=not args.no_metrics, on_record=on_record)
            )
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: connections closed, no results written")
            return 130

    output = Console()
    for table in summary_tables(outcome.result, outcome.spec_decode):
        output.print(table)
    if outcome.metrics_error and not args.no_metrics:
        console.print(f"[yellow]/metrics not used: {outcome.metrics_error}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        data = outcome_to_dict(outcome, workload, include_records=not args.no_records)
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        console.print(f"results written to {args.json}")
    return 0 if outcome.result.summary.num_ok > 0 else 1


def print_report_summary(console: Console, analysis: dict[str, Any], out_dir: Path) -> None:
    from loadtests.report import describe_crossover

    for workload, summary in analysis["workloads"].items():
        console.print(
            f"[bold]{workload}[/bold]: crossover {describe_crossover(summary['crossover'])}"
        )
        controller = summary.get("controller")
        if controller and controller["adaptive_over_best_fixed_geomean"] is not None:
            console.print(
                f"  adaptive / best fixed per point: min {controller['adaptive_over_best_fixed_min']:.3f}, "
                f"geomean {controller['adaptive_over_best_fixed_geomean']:.3f}; / best single "
                f"({controller['best_single_fixed']}): {controller['adaptive_over_best_single_fixed_geomean']:.3f}"
            )
    roofline = analysis["roofline"]
    if roofline["median_abs_error"] is None:
        why = "; ".join(roofline["unavailable"]) or "no speculative gateway point"
        console.print(f"roofline check: n/a ({why})")
    else:
        verdict = "met" if roofline["met"] else "[red]missed[/red]"
        console.print(
            f"roofline check: median |predicted − measured| / measured = "
            f"{roofline['median_abs_error']:.1%} over {roofline['points']} points "
            f"(target {roofline['target']:.0%}: {verdict})"
        )
    console.print(f"report written to {out_dir}")


def sweep_command(args: argparse.Namespace) -> int:
    from loadtests.console import RichSweepProgress
    from loadtests.report import build_report
    from loadtests.sweep import config_from_args, run_sweep

    console = Console(stderr=True)
    try:
        config = config_from_args(args)
        if not config.modes:
            raise ValueError("no modes")
    except ValueError as exc:
        console.print(f"[red]specgate loadtest sweep: {exc}")
        return 2
    argv = getattr(args, "argv", None)
    command = "specgate loadtest " + shlex.join(argv) if argv else None
    try:
        with RichSweepProgress(console) as progress:
            path = run_sweep(config, args.out, progress, log_dir=args.log_dir, command=command)
    except KeyboardInterrupt:
        console.print(
            f"[yellow]interrupted: servers stopped; points so far are in {args.out}/sweep.json"
        )
        return 130
    except (DatasetUnavailable, RuntimeError, TimeoutError) as exc:
        console.print(f"[red]specgate loadtest sweep: {exc}")
        return 1
    analysis = build_report(path, plots=not args.no_plots)
    print_report_summary(Console(), analysis, args.out)
    errors = sum(row["num_errors"] for row in analysis["rows"])
    if errors:
        console.print(f"[yellow]{errors} failed requests over the sweep (see points.csv)")
    return 0


def report_command(args: argparse.Namespace) -> int:
    from loadtests.report import build_report

    console = Console(stderr=True)
    try:
        analysis = build_report(args.dir, args.out, plots=not args.no_plots)
    except (OSError, ValueError, KeyError) as exc:
        console.print(f"[red]specgate loadtest report: {exc}")
        return 2
    print_report_summary(
        Console(), analysis, args.out or (args.dir if args.dir.is_dir() else args.dir.parent)
    )
    return 0


def main(argv: list[str]) -> int:
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
