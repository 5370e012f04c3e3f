"""In-process fake OpenAI streaming server for load-generator tests.

Each request controls the fake through extra body fields:
  max_tokens      tokens to stream (default 8)
  fake_ttft       seconds before the first token (default 0)
  fake_delay      seconds between tokens (default 0)
  fake_mode       ok | http_500 | hang | malformed | no_usage | stream_error | truncate
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse


@dataclass(slots=True)
class FakeServerState:
    requests_received: int = 0
    open_streams: int = 0
    max_open_streams: int = 0
    bodies: list[dict] = field(default_factory=list)
    client_ports: set[int] = field(default_factory=set)
    metrics_text: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


def sse(payload: dict | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n"


def _chunk(endpoint: str, index: int, text: str | None, finish: str | None = None) -> dict:
    if endpoint == "chat":
        delta = {} if text is None else {"content": text}
        if index == -1:
            delta = {"role": "assistant", "content": ""}
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {"id": "fake", "object": "chat.completion.chunk", "choices": [choice]}
    choice = {"index": 0, "text": text or "", "finish_reason": finish}
    return {"id": "fake", "object": "text_completion", "choices": [choice]}


def build_app(state: FakeServerState) -> FastAPI:
    app = FastAPI()

    async def stream(endpoint: str, body: dict) -> AsyncIterator[str]:
        tokens = int(body.get("max_tokens", 8))
        ttft, delay = float(body.get("fake_ttft", 0)), float(body.get("fake_delay", 0))
        mode = body.get("fake_mode", "ok")
        with state.lock:
            state.open_streams += 1
            state.max_open_streams = max(state.max_open_streams, state.open_streams)
        try:
            if endpoint == "chat":
                yield sse(_chunk(endpoint, -1, None))
            if mode == "hang":
                await asyncio.sleep(3600)
            if mode == "malformed":
                yield "data: {this is not json\n\n"
                return
            if mode == "stream_error":
                yield sse({"error": {"message": "engine died", "code": 500}})
                return
            await asyncio.sleep(ttft)
            for i in range(tokens):
                if i:
                    await asyncio.sleep(delay)
                yield sse(_chunk(endpoint, i, f"t{i} "))
            if mode == "truncate":
                return
            yield sse(_chunk(endpoint, tokens, None, finish="length"))
            if mode != "no_usage" and body.get("stream_options", {}).get("include_usage"):
                usage = {
                    "prompt_tokens": 3,
                    "completion_tokens": tokens,
                    "total_tokens": tokens + 3,
                }
                yield sse({"id": "fake", "choices": [], "usage": usage})
            yield sse("[DONE]")
        finally:
            with state.lock:
                state.open_streams -= 1

    async def handle(endpoint: str, request: Request):
        body = await request.json()
        with state.lock:
            state.requests_received += 1
            state.bodies.append(body)
            state.client_ports.add(request.client.port)
        if body.get("fake_mode") == "http_500":
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        return StreamingResponse(stream(endpoint, body), media_type="text/event-stream")

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return await handle("chat", request)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await handle("completions", request)

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(state.metrics_text)

    return app


def serve_in_thread(app: FastAPI, what: str) -> tuple[int, uvicorn.Server, threading.Thread]:
    """Serve ``app`` on a free loopback port from a daemon thread; return once it listens."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.01)
    return sock.getsockname()[1], server, thread


@dataclass(slots=True)
class FakeOpenAIServer:
    state: FakeServerState
    port: int
    _server: uvicorn.Server
    _thread: threading.Thread

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @classmethod
    def start(cls) -> FakeOpenAIServer:
        state = FakeServerState()
        return cls(state, *serve_in_thread(build_app(state), "fake OpenAI server"))

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)

    def reset(self) -> None:
        with self.state.lock:
            self.state.requests_received = 0
            self.state.max_open_streams = 0
            self.state.bodies.clear()
            self.state.client_ports.clear()
            self.state.metrics_text = ""
