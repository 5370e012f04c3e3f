"""One short sweep against the real gateway: both gateways started by the sweep itself
(speculation off, and ngram switched by PUT /v1/speculative), two levels, three modes."""

from __future__ import annotations

import csv
import time

import pytest

from loadtests.cli import main
from loadtests.report import load_sweep

pytestmark = [pytest.mark.engine, pytest.mark.timeout(600)]


def test_short_sweep_against_the_real_gateway(embedded_model_path, tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = [
        "sweep", "--workload", "humaneval", "--concurrency", "1,2", "--modes", "off,fixed:2,adaptive",
        "--max-tokens", "32", "--min-requests", "2", "--requests-per-worker", "1", "--warmup-max", "1",
        "--kv-cache-gib", "1", "--out", str(out), "--log-dir", str(tmp_path / "logs"),
    ]  # fmt: skip
    started = time.monotonic()
    assert main(argv) == 0
    elapsed = time.monotonic() - started
    printed = capsys.readouterr().out
    assert "crossover" in printed and "roofline check" in printed

    data = load_sweep(out)
    assert data["complete"] and data["command"].startswith("specgate loadtest sweep")
    assert data["model"]["name"] == embedded_model_path.name
    assert data["model"]["config"]["hidden_size"] > 0 and data["hardware"]["preset"]
    assert set(data["servers"]) == {"gateway-off", "gateway-spec"}
    points = {(p["concurrency"], p["mode"]): p for p in data["points"]}
    assert set(points) == {(c, m) for c in (1, 2) for m in ("off", "fixed:2", "adaptive")}
    for (concurrency, mode), point in points.items():
        client = point["client"]
        assert client["num_errors"] == 0 and client["num_ok"] == point["num_requests"] == 2
        assert (
            0 < client["total_output_tokens"] <= 2 * 32 and client["output_tokens_per_second"] > 0
        )
        assert client["ttft_seconds"]["p50"] > 0 and point["load"]["mean_decoding"] > 0
        spec = point["spec_decode"]
        if mode == "off":  # speculation disabled in the engine: no drafts, no controller
            assert spec["num_drafts"] == 0 and point["controller"] is None
            continue
        status = point["controller"]
        assert status["policy"] == mode and status["gamma_max"] == 8
        assert (
            0 < spec["num_draft_tokens"] and spec["num_accepted_tokens"] <= spec["num_draft_tokens"]
        )
        if mode == "fixed:2":  # ngram drafts at most γ = 2 tokens
            assert spec["num_draft_tokens"] <= 2 * spec["num_drafts"]
            assert point["specgate"]["specgate_gamma_chosen"]["mean"] == pytest.approx(2.0)
    assert (
        max(p["controller"]["calibration"]["samples"] for p in data["points"] if p["controller"])
        > 0
    )

    with (out / "points.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and all(float(r["speedup"]) > 0 for r in rows)
    assert sum(bool(r["roofline_speedup"]) for r in rows) == 4
    for name in ("summary.md", "report.json", "speedup_humaneval.png", "roofline_humaneval.png"):
        assert (out / name).stat().st_size > 0
    print(f"short real sweep took {elapsed:.0f} s")
