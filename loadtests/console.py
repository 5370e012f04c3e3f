"""Terminal output for load tests: a progress bar while running, a summary table after."""

from __future__ import annotations

from typing import Self

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from loadtests.loadgen import LoadResult
from loadtests.metrics_scrape import SpecDecodeDelta
from loadtests.stats import LatencyStats


def make_progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("errors: {task.fields[errors]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def _latency_row(table: Table, label: str, stats: LatencyStats) -> None:
    table.add_row(
        label, _ms(stats.p50), _ms(stats.p90), _ms(stats.p99), _ms(stats.mean), str(stats.count)
    )


def summary_tables(result: LoadResult, spec_decode: SpecDecodeDelta | None) -> list[Table]:
    spec, summary = result.spec, result.summary
    mode = (
        "closed loop"
        if spec.rate_per_second is None
        else f"open loop {spec.rate_per_second:g} req/s"
    )
    overview = Table(
        title=f"{spec.model} @ {spec.base_url} — {mode}, concurrency {spec.concurrency}"
    )
    overview.add_column("metric")
    overview.add_column("value", justify="right")
    overview.add_row(
        "requests ok / errors / cancelled",
        f"{summary.num_ok} / {summary.num_errors} / {summary.num_cancelled}",
    )
    overview.add_row("duration (s)", f"{summary.duration_seconds:.2f} ({summary.stop_reason})")
    overview.add_row("output tokens/s", f"{summary.output_tokens_per_second:.1f}")
    overview.add_row("requests/s", f"{summary.requests_per_second:.2f}")
    overview.add_row(
        "output tokens",
        f"{summary.total_output_tokens}"
        + ("" if summary.output_tokens_from_usage else " (some counted from chunks)"),
    )
    for kind, count in sorted(summary.errors_by_kind.items()):
        overview.add_row(f"error: {kind}", str(count), style="red")
    if spec_decode is not None:
        overview.add_row("spec-decode drafts", f"{spec_decode.num_drafts:g}")
        if spec_decode.acceptance_rate is not None:
            overview.add_row("acceptance rate", f"{spec_decode.acceptance_rate:.3f}")
        if spec_decode.mean_acceptance_length is not None:
            overview.add_row("mean acceptance length", f"{spec_decode.mean_acceptance_length:.2f}")
        if spec_decode.per_position_acceptance:
            per_position = ", ".join(
                f"{v:.2f}" for v in spec_decode.per_position_acceptance.values()
            )
            overview.add_row("acceptance per position", per_position)
        for name, value in spec_decode.specgate_gauges.items():
            overview.add_row(name, f"{value:g}")

    latency = Table(title="latency (ms)")
    for column in ("", "p50", "p90", "p99", "mean", "n"):
        latency.add_column(column, justify="right" if column else "left")
    _latency_row(latency, "TTFT", summary.ttft_seconds)
    _latency_row(latency, "TPOT", summary.tpot_seconds)
    _latency_row(latency, "ITL", summary.itl_seconds)
    _latency_row(latency, "E2E", summary.e2e_seconds)
    return [overview, latency]


class RichSweepProgress:
    """Progress bars for `specgate loadtest sweep`: points overall, requests of the current point,
    and one line per finished point (tokens/s, errors, acceptance)."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._points = self._requests = None
        self._errors = 0

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def start(self, total_points: int) -> None:
        self._points = self.progress.add_task("sweep", total=total_points, note="")

    def point_started(self, label: str, num_requests: int) -> None:
        if self._requests is not None:
            self.progress.remove_task(self._requests)
        self._requests = self.progress.add_task(label, total=num_requests, note="errors: 0")
        self._errors = 0

    def request_done(self, record) -> None:
        if self._requests is None or record.warmup:
            return
        self._errors += not record.ok
        self.progress.update(self._requests, advance=1, note=f"errors: {self._errors}")

    def point_done(self, point: dict) -> None:
        client, spec = point["client"], point.get("spec_decode") or {}
        acceptance = spec.get("mean_acceptance_length")
        note = f"{client['output_tokens_per_second']:7.1f} tok/s"
        if acceptance is not None:
            note += f", accepted length {acceptance:.2f}"
        if client["num_errors"]:
            note += f", [red]{client['num_errors']} errors[/red]"
        self.console.print(
            f"{point['workload']} c={point['concurrency']:<3} {point['mode']:<24} {note}"
        )
        if self._points is not None:
            self.progress.update(self._points, advance=1)

    def message(self, text: str) -> None:
        self.console.print(text)
