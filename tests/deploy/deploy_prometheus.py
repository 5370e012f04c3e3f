"""A throwaway Prometheus on loopback: the committed prometheus.yml, retargeted at a live
gateway, scraping and evaluating the committed rules every second."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from deploy_paths import PROMETHEUS_DIR, RULE_FILES, require_binary
from loadtests.servers import LOOPBACK, free_port

EVALUATION_INTERVAL_SECONDS = 1


def config_for_gateway(gateway_address: str) -> dict:
    """deploy/prometheus/prometheus.yml with 1 s intervals, absolute rule paths, one target."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    interval = f"{EVALUATION_INTERVAL_SECONDS}s"
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config["rule_files"] = [str(path) for path in RULE_FILES]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [gateway_address]}]
    return config


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen
    log_path: Path

    def api(self, path: str, **params) -> dict:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10, trust_env=False)
        body = response.json()
        body["http_status"] = response.status_code
        return body

    def query(self, promql: str) -> dict:
        return self.api("query", query=promql)

    def series_count(self, promql: str) -> int:
        body = self.query(promql)
        return len(body["data"]["result"]) if body["status"] == "success" else 0

    def wait_for(self, promql: str, timeout_seconds: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_seconds
        while self.series_count(promql) == 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no result for {promql!r} after {timeout_seconds:.0f}s:\n{self.log_tail()}")
            time.sleep(0.5)

    def wait_for_more_scrapes(self, job: str, scrapes: int) -> None:
        """Wait until `scrapes` more scrapes of `job` have landed, then two rule evaluations:
        rates need two samples of a series that appeared during the traffic."""
        done = f'count_over_time(up{{job="{job}"}}[1h])'
        seen = int(float(self.query(done)["data"]["result"][0]["value"][1]))
        self.wait_for(f"{done} >= {seen + scrapes}")
        time.sleep(2 * EVALUATION_INTERVAL_SECONDS)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@contextlib.contextmanager
def running_prometheus(gateway_address: str, work_dir: Path) -> Iterator[Prometheus]:
    binary = require_binary("prometheus")
    config_path = work_dir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config_for_gateway(gateway_address), sort_keys=False))
    port = free_port()
    log_path = work_dir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={work_dir / 'tsdb'}",
                f"--web.listen-address={LOOPBACK}:{port}",
                "--web.enable-lifecycle",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    prometheus = Prometheus(f"http://{LOOPBACK}:{port}", process, log_path)
    try:
        _wait_ready(prometheus)
        yield prometheus
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_ready(prometheus: Prometheus, timeout_seconds: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if prometheus.process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {prometheus.process.returncode}:\n{prometheus.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{prometheus.url}/-/ready", timeout=2, trust_env=False).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"prometheus not ready after {timeout_seconds:.0f}s:\n{prometheus.log_tail()}")
