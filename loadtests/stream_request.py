"""Send one streaming OpenAI request and time it: TTFT, inter-token gaps, end-to-end."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from loadtests.sse import DONE_SENTINEL, SseDecoder

CANCELLED = "cancelled"
ERROR_TEXT_LIMIT = 500


@dataclass(slots=True)
class RequestRecord:
    index: int
    endpoint: str
    warmup: bool = False
    scheduled_offset_seconds: float | None = None
    """Open loop only: planned arrival time, relative to the start of the measured phase."""
    start_offset_seconds: float | None = None
    ok: bool = False
    status_code: int | None = None
    error_kind: str | None = None
    error_text: str | None = None
    ttft_seconds: float | None = None
    e2e_seconds: float | None = None
    inter_token_latencies_seconds: list[float] = field(default_factory=list)
    output_tokens: int = 0
    output_tokens_source: str = "none"
    """'usage' (server-reported) or 'chunks' (counted content-bearing chunks)."""
    prompt_tokens: int | None = None
    content_chunks: int = 0
    finish_reason: str | None = None

    @property
    def cancelled(self) -> bool:
        return self.error_kind == CANCELLED

    @property
    def tpot_seconds(self) -> float | None:
        if not self.ok or self.ttft_seconds is None or self.e2e_seconds is None:
            return None
        if self.output_tokens <= 1:
            return None
        return (self.e2e_seconds - self.ttft_seconds) / (self.output_tokens - 1)

    def fail(self, kind: str, text: str) -> None:
        self.ok = False
        self.error_kind = kind
        self.error_text = text[:ERROR_TEXT_LIMIT]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tpot_seconds"] = self.tpot_seconds
        return data


class StreamFailure(Exception):
    """A response that arrived but cannot be used; `kind` goes into errors_by_kind."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(text)
        self.kind = kind


@dataclass(slots=True)
class _ChunkTimer:
    """Turns the payloads of one stream into the timing fields of its record."""

    record: RequestRecord
    start: float
    usage_tokens: int | None = None
    last_content_time: float | None = None

    def on_payload(self, data: str, now: float) -> bool:
        """Process one SSE data payload; True once the stream says it is done."""
        if data.strip() == DONE_SENTINEL:
            return True
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            raise StreamFailure("malformed_sse", f"SSE data is not JSON: {data[:200]!r}") from None
        if not isinstance(chunk, dict):
            raise StreamFailure("malformed_sse", f"SSE data is not a JSON object: {data[:200]!r}")
        if chunk.get("error") is not None:
            raise StreamFailure("stream_error", json.dumps(chunk["error"])[:ERROR_TEXT_LIMIT])
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            if isinstance(usage.get("completion_tokens"), int):
                self.usage_tokens = usage["completion_tokens"]
            if isinstance(usage.get("prompt_tokens"), int):
                self.record.prompt_tokens = usage["prompt_tokens"]
        choices = chunk.get("choices") or []
        if any(_choice_has_content(choice) for choice in choices):
            self._on_content(now)
        for choice in choices:
            if isinstance(choice, dict) and choice.get("finish_reason"):
                self.record.finish_reason = choice["finish_reason"]
        return False

    def _on_content(self, now: float) -> None:
        record = self.record
        record.content_chunks += 1
        if self.last_content_time is None:
            record.ttft_seconds = now - self.start
        else:
            record.inter_token_latencies_seconds.append(now - self.last_content_time)
        self.last_content_time = now

    def finish(self, now: float) -> None:
        record = self.record
        record.e2e_seconds = now - self.start
        if self.usage_tokens is not None:
            record.output_tokens, record.output_tokens_source = self.usage_tokens, "usage"
        else:
            record.output_tokens, record.output_tokens_source = record.content_chunks, "chunks"
        record.ok = True


def _choice_has_content(choice: Any) -> bool:
    if not isinstance(choice, dict):
        return False
    if choice.get("text"):
        return True
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return False
    # Reasoning models stream their thinking in separate fields; those are output tokens too.
    return any(delta.get(key) for key in ("content", "reasoning_content", "reasoning"))


async def send_streaming_request(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    record: RequestRecord,
    *,
    headers: dict[str, str] | None = None,
    timeout_seconds: float,
    clock_origin: float,
) -> RequestRecord:
    """Fill `record` from one streaming request. Failures land in the record; only
    cancellation propagates (after marking the record cancelled)."""
    start = time.perf_counter()
    record.start_offset_seconds = start - clock_origin
    try:
        async with asyncio.timeout(timeout_seconds):
            await _stream_into(client, url, body, headers or {}, _ChunkTimer(record, start))
    except asyncio.CancelledError:
        record.fail(CANCELLED, "request cancelled before it finished")
        raise
    except TimeoutError:
        record.fail("timeout", f"no complete response within {timeout_seconds:g} s")
    except StreamFailure as failure:
        record.fail(failure.kind, str(failure))
    except httpx.ConnectError as exc:
        record.fail("connect_error", str(exc) or type(exc).__name__)
    except httpx.TimeoutException as exc:
        record.fail("timeout", str(exc) or type(exc).__name__)
    except httpx.RemoteProtocolError as exc:
        record.fail("protocol_error", str(exc) or type(exc).__name__)
    except httpx.TransportError as exc:
        record.fail("transport_error", f"{type(exc).__name__}: {exc}")
    return record


async def _stream_into(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    timer: _ChunkTimer,
) -> None:
    async with client.stream("POST", url, json=body, headers=headers) as response:
        timer.record.status_code = response.status_code
        if response.status_code != 200:
            text = (await response.aread()).decode(errors="replace")
            raise StreamFailure(f"http_{response.status_code}", text)
        decoder = SseDecoder()
        done = False
        async for line in response.aiter_lines():
            if done:
                continue  # drain the body's end so the connection goes back to the pool
            data = decoder.feed_line(line)
            if data is not None and timer.on_payload(data, time.perf_counter()):
                timer.finish(time.perf_counter())
                done = True
        tail = None if done else decoder.flush()
        if tail is not None and timer.on_payload(tail, time.perf_counter()):
            timer.finish(time.perf_counter())
            done = True
    if not done:
        raise StreamFailure("incomplete_stream", "stream ended without data: [DONE]")
