"""Where the deployment files live, and the external tools the deploy tests need."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
GRAFANA_DIR = DEPLOY / "grafana"
DASHBOARD_FILES = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
K8S_DIR = DEPLOY / "k8s"

APT_PROMETHEUS = "apt-get update && apt-get install -y --no-install-recommends prometheus"


def require_binary(name: str) -> str:
    """The path of a required tool; a missing one fails the test (never skips) with the fix."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` not found on PATH. The deploy tests run the real Prometheus tools; install "
            f"them (Debian/Ubuntu: `{APT_PROMETHEUS}`; elsewhere put the prometheus and promtool "
            f"binaries from a Prometheus release on PATH).",
            pytrace=False,
        )
    return path


def require_module(module: str, pip_name: str):
    """Import a test-only Python dependency, failing (never skipping) with the pip command."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        pytest.fail(f"Python module `{module}` missing: pip install '{pip_name}'", pytrace=False)
