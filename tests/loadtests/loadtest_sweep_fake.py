"""A fake of the gateway for sweep tests: streams chat completions whose pace depends on the
γ policy and on how many streams are open, counts spec-decode drafts like vLLM does, and
answers GET/PUT /v1/speculative and GET /v1/models like specgate's gateway.

Speculation is simulated as: per-token delay = base · cost(γ, open streams) / E(γ), with
acceptance p per position, so speculation wins at low concurrency and loses at high.

Both gateways export specgate's per-step histograms like the real scheduler (the `off` one
runs it without a controller): each stream's wait counts as its share of one decode-only
engine step batching all open streams (1/n of a step, of its seconds and n/n of its batch).
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from loadtest_fake_server import serve_in_thread, sse

ACCEPT = 0.7
GAMMA_MAX = 8


def gamma_of(policy: str | None, open_streams: int) -> int:
    if policy is None or policy == "off":
        return 0
    if policy.startswith("fixed:"):
        return int(policy.removeprefix("fixed:"))
    if policy.startswith("table:"):
        for lo, hi, k in json.loads(policy.removeprefix("table:")):
            if lo <= open_streams <= hi:
                return k
        return 0
    return 2 if open_streams <= 4 else 0  # adaptive: speculate only at small batches


def expected_tokens(gamma: int) -> float:
    return sum(ACCEPT**k for k in range(gamma + 1))


def step_cost(gamma: int, open_streams: int) -> float:
    """Relative step time: verifying γ drafts costs more the more streams share the step."""
    return 1.0 + gamma * 0.06 * open_streams


@dataclass(slots=True)
class SweepFakeState:
    speculative: bool
    base_delay: float = 0.002
    policy: str | None = None
    open_streams: int = 0
    puts: list[str] = field(default_factory=list)
    drafts: float = 0.0
    draft_tokens: float = 0.0
    accepted: float = 0.0
    accepted_per_pos: list[float] = field(default_factory=lambda: [0.0] * GAMMA_MAX)
    gamma_sum: float = 0.0
    gamma_count: float = 0.0
    step_seconds: float = 0.0
    steps: float = 0.0
    batch_sum: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def metrics_text(self) -> str:
        lines = [
            "# TYPE vllm:spec_decode_num_drafts counter",
            f'vllm:spec_decode_num_drafts_total{{engine="0"}} {self.drafts}',
            "# TYPE vllm:spec_decode_num_draft_tokens counter",
            f'vllm:spec_decode_num_draft_tokens_total{{engine="0"}} {self.draft_tokens}',
            "# TYPE vllm:spec_decode_num_accepted_tokens counter",
            f'vllm:spec_decode_num_accepted_tokens_total{{engine="0"}} {self.accepted}',
            "# TYPE vllm:spec_decode_num_accepted_tokens_per_pos counter",
        ]
        lines += [
            f'vllm:spec_decode_num_accepted_tokens_per_pos_total{{engine="0",position="{k}"}} {v}'
            for k, v in enumerate(self.accepted_per_pos)
        ]
        if self.speculative:
            lines += _histogram("specgate_gamma_chosen", self.gamma_sum, self.gamma_count)
        lines += _histogram("specgate_observed_step_seconds", self.step_seconds, self.steps)
        lines += _histogram("specgate_batch_size", self.batch_sum, self.steps)
        return "\n".join(lines) + "\n"

    def record_step(self, seconds: float, open_streams: int) -> None:
        """One stream's share of a decode-only step that batched ``open_streams`` streams."""
        with self.lock:
            self.step_seconds += seconds / open_streams
            self.steps += 1 / open_streams
            self.batch_sum += 1.0

    def status(self) -> dict:
        return {
            "policy": self.policy,
            "gamma_max": GAMMA_MAX,
            "last_gamma": gamma_of(self.policy, self.open_streams),
            "predicted_speedup": 1.2,
            "acceptance_by_position": [ACCEPT] * GAMMA_MAX,
            "calibration": {
                "overhead_seconds": 0.01,
                "per_token_seconds": 2e-4,
                "scale": 3.0,
                "samples": 512,
            },
            "model": "fake-model",
            "hardware": "cpu-local",
        }


def _histogram(name: str, total: float, count: float) -> list[str]:
    return [
        f"# TYPE {name} histogram",
        f'{name}_bucket{{model_name="fake",le="+Inf"}} {count}',
        f'{name}_sum{{model_name="fake"}} {total}',
        f'{name}_count{{model_name="fake"}} {count}',
    ]


def build_app(state: SweepFakeState) -> FastAPI:
    app = FastAPI()

    async def stream(body: dict):
        tokens = int(body.get("max_tokens", 8))
        with state.lock:
            state.open_streams += 1
        try:
            yield sse({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
            emitted = 0
            while emitted < tokens:
                with state.lock:
                    gamma = gamma_of(state.policy, state.open_streams) if state.speculative else 0
                    open_streams = state.open_streams
                per_step = expected_tokens(gamma)
                delay = state.base_delay * step_cost(gamma, open_streams)
                await asyncio.sleep(delay)
                state.record_step(delay, open_streams)
                burst = max(1, min(tokens - emitted, round(per_step)))
                if gamma and emitted:  # the first token comes from prefill, no drafts
                    with state.lock:
                        state.drafts += 1
                        state.draft_tokens += gamma
                        state.accepted += burst - 1
                        for k in range(burst - 1):
                            state.accepted_per_pos[k] += 1
                if state.speculative:
                    with state.lock:
                        state.gamma_sum += gamma
                        state.gamma_count += 1
                for _ in range(burst):
                    yield sse(
                        {
                            "choices": [
                                {"index": 0, "delta": {"content": "x "}, "finish_reason": None}
                            ]
                        }
                    )
                emitted += burst
            yield sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
            usage = {"prompt_tokens": 40, "completion_tokens": tokens, "total_tokens": tokens + 40}
            yield sse({"choices": [], "usage": usage})
            yield sse("[DONE]")
        finally:
            with state.lock:
                state.open_streams -= 1

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return StreamingResponse(stream(await request.json()), media_type="text/event-stream")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": "fake-model", "object": "model", "root": None}]}

    @app.get("/v1/speculative")
    async def status():
        if not state.speculative:
            return JSONResponse(
                {"error": {"message": "speculative decoding is off"}}, status_code=409
            )
        return state.status()

    @app.put("/v1/speculative")
    async def put(request: Request):
        if not state.speculative:
            return JSONResponse(
                {"error": {"message": "speculative decoding is off"}}, status_code=409
            )
        state.policy = (await request.json())["policy"]
        state.puts.append(state.policy)
        return state.status()

    @app.get("/metrics")
    async def metrics():
        with state.lock:
            return PlainTextResponse(state.metrics_text())

    return app


@dataclass(slots=True)
class SweepFakeServer:
    state: SweepFakeState
    port: int
    _server: uvicorn.Server
    _thread: threading.Thread

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @classmethod
    def start(cls, speculative: bool, base_delay: float = 0.002) -> SweepFakeServer:
        state = SweepFakeState(speculative=speculative, base_delay=base_delay,
                               policy="adaptive" if speculative else None)  # fmt: skip
        return cls(state, *serve_in_thread(build_app(state), "fake gateway"))

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
