"""The gateway's process lifecycle against the real engine: the engine dies; SIGTERM drains.

Each test owns its gateway (the test ends it), plain decoding to keep the engine small.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import psutil
import pytest

from loadtests.servers import gateway_command, start_server, wait_until_healthy

pytestmark = pytest.mark.engine

MODEL = "SmolLM2-135M-Instruct"


def chat(max_tokens: int, stream: bool = True) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": "Tell a long story about a harbour."}],
            "max_tokens": max_tokens, "ignore_eos": True, "stream": stream,
            **({"stream_options": {"include_usage": True}} if stream else {})}


class Collector(threading.Thread):
    """Sends one request in the background and keeps what came back."""

    def __init__(self, base_url: str, body: dict):
        super().__init__(daemon=True)
        self.base_url, self.body = base_url, body
        self.status: int | None = None
        self.events: list[str] = []
        self.text = ""
        self.error: Exception | None = None
        self.first_event = threading.Event()

    def run(self) -> None:
        try:
            with httpx.stream("POST", f"{self.base_url}/chat/completions", json=self.body, timeout=120) as response:
                self.status = response.status_code
                for line in response.iter_lines():
                    self.text += line
                    if line.startswith("data: "):
                        self.events.append(line.removeprefix("data: "))
                        self.first_event.set()
        except httpx.HTTPError as error:
            self.error = error
        finally:
            self.first_event.set()


def engine_core_of(gateway_pid: int) -> psutil.Process:
    for child in psutil.Process(gateway_pid).children(recursive=True):
        if "EngineCore" in child.name() or "EngineCore" in " ".join(child.cmdline()):
            return child
    raise AssertionError("no EngineCore process under the gateway")


def wait_gone(processes: list[psutil.Process], within_seconds: float) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=within_seconds)
    return alive


def test_engine_death_turns_everything_503_and_the_gateway_exits_non_zero(embedded_model_path, tmp_path):
    server = start_server("gateway-engine-death", lambda port: gateway_command(port, ["--speculative", "off"]),
                          log_dir=tmp_path)
    try:
        wait_until_healthy(server)
        descendants = psutil.Process(server.process.pid).children(recursive=True)
        streaming, whole = Collector(server.base_url, chat(1500)), Collector(server.base_url, chat(1500, stream=False))
        streaming.start(), whole.start()
        assert streaming.first_event.wait(60) and streaming.status == 200

        engine_core_of(server.process.pid).kill()
        killed = time.monotonic()
        while (health := httpx.get(f"{server.root_url}/health", timeout=5).status_code) == 200:
            assert time.monotonic() - killed < 2, "/health still 200 two seconds after the engine died"
            time.sleep(0.02)
        assert health == 503
        fresh = httpx.post(f"{server.base_url}/chat/completions", json=chat(4, stream=False), timeout=10)
        assert fresh.status_code == 503
        assert fresh.json()["error"]["type"] == "service_unavailable" and "engine" in fresh.json()["error"]["message"]

        streaming.join(10), whole.join(10)
        assert streaming.events[-1] == "[DONE]"
        assert json.loads(streaming.events[-2])["error"]["code"] == 503
        assert whole.status == 503 and "engine" in json.loads(whole.text)["error"]["message"]

        status = server.process.wait(60)
        assert status == 1, server.log_tail()
        assert "the inference engine died" in server.log_tail(20000)
        assert not wait_gone(descendants, 30), "engine processes outlived the gateway"
    finally:
        server.stop()


def test_sigterm_drains_in_flight_streams_then_exits_zero(embedded_model_path, tmp_path):
    drain_s = 10
    server = start_server("gateway-sigterm",
                          lambda port: gateway_command(port, ["--speculative", "off", "--drain-timeout-seconds", str(drain_s)]),
                          log_dir=tmp_path)
    try:
        wait_until_healthy(server)
        short, long = Collector(server.base_url, chat(60)), Collector(server.base_url, chat(1900))
        short.start(), long.start()
        assert short.first_event.wait(60) and long.first_event.wait(60)

        os.kill(server.process.pid, signal.SIGTERM)  # the gateway only, as a supervisor does
        signalled = time.monotonic()
        while True:  # new connections are refused while the streams go on
            try:
                httpx.get(f"{server.root_url}/health", timeout=2)
            except httpx.ConnectError:
                break
            assert time.monotonic() - signalled < 5, "still accepting 5 s after SIGTERM"
            time.sleep(0.1)

        short.join(drain_s)
        assert short.error is None and short.events[-1] == "[DONE]", short.events[-3:]
        usage = json.loads(short.events[-2])["usage"]
        assert usage["completion_tokens"] == 60  # the whole answer, not a cut one
        long.join(drain_s + 30)
        assert not long.is_alive()
        assert "[DONE]" not in long.events  # past the drain timeout: aborted
        status = server.process.wait(60)
        assert status == 0, server.log_tail()
        assert time.monotonic() - signalled >= drain_s - 1  # it did wait for the long stream
    finally:
        server.stop()
