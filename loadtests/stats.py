"""Reduce request records to a run summary: throughput, latency percentiles, errors."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from loadtests.stream_request import RequestRecord

PERCENTILES = (50, 90, 99)


@dataclass(slots=True, frozen=True)
class LatencyStats:
    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, values: Iterable[float]) -> LatencyStats:
        samples = np.fromiter(values, dtype=float)
        if samples.size == 0:
            return cls(count=0, mean=None, p50=None, p90=None, p99=None, max=None)
        p50, p90, p99 = (float(v) for v in np.percentile(samples, PERCENTILES))
        return cls(
            count=int(samples.size),
            mean=float(samples.mean()),
            p50=p50,
            p90=p90,
            p99=p99,
            max=float(samples.max()),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True, frozen=True)
class RunSummary:
    duration_seconds: float
    num_requests: int
    num_ok: int
    num_errors: int
    num_cancelled: int
    """Requests still in flight when the run hit its max duration."""
    errors_by_kind: dict[str, int]
    total_output_tokens: int
    total_prompt_tokens: int
    output_tokens_per_second: float
    requests_per_second: float
    ttft_seconds: LatencyStats
    tpot_seconds: LatencyStats
    itl_seconds: LatencyStats
    e2e_seconds: LatencyStats
    output_tokens: LatencyStats
    output_tokens_from_usage: bool
    """False if any successful request had to fall back to counting chunks."""
    stop_reason: str = "completed"
    """'completed' or 'max_duration'."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(
    records: Sequence[RequestRecord], duration_seconds: float, stop_reason: str = "completed"
) -> RunSummary:
    """Throughput counts successful requests only, over the measured wall time."""
    ok = [r for r in records if r.ok]
    cancelled = [r for r in records if r.cancelled]
    failed = [r for r in records if not r.ok and not r.cancelled]
    total_output_tokens = sum(r.output_tokens for r in ok)
    safe_duration = duration_seconds if duration_seconds > 0 else float("nan")
    return RunSummary(
        duration_seconds=duration_seconds,
        num_requests=len(records),
        num_ok=len(ok),
        num_errors=len(failed),
        num_cancelled=len(cancelled),
        errors_by_kind=dict(Counter(r.error_kind or "unknown" for r in failed)),
        total_output_tokens=total_output_tokens,
        total_prompt_tokens=sum(r.prompt_tokens or 0 for r in ok),
        output_tokens_per_second=total_output_tokens / safe_duration if ok else 0.0,
        requests_per_second=len(ok) / safe_duration if ok else 0.0,
        ttft_seconds=LatencyStats.of(r.ttft_seconds for r in ok if r.ttft_seconds is not None),
        tpot_seconds=LatencyStats.of(t for r in ok if (t := r.tpot_seconds) is not None),
        itl_seconds=LatencyStats.of(gap for r in ok for gap in r.inter_token_latencies_seconds),
        e2e_seconds=LatencyStats.of(r.e2e_seconds for r in ok if r.e2e_seconds is not None),
        output_tokens=LatencyStats.of(float(r.output_tokens) for r in ok),
        output_tokens_from_usage=all(r.output_tokens_source == "usage" for r in ok),
        stop_reason=stop_reason,
    )


def steady_output_tokens_per_second(records: Sequence[RequestRecord]) -> float | None:
    """Closed loop: output tokens per second while every worker is busy, from the start to the
    moment the last request is sent.

    After that the queue is empty and workers fall idle one by one; how long the drain lasts
    depends on how the last requests' lengths happen to pack, not on the server's speed, and in a
    short run it moves whole-run throughput by several percent. A request straddling the cut
    counts its first token and a straight-line share of the rest. None when there is no such
    window (every request sent at once)."""
    ok = [r for r in records if r.ok and r.start_offset_seconds is not None and r.e2e_seconds is not None
          and r.ttft_seconds is not None]
    if not ok:
        return None
    cut = max(r.start_offset_seconds for r in ok)
    if cut <= 0:
        return None
    tokens = 0.0
    for r in ok:
        first, end = r.start_offset_seconds + r.ttft_seconds, r.start_offset_seconds + r.e2e_seconds
        if end <= cut:
            tokens += r.output_tokens
        elif first < cut and r.output_tokens:
            tokens += 1 + (r.output_tokens - 1) * (cut - first) / (end - first)
    return tokens / cut
