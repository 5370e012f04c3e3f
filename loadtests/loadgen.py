"""Drive an OpenAI-compatible streaming endpoint: closed loop at fixed concurrency or
open loop with seeded Poisson arrivals, bounded by a request count and a wall-clock limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import numpy as np

from loadtests.loopback import require_loopback_url
from loadtests.stats import RunSummary, summarize
from loadtests.stream_request import RequestRecord, send_streaming_request
from loadtests.templates import RequestTemplate

__all__ = ["LoadResult", "LoadSpec", "RequestRecord", "RequestTemplate", "run_load"]

RecordCallback = Callable[[RequestRecord], None]


@dataclass(slots=True)
class LoadSpec:
    base_url: str
    """Up to and including the API prefix, e.g. http://127.0.0.1:8000/v1 (loopback only)."""
    model: str
    concurrency: int = 1
    """Closed loop: number of workers. Open loop: cap on requests in flight."""
    num_requests: int = 1
    max_duration_seconds: float = 300.0
    """Hard wall-clock bound for the whole run, warm-up included; in-flight requests are
    cancelled when it passes."""
    rate_per_second: float | None = None
    """None: closed loop. A number: open loop, Poisson arrivals at this mean rate."""
    warmup_requests: int = 0
    api_key: str | None = None
    timeout_seconds: float = 120.0
    """Per request, from sending to the end of the stream."""
    seed: int = 0
    """Seeds the open-loop arrival times."""

    def __post_init__(self) -> None:
        require_loopback_url(self.base_url)
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.num_requests < 1:
            raise ValueError(f"num_requests must be >= 1, got {self.num_requests}")
        if self.warmup_requests < 0:
            raise ValueError(f"warmup_requests must be >= 0, got {self.warmup_requests}")
        if not self.max_duration_seconds > 0:
            raise ValueError(f"max_duration_seconds must be > 0, got {self.max_duration_seconds}")
        if not self.timeout_seconds > 0:
            raise ValueError(f"timeout_seconds must be > 0, got {self.timeout_seconds}")
        if self.rate_per_second is not None and not self.rate_per_second > 0:
            raise ValueError(f"rate_per_second must be > 0, got {self.rate_per_second}")

    @property
    def mode(self) -> str:
        return "closed" if self.rate_per_second is None else "open"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["api_key"] = None if self.api_key is None else "***"
        data["mode"] = self.mode
        return data


@dataclass(slots=True)
class LoadResult:
    spec: LoadSpec
    summary: RunSummary
    records: list[RequestRecord]
    warmup_records: list[RequestRecord] = field(default_factory=list)
    started_at_unix: float = 0.0

    def to_dict(self, include_records: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "spec": self.spec.to_dict(),
            "started_at_unix": self.started_at_unix,
            "summary": self.summary.to_dict(),
        }
        if include_records:
            data["records"] = [r.to_dict() for r in self.records]
            data["warmup_records"] = [r.to_dict() for r in self.warmup_records]
        return data


def poisson_arrival_offsets(rate_per_second: float, count: int, seed: int) -> np.ndarray:
    """Arrival times (s) of a Poisson process; the first request goes out at 0."""
    gaps = np.random.default_rng(seed).exponential(1.0 / rate_per_second, size=count)
    return np.concatenate(([0.0], np.cumsum(gaps[:-1])))


@dataclass(slots=True)
class _Sender:
    client: httpx.AsyncClient
    spec: LoadSpec
    templates: Sequence[RequestTemplate]
    on_record: RecordCallback | None
    headers: dict[str, str]
    clock_origin: float = 0.0

    async def send(
        self,
        index: int,
        template_index: int,
        records: list[RequestRecord],
        *,
        warmup: bool = False,
        scheduled_offset: float | None = None,
    ) -> None:
        template = self.templates[template_index % len(self.templates)]
        record = RequestRecord(
            index=index,
            endpoint=template.endpoint,
            warmup=warmup,
            scheduled_offset_seconds=scheduled_offset,
        )
        records.append(record)
        body = {
            **template.body,
            "model": self.spec.model,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        await send_streaming_request(
            self.client,
            self.spec.base_url.rstrip("/") + template.path,
            body,
            record,
            headers=self.headers,
            timeout_seconds=self.spec.timeout_seconds,
            clock_origin=self.clock_origin,
        )
        if self.on_record is not None:
            self.on_record(record)


async def _closed_loop(
    sender: _Sender,
    indices: Iterator[tuple[int, int]],
    workers: int,
    records: list[RequestRecord],
    *,
    warmup: bool = False,
) -> None:
    async def worker() -> None:
        # One shared iterator: each worker takes the next request as soon as it is free.
        for index, template_index in indices:
            await sender.send(index, template_index, records, warmup=warmup)

    async with asyncio.TaskGroup() as group:
        for _ in range(workers):
            group.create_task(worker())


async def _open_loop(sender: _Sender, spec: LoadSpec, records: list[RequestRecord]) -> None:
    assert spec.rate_per_second is not None
    arrivals = poisson_arrival_offsets(spec.rate_per_second, spec.num_requests, spec.seed)
    in_flight = asyncio.Semaphore(spec.concurrency)

    async def arrive(index: int, offset: float) -> None:
        async with in_flight:
            await sender.send(index, index, records, scheduled_offset=offset)

    async with asyncio.TaskGroup() as group:
        for index, offset in enumerate(arrivals.tolist()):
            delay = sender.clock_origin + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            group.create_task(arrive(index, offset))


async def run_load(
    spec: LoadSpec,
    requests: Sequence[RequestTemplate],
    *,
    on_record: RecordCallback | None = None,
) -> LoadResult:
    """Run one load test. Templates are used in order and cycled; warm-up requests take the
    templates after the measured ones so they do not pre-warm the measured prompts' cache."""
    if not requests:
        raise ValueError("run_load needs at least one request template")
    require_loopback_url(spec.base_url)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + spec.max_duration_seconds
    headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
    limits = httpx.Limits(
        max_connections=spec.concurrency, max_keepalive_connections=spec.concurrency
    )
    started_at_unix = time.time()
    records: list[RequestRecord] = []
    warmup_records: list[RequestRecord] = []
    stop_reason = "completed"
    # trust_env=False: loopback traffic must never be routed through an HTTP(S)_PROXY.
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(spec.timeout_seconds), limits=limits, trust_env=False
    ) as client:
        sender = _Sender(client, spec, requests, on_record, headers, time.perf_counter())
        if spec.warmup_requests:
            warmups = ((i, spec.num_requests + i) for i in range(spec.warmup_requests))
            try:
                async with asyncio.timeout_at(deadline):
                    await _closed_loop(
                        sender,
                        warmups,
                        min(spec.concurrency, spec.warmup_requests),
                        warmup_records,
                        warmup=True,
                    )
            except TimeoutError:
                stop_reason = "max_duration"
        sender.clock_origin = measured_start = time.perf_counter()
        if stop_reason == "completed":
            try:
                async with asyncio.timeout_at(deadline):
                    if spec.rate_per_second is None:
                        measured = ((i, i) for i in range(spec.num_requests))
                        await _closed_loop(sender, measured, spec.concurrency, records)
                    else:
                        await _open_loop(sender, spec, records)
            except TimeoutError:
                stop_reason = "max_duration"
        duration = time.perf_counter() - measured_start
    records.sort(key=lambda r: r.index)
    return LoadResult(
        spec=spec,
        summary=summarize(records, duration, stop_reason),
        records=records,
        warmup_records=warmup_records,
        started_at_unix=started_at_unix,
    )
