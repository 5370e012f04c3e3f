"""Admission control, body-size limit, per-request deadline and engine-death answers.

A pure-ASGI middleware (no `BaseHTTPMiddleware`: streams are not buffered, and the added
cost is a few attribute checks per request and per chunk):

* body over `max_body_bytes` → 413 before any of it is parsed;
* any `/v1/*` request while the engine is dead → 503, and a 5xx (or a stream's error event)
  that the serving layer produced because the engine died is rewritten into the same 503;
* generation requests (`POST /v1/chat/completions`, `/v1/completions`) take sequence slots from
  a bounded pool: the engine's batch (`max_num_seqs`) plus a bounded waiting queue
  (`max_queued_requests`). One slot is taken on arrival, the rest (n × prompts) by the route once
  the body is parsed (`admit_sequences`); all are held until the response (or stream) ends.
  No free slot → 429 with Retry-After. The engine is never handed more than it can hold.
* each generation request has a deadline (`request_timeout_seconds`). When it passes, the
  request's `receive` reports a client disconnect, so vLLM's serving layer aborts the engine
  request exactly as when a real client goes away; the client then gets a 504 (nothing sent
  yet) or an error event ending its stream.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import (
    ENGINE_DEAD_EVENT,
    SpecgateError,
    engine_dead_response,
    error_event,
    openai_error_response,
    overloaded_error,
    specgate_error_response,
    timeout_message,
)
from server.settings import ServeSettings

GENERATION_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})
TICKET_KEY = "specgate.admission_ticket"
_DISCONNECT: Message = {"type": "http.disconnect"}
_STREAM_ERROR_PREFIX = b'data: {"error"'


class Admission:
    """The gateway's view of engine capacity: slots in use, the limit, and whether the engine lives."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.engine = None
        self.max_num_seqs = 0
        self.capacity = 0
        self.in_flight = 0
        """Sequence slots held by admitted requests whose response has not ended."""
        self.rejected = 0
        self.timed_out = 0

    def attach(self, engine, max_num_seqs: int) -> None:
        """Called by the lifespan once the engine runs: the capacity follows its batch size."""
        queued = self.settings.max_queued_requests
        self.engine = engine
        self.max_num_seqs = max_num_seqs
        self.capacity = max_num_seqs + (max_num_seqs if queued is None else queued)

    @property
    def engine_dead(self) -> bool:
        return self.engine is not None and self.engine.errored

    def try_take(self, slots: int) -> bool:
        if self.in_flight + slots > self.capacity:
            self.rejected += 1
            return False
        self.in_flight += slots
        return True


class Ticket:
    """The slots one request holds; released by the middleware when its response ends."""

    __slots__ = ("slots",)

    def __init__(self) -> None:
        self.slots = 1


def admit_sequences(scope: Scope, admission: Admission, sequences: int, *, param: str = "n") -> None:
    """Take the rest of a parsed request's slots (n × prompts), or raise 400/429."""
    if sequences > admission.max_num_seqs:
        raise SpecgateError(
            f"The request asks for {sequences} sequences (n × prompts); this server runs at most "
            f"{admission.max_num_seqs} at once (max_num_seqs).", param=param)
    ticket: Ticket | None = scope.get(TICKET_KEY)
    if ticket is None or sequences <= ticket.slots:
        return
    if not admission.try_take(sequences - ticket.slots):
        raise overloaded_error(admission.settings.retry_after_seconds)
    ticket.slots = sequences


class _Exchange:
    """One admitted request's receive/send, with its deadline and engine-death rewriting."""

    __slots__ = ("_receive", "_send", "admission", "complete", "deadline", "engine_died", "started", "timed_out")

    def __init__(self, receive: Receive, send: Send, admission: Admission, deadline: float) -> None:
        self._receive, self._send, self.admission, self.deadline = receive, send, admission, deadline
        self.started = self.complete = self.timed_out = self.engine_died = False

    async def receive(self) -> Message:
        if self.timed_out:
            return _DISCONNECT
        try:
            async with asyncio.timeout_at(self.deadline):
                return await self._receive()
        except TimeoutError:
            self.timed_out = True
            self.admission.timed_out += 1
            return _DISCONNECT

    async def send(self, message: Message) -> None:
        if self.timed_out or self.engine_died:
            return  # what a cancelled handler still emits: the client gets finish()'s answer instead
        kind = message["type"]
        if kind == "http.response.start":
            if message["status"] >= 500 and self.admission.engine_dead:
                self.engine_died = True
                return
            self.started = True
        elif kind == "http.response.body":
            body = message.get("body", b"")
            if body.startswith(_STREAM_ERROR_PREFIX) and self.admission.engine_dead:
                message = {"type": "http.response.body", "body": ENGINE_DEAD_EVENT, "more_body": False}
                self.engine_died = True
            if not message.get("more_body", False):
                self.complete = True
        await self._send(message)

    async def finish(self, scope: Scope) -> None:
        """Answer a request the app could not: timed out, or failed by the engine's death."""
        if self.complete:
            return
        timeout = self.admission.settings.request_timeout_seconds
        if self.started:
            if self.timed_out:
                event = error_event(timeout_message(timeout), HTTPStatus.GATEWAY_TIMEOUT, error_type="timeout_error")
                await self._send({"type": "http.response.body", "body": event, "more_body": False})
            return
        if self.engine_died:
            await engine_dead_response()(scope, _closed_receive, self._send)
        elif self.timed_out:
            response = openai_error_response(timeout_message(timeout), HTTPStatus.GATEWAY_TIMEOUT,
                                             error_type="timeout_error")
            await response(scope, _closed_receive, self._send)


async def _closed_receive() -> Message:
    return _DISCONNECT


class AdmissionMiddleware:
    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        admission = self.admission
        limit = admission.settings.max_body_bytes
        length = _content_length(scope)
        if length is not None and length > limit:
            return await _too_large(limit)(scope, receive, send)
        if length is None and scope["method"] in ("POST", "PUT", "PATCH"):
            receive = await _buffer_body(receive, limit)
            if receive is None:
                return await _too_large(limit)(scope, _closed_receive, send)
        path = scope["path"]
        if not path.startswith("/v1/"):
            return await self.app(scope, receive, send)
        if admission.engine_dead:
            return await engine_dead_response()(scope, receive, send)
        if path not in GENERATION_PATHS or scope["method"] != "POST":
            return await self.app(scope, receive, send)

        if not admission.try_take(1):
            response = specgate_error_response(overloaded_error(admission.settings.retry_after_seconds))
            return await response(scope, receive, send)
        ticket = scope[TICKET_KEY] = Ticket()
        deadline = asyncio.get_running_loop().time() + admission.settings.request_timeout_seconds
        exchange = _Exchange(receive, send, admission, deadline)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        finally:
            admission.in_flight -= ticket.slots
        await exchange.finish(scope)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(limit: int):
    return openai_error_response(
        f"The request body is larger than this server's limit of {limit} bytes.",
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE)


async def _buffer_body(receive: Receive, limit: int) -> Receive | None:
    """A body without Content-Length (chunked): read it here, at most `limit` bytes, and replay it."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if size > limit:
            return None
        if not message.get("more_body", False):
            break

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay


class AdmissionCollector:
    """`specgate_admission_*` on /metrics, read at scrape time (nothing on the request path)."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        a = self.admission
        yield GaugeMetricFamily("specgate_admission_sequences_in_flight",
                                "Sequence slots held by admitted generation requests (running or queued).", value=a.in_flight)
        yield GaugeMetricFamily("specgate_admission_capacity_sequences",
                                "Sequence slots: the engine's max_num_seqs plus the admission queue.", value=a.capacity)
        yield CounterMetricFamily("specgate_admission_rejected", "Generation requests answered 429 (no free slot).",
                                  value=a.rejected)
        yield CounterMetricFamily("specgate_request_timeouts", "Generation requests aborted at their deadline.",
                                  value=a.timed_out)
