"""`specgate loadtest sweep`: measure every (workload, concurrency, mode) point and save it.

Modes and the servers they run on (all started here, on loopback, and stopped at the end):

  off                     a gateway started with ``--speculative off``: no speculation in the engine
  fixed:K, table:[[lo,hi,K],...], adaptive
                          one shared gateway (``--speculative ngram --gamma-max G``); the sweep
                          switches its γ policy with ``PUT /v1/speculative`` before each point
  vllm:off                vLLM's own OpenAI server, same engine flags, no speculation
  vllm:fixed:K            vLLM's own server, ngram with ``num_speculative_tokens`` K (its own
                          scheduler, fixed γ): the peer that makes the gateway's overhead visible

At each concurrency every mode runs once, back to back, in an order rotated by one from the
previous level, so slow drift of the machine lands on all modes. A point is: a warm-up run
(prompts the measured run does not use), a ``/metrics`` scrape, the measured closed-loop run,
a second scrape (the difference gives spec-decode acceptance for exactly the measured run) and,
on the speculative gateway, the controller's status from ``GET /v1/speculative``. Points are
written to ``OUT/sweep.json`` as they finish; :mod:`loadtests.report` turns that file into
tables, CSV, plots and a markdown summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from loadtests.loadgen import LoadSpec, run_load
from loadtests.loopback import require_loopback_url
from loadtests.metrics_scrape import (
    histogram_delta,
    histogram_totals,
    metrics_url,
    parse_metrics,
    spec_decode_delta,
)
from loadtests.servers import (
    ServerProcess,
    gateway_command,
    start_server,
    vllm_server_command,
    wait_until_healthy,
)
from loadtests.stream_request import RequestRecord
from loadtests.templates import RequestTemplate
from loadtests.workloads import Workload, load_workload

SWEEP_FORMAT = "specgate-sweep/1"
SWEEP_FILE = "sweep.json"

GATEWAY_OFF = "gateway-off"
GATEWAY_SPEC = "gateway-spec"
VLLM_OFF = "vllm-off"
VLLM_NGRAM_PREFIX = "vllm-ngram-"
DEFAULT_MODES = "off,fixed:2,fixed:4,adaptive"
DEFAULT_CONCURRENCY = "1,2,4,8,16,32,64"
DEFAULT_ENGINE_ARGS = "--no-enable-prefix-caching"
"""Every mode sees the same prompts; with prefix caching the later ones would skip prefill."""


# ---------------------------------------------------------------------------------------------
# Modes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mode:
    name: str
    """As written in --modes (tables normalised): off, fixed:2, adaptive, vllm:off, ..."""
    server: str
    """Which server runs it: gateway-off, gateway-spec, vllm-off, vllm-ngram-K."""
    policy: str | None = None
    """The γ policy PUT to the speculative gateway before the point (gateway-spec only)."""

    @property
    def is_peer(self) -> bool:
        """Runs on vLLM's own server rather than specgate's gateway."""
        return self.server.startswith("vllm")

    @property
    def speculative(self) -> bool:
        return self.name not in ("off", "vllm:off")


def split_modes(text: str) -> list[str]:
    """Comma-separated modes; table JSON contains commas, so split only outside brackets."""
    modes, depth, current = [], 0, []
    for char in text:
        depth += (char == "[") - (char == "]")
        if char == "," and depth == 0:
            modes.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    modes.append("".join(current).strip())
    return [m for m in modes if m]


def _gamma(text: str, what: str, lowest: int, gamma_max: int | None) -> int:
    try:
        gamma = int(text)
    except ValueError:
        raise ValueError(f"bad mode {what!r}: K must be an integer") from None
    if gamma < lowest or (gamma_max is not None and gamma > gamma_max):
        top = "" if gamma_max is None else f" and <= --gamma-max {gamma_max}"
        raise ValueError(f"bad mode {what!r}: K must be >= {lowest}{top}")
    return gamma


def parse_mode(text: str, gamma_max: int) -> Mode:
    text = text.strip()
    if text == "off":
        return Mode("off", GATEWAY_OFF)
    if text == "adaptive":
        return Mode("adaptive", GATEWAY_SPEC, "adaptive")
    if text.startswith("fixed:"):
        gamma = _gamma(text.removeprefix("fixed:"), text, 0, gamma_max)
        return Mode(f"fixed:{gamma}", GATEWAY_SPEC, f"fixed:{gamma}")
    if text.startswith("table:"):
        try:
            rows = [
                [int(lo), int(hi), int(k)] for lo, hi, k in json.loads(text.removeprefix("table:"))
            ]
        except (ValueError, TypeError):
            raise ValueError(f"bad mode {text!r}: expected table:[[lo,hi,K],...]") from None
        if not rows or any(not (1 <= lo <= hi) or not 0 <= k <= gamma_max for lo, hi, k in rows):
            raise ValueError(
                f"bad mode {text!r}: rows need 1 <= lo <= hi and 0 <= K <= {gamma_max}"
            )
        name = "table:" + json.dumps(rows, separators=(",", ":"))
        return Mode(name, GATEWAY_SPEC, name)
    if text == "vllm:off":
        return Mode("vllm:off", VLLM_OFF)
    if text.startswith("vllm:fixed:"):
        gamma = _gamma(text.removeprefix("vllm:fixed:"), text, 1, None)
        return Mode(f"vllm:fixed:{gamma}", f"{VLLM_NGRAM_PREFIX}{gamma}")
    raise ValueError(
        f"unknown mode {text!r}; use off, fixed:K, table:[[lo,hi,K],...], adaptive, "
        "vllm:off or vllm:fixed:K"
    )


def parse_modes(text: str, gamma_max: int) -> list[Mode]:
    modes = [parse_mode(m, gamma_max) for m in split_modes(text)]
    names = [m.name for m in modes]
    if not modes:
        raise ValueError("no modes given")
    if len(set(names)) != len(names):
        raise ValueError(f"modes repeat: {', '.join(names)}")
    return modes


def parse_levels(text: str) -> list[int]:
    try:
        levels = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise ValueError(f"bad concurrency list {text!r}: expected integers like 1,2,4") from None
    if not levels or any(c < 1 for c in levels):
        raise ValueError(f"bad concurrency list {text!r}: need integers >= 1")
    return sorted(set(levels))


def rotated(modes: Sequence[Mode], shift: int) -> list[Mode]:
    if not modes:
        return []
    shift %= len(modes)
    return [*modes[shift:], *modes[:shift]]


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class SweepConfig:
    workloads: list[str]
    concurrency: list[int]
    modes: list[Mode]
    gamma_max: int = 8
    max_tokens: int | None = None
    """None: the workload's default (128)."""
    requests_per_worker: float = 2.0
    min_requests: int = 6
    warmup_max: int = 16
    """Warm-up requests per point: min(this, max(2, concurrency // 2)); 0 turns warm-up off."""
    point_max_seconds: float = 600.0
    request_timeout_seconds: float = 300.0
    model: str | None = None
    """Model folder; None serves the gateway's embedded default."""
    gateway_args: list[str] = field(default_factory=list)
    """Extra `specgate serve` flags for both gateways (and, translated, the vLLM peers)."""
    engine_args: str = DEFAULT_ENGINE_ARGS
    """vLLM engine flags every server gets (the gateways through --vllm-args)."""
    kv_cache_gib: int | None = 2
    """VLLM_CPU_KVCACHE_SPACE for the engines started here (CPU only); None leaves it alone."""
    one_server_at_a_time: bool = False
    """Start one server, run all its modes, stop it, then the next: less memory, but `off`
    no longer alternates with the speculative modes."""

    def num_requests(self, concurrency: int) -> int:
        return max(self.min_requests, math.ceil(self.requests_per_worker * concurrency))

    def warmup_requests(self, concurrency: int) -> int:
        return min(self.warmup_max, max(2, concurrency // 2))

    def servers(self) -> list[str]:
        return list(dict.fromkeys(m.server for m in self.modes))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["modes"] = [m.name for m in self.modes]
        data["requests_per_point"] = {str(c): self.num_requests(c) for c in self.concurrency}
        data["warmup_per_point"] = {str(c): self.warmup_requests(c) for c in self.concurrency}
        return data

    def __post_init__(self) -> None:
        if not self.workloads:
            raise ValueError("no workloads given")
        if self.requests_per_worker <= 0 or self.min_requests < 1:
            raise ValueError("requests per worker must be > 0 and min requests >= 1")
        if self.warmup_max < 0:
            raise ValueError("warm-up maximum must be >= 0")
        if self.gamma_max < 1:
            raise ValueError("gamma-max must be >= 1")


# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------


def _gateway_flags(config: SweepConfig) -> list[str]:
    flags = ["--model", config.model] if config.model else []
    flags += config.gateway_args
    if config.engine_args.strip():
        # One token: a value starting with "--" would be read as a flag of its own.
        flags.append(f"--vllm-args={config.engine_args}")
    return flags


def server_command_args(config: SweepConfig, server: str) -> tuple[str, list[str]]:
    """(kind, flags) of one server: kind 'gateway' (specgate serve) or 'vllm' (vLLM's own)."""
    if server == GATEWAY_OFF:
        return "gateway", ["--speculative", "off", *_gateway_flags(config)]
    if server == GATEWAY_SPEC:
        first = next(m.policy for m in config.modes if m.server == GATEWAY_SPEC)
        return "gateway", [
            "--speculative", "ngram", "--gamma-max", str(config.gamma_max),
            "--gamma-policy", str(first), *_gateway_flags(config),
        ]  # fmt: skip
    # vLLM's own server with the flags the gateway would hand its engine (without the
    # controller's scheduler): the same translation `bench_gateway` uses.
    from server.engine import resolve_model_path, vllm_cli_args
    from server.settings import ServeSettings

    if server == VLLM_OFF:
        speculative = ["--speculative", "off"]
    else:
        gamma = server.removeprefix(VLLM_NGRAM_PREFIX)
        speculative = ["--speculative", "ngram", "--gamma-max", gamma]
    settings = ServeSettings(_cli_parse_args=[*speculative, *_gateway_flags(config)])
    return "vllm", vllm_cli_args(settings, resolve_model_path(settings), with_controller=False)


def start_sweep_server(
    config: SweepConfig, server: str, log_dir: Path
) -> tuple[ServerProcess, dict]:
    kind, args = server_command_args(config, server)
    env = (
        {} if config.kv_cache_gib is None else {"VLLM_CPU_KVCACHE_SPACE": str(config.kv_cache_gib)}
    )
    if kind == "gateway":
        process = start_server(
            server, lambda port: gateway_command(port, args), env=env, log_dir=log_dir
        )
    else:
        process = start_server(
            server, lambda port: vllm_server_command(port, args), env=env, log_dir=log_dir
        )
    return process, {"kind": kind, "args": args, "env": env, "log": str(process.log_path)}


@contextlib.contextmanager
def running_servers(
    config: SweepConfig, names: Sequence[str], log_dir: Path, timeout_seconds: float = 900.0
) -> Iterator[dict[str, tuple[ServerProcess, dict]]]:
    """Start every named server at once (their start-ups overlap), wait for all, stop all."""
    started: dict[str, tuple[ServerProcess, dict]] = {}
    try:
        clock = time.monotonic()
        for name in names:
            started[name] = start_sweep_server(config, name, log_dir)
        for process, info in started.values():
            wait_until_healthy(process, timeout_seconds)
            info["startup_seconds"] = round(time.monotonic() - clock, 1)
        yield started
    finally:
        for process, _ in started.values():
            process.stop()


# ---------------------------------------------------------------------------------------------
# One point
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ServerTarget:
    """A server the sweep talks to: where, and what it serves."""

    name: str
    base_url: str
    model: str
    info: dict[str, Any] = field(default_factory=dict)


async def _scrape(client: httpx.AsyncClient, target: ServerTarget) -> str | None:
    try:
        response = await client.get(metrics_url(target.base_url))
        response.raise_for_status()
        return response.text
    except httpx.HTTPError:
        return None


async def controller_status(client: httpx.AsyncClient, target: ServerTarget) -> dict | None:
    try:
        response = await client.get(target.base_url + "/speculative")
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


async def set_policy(client: httpx.AsyncClient, target: ServerTarget, policy: str) -> dict:
    response = await client.put(target.base_url + "/speculative", json={"policy": policy})
    if response.status_code != 200:
        raise RuntimeError(
            f"PUT {policy!r} to {target.name}: HTTP {response.status_code} {response.text[:300]}"
        )
    return response.json()


def load_shape(
    records: Sequence[RequestRecord], duration_seconds: float
) -> dict[str, float | None]:
    """What the server actually saw, from client timestamps (Little's law): the time-averaged
    number of requests in flight and in their decode phase (after the first token)."""
    ok = [r for r in records if r.ok and r.e2e_seconds is not None]
    if not ok or duration_seconds <= 0:
        return {"mean_in_flight": None, "mean_decoding": None, "mean_prompt_tokens": None,
                "mean_output_tokens": None}  # fmt: skip
    decoding = sum(r.e2e_seconds - (r.ttft_seconds or 0.0) for r in ok)
    prompts = [r.prompt_tokens for r in ok if r.prompt_tokens is not None]
    return {
        "mean_in_flight": sum(r.e2e_seconds for r in ok) / duration_seconds,
        "mean_decoding": decoding / duration_seconds,
        "mean_prompt_tokens": sum(prompts) / len(prompts) if prompts else None,
        "mean_output_tokens": sum(r.output_tokens for r in ok) / len(ok),
    }


def _rotate_templates(requests: Sequence[RequestTemplate], start: int) -> list[RequestTemplate]:
    start %= len(requests)
    return [*requests[start:], *requests[:start]]


async def measure_point(
    client: httpx.AsyncClient,
    target: ServerTarget,
    mode: Mode,
    workload: Workload,
    concurrency: int,
    config: SweepConfig,
    on_record: Callable[[RequestRecord], None] | None = None,
) -> dict[str, Any]:
    """Switch policy, warm up, measure once, and collect acceptance and controller status."""
    if mode.policy is not None:
        await set_policy(client, target, mode.policy)
    num_requests, warmup = config.num_requests(concurrency), config.warmup_requests(concurrency)
    common = {
        "base_url": target.base_url,
        "model": target.model,
        "timeout_seconds": config.request_timeout_seconds,
        "max_duration_seconds": config.point_max_seconds,
    }
    if warmup:
        # Prompts after the measured ones, so the warm-up does not pre-answer them.
        warm = LoadSpec(concurrency=min(concurrency, warmup), num_requests=warmup, **common)
        await run_load(warm, _rotate_templates(workload.requests, num_requests))
    before = await _scrape(client, target)
    spec = LoadSpec(concurrency=concurrency, num_requests=num_requests, **common)
    result = await run_load(spec, workload.requests, on_record=on_record)
    after = await _scrape(client, target)
    status = await controller_status(client, target) if mode.server == GATEWAY_SPEC else None
    summary = result.summary
    spec_decode = specgate = None
    if before is not None and after is not None:
        spec_decode = spec_decode_delta(parse_metrics(before), parse_metrics(after)).to_dict()
        spec_decode.pop("specgate_gauges", None)
        specgate = histogram_delta(histogram_totals(before), histogram_totals(after)) or None
    errors = [f"{r.error_kind}: {r.error_text}" for r in result.records if not r.ok][:5]
    # The machine's 1-minute load average after the point: other work on a shared machine
    # shows up here (the sweep itself keeps it near the engine's thread count).
    load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "workload": workload.name,
        "concurrency": concurrency,
        "mode": mode.name,
        "server": mode.server,
        "peer": mode.is_peer,
        "started_at_unix": result.started_at_unix,
        "num_requests": num_requests,
        "warmup_requests": warmup,
        "client": summary.to_dict(),
        "load": load_shape(result.records, summary.duration_seconds),
        "spec_decode": spec_decode,
        "specgate": specgate,
        "controller": status,
        "errors": errors,
        "load_average": load_average,
    }


# ---------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------


class SweepProgress:
    """Hooks the sweep calls; the CLI draws rich progress bars, tests record calls."""

    def start(self, total_points: int) -> None: ...
    def point_started(self, label: str, num_requests: int) -> None: ...
    def request_done(self, record: RequestRecord) -> None: ...
    def point_done(self, point: dict[str, Any]) -> None: ...
    def message(self, text: str) -> None: ...


def plan_points(config: SweepConfig, modes: Sequence[Mode]) -> list[tuple[str, int, Mode]]:
    """(workload, concurrency, mode) in run order: each level rotates the modes by one more."""
    order = []
    for workload_index, workload in enumerate(config.workloads):
        for level_index, concurrency in enumerate(config.concurrency):
            shift = workload_index * len(config.concurrency) + level_index
            order += [(workload, concurrency, mode) for mode in rotated(modes, shift)]
    return order


async def run_points(
    config: SweepConfig,
    targets: dict[str, ServerTarget],
    workloads: dict[str, Workload],
    modes: Sequence[Mode],
    progress: SweepProgress,
    on_point: Callable[[dict[str, Any]], None],
) -> None:
    async with httpx.AsyncClient(timeout=60.0, trust_env=False) as client:
        for workload_name, concurrency, mode in plan_points(config, modes):
            label = f"{workload_name} c={concurrency} {mode.name}"
            progress.point_started(label, config.num_requests(concurrency))
            point = await measure_point(
                client, targets[mode.server], mode, workloads[workload_name], concurrency, config,
                on_record=progress.request_done,
            )  # fmt: skip
            on_point(point)
            progress.point_done(point)


def served_model(base_url: str) -> tuple[str, str | None]:
    """(model id, model root path) from GET /v1/models."""
    response = httpx.get(base_url + "/models", timeout=30.0, trust_env=False)
    response.raise_for_status()
    card = response.json()["data"][0]
    return card["id"], card.get("root")


def read_model_config(path: str | None) -> dict | None:
    if not path:
        return None
    config = Path(path) / "config.json"
    try:
        return json.loads(config.read_text())
    except (OSError, ValueError):
        return None


def hardware_record(name: str | None) -> dict | None:
    if not name:
        return None
    from roofline import load_hardware

    try:
        spec = load_hardware(name)
    except ValueError:
        return {"preset": name, "spec": None}
    return {"preset": name, "spec": asdict(spec)}


def environment() -> dict[str, Any]:
    def version(package: str) -> str | None:
        from importlib import metadata

        for name in (package, f"{package}-cpu"):
            with contextlib.suppress(metadata.PackageNotFoundError):
                return metadata.version(name)
        return None

    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip() or None  # fmt: skip
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "vllm": version("vllm"),
        "git_commit": commit,
    }


@dataclass(slots=True)
class SweepRecorder:
    """The saved sweep: config, servers, model, hardware and the points so far, rewritten to
    ``OUT/sweep.json`` after every point so an interrupted sweep keeps what it measured."""

    out_dir: Path
    data: dict[str, Any]

    @classmethod
    def create(cls, out_dir: Path, config: SweepConfig, command: str | None) -> SweepRecorder:
        out_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "format": SWEEP_FORMAT,
            "command": command,
            "config": config.to_dict(),
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "finished_at": None,
            "duration_seconds": None,
            "complete": False,
            "environment": environment(),
            "servers": {},
            "model": None,
            "hardware": None,
            "workloads": {},
            "points": [],
        }
        return cls(out_dir, data)

    @property
    def path(self) -> Path:
        return self.out_dir / SWEEP_FILE

    def add_point(self, point: dict[str, Any]) -> None:
        self.data["points"].append(point)
        if self.data["hardware"] is None and point.get("controller"):
            self.data["hardware"] = hardware_record(point["controller"].get("hardware"))
        self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        tmp.replace(self.path)


def _describe_targets(
    recorder: SweepRecorder, started: dict[str, tuple[ServerProcess, dict]]
) -> dict[str, ServerTarget]:
    targets = {}
    for name, (process, info) in started.items():
        model, root = served_model(process.base_url)
        targets[name] = ServerTarget(name, process.base_url, model, info)
        recorder.data["servers"][name] = {k: v for k, v in info.items() if k != "log"}
        if recorder.data["model"] is None:
            recorder.data["model"] = {
                "name": model,
                "path": root,
                "config": read_model_config(root),
            }
    return targets


def run_sweep(
    config: SweepConfig,
    out_dir: Path,
    progress: SweepProgress | None = None,
    *,
    log_dir: Path | None = None,
    command: str | None = None,
    targets: dict[str, ServerTarget] | None = None,
) -> Path:
    """Run the sweep and return the path of the saved ``sweep.json``.

    With ``targets`` (server name → already running server) nothing is started: tests use this
    with fake servers. Otherwise every server the modes need is started here (all at once, or
    one after another with ``config.one_server_at_a_time``) and stopped at the end."""
    progress = progress or SweepProgress()
    workloads = {
        name: load_workload(name, max_tokens=config.max_tokens) for name in config.workloads
    }
    recorder = SweepRecorder.create(out_dir, config, command)
    recorder.data["workloads"] = {name: w.to_dict() for name, w in workloads.items()}
    # Server logs stay out of the results folder (they grow to megabytes).
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="specgate-sweep-logs-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    clock = time.monotonic()
    progress.start(len(plan_points(config, config.modes)))
    if targets is not None:
        require_loopback_targets(targets)
        for name, target in targets.items():
            recorder.data["servers"][name] = dict(target.info)
        asyncio.run(
            run_points(config, targets, workloads, config.modes, progress, recorder.add_point)
        )
    else:
        groups = (
            [[s] for s in config.servers()] if config.one_server_at_a_time else [config.servers()]
        )
        for names in groups:
            progress.message(f"starting {', '.join(names)} (logs in {log_dir})")
            with running_servers(config, names, log_dir) as started:
                live = _describe_targets(recorder, started)
                startup = ", ".join(
                    f"{n} {i.get('startup_seconds')}s" for n, (_, i) in started.items()
                )
                progress.message(f"ready: {startup}")
                modes = [m for m in config.modes if m.server in names]
                asyncio.run(
                    run_points(config, live, workloads, modes, progress, recorder.add_point)
                )
    if recorder.data["model"] is None and config.model:
        recorder.data["model"] = {"name": Path(config.model).name, "path": config.model,
                                  "config": read_model_config(config.model)}  # fmt: skip
    recorder.data["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    recorder.data["duration_seconds"] = round(time.monotonic() - clock, 1)
    recorder.data["complete"] = True
    recorder.save()
    return recorder.path


def config_from_args(args) -> SweepConfig:
    """Build a SweepConfig from `specgate loadtest sweep` arguments (raises ValueError)."""
    return SweepConfig(
        workloads=[w.strip() for w in args.workload.split(",") if w.strip()],
        concurrency=parse_levels(args.concurrency),
        modes=parse_modes(args.modes, args.gamma_max),
        gamma_max=args.gamma_max,
        max_tokens=args.max_tokens,
        requests_per_worker=args.requests_per_worker,
        min_requests=args.min_requests,
        warmup_max=args.warmup_max,
        point_max_seconds=args.point_max_seconds,
        request_timeout_seconds=args.timeout,
        model=args.model,
        gateway_args=shlex.split(args.gateway_args),
        engine_args=args.engine_args,
        kv_cache_gib=None if args.kv_cache_gib <= 0 else args.kv_cache_gib,
        one_server_at_a_time=args.one_server_at_a_time,
    )


def require_loopback_targets(targets: dict[str, ServerTarget]) -> None:
    for target in targets.values():
        require_loopback_url(target.base_url)
