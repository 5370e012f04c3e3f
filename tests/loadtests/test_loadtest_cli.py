from __future__ import annotations

import json

import pytest
from loadtest_metrics_samples import SCRAPE_AFTER

from loadtests.cli import build_parser, main


def test_run_prints_a_summary_and_writes_json(fake_server, mtbench_available, tmp_path, capsys):
    fake_server.state.metrics_text = SCRAPE_AFTER
    out = tmp_path / "result.json"
    argv = [
        "run",
        "--url",
        fake_server.base_url,
        "--model",
        "smollm2",
        "--workload",
        "mtbench",
        "--concurrency",
        "3",
        "--num-requests",
        "9",
        "--max-tokens",
        "4",
        "--warmup",
        "1",
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "output tokens/s" in printed and "TTFT" in printed
    data = json.loads(out.read_text())
    assert data["summary"]["num_ok"] == 9 and data["summary"]["total_output_tokens"] == 36
    assert data["spec"]["concurrency"] == 3 and data["spec"]["mode"] == "closed"
    assert data["workload"]["name"] == "mtbench"
    assert len(data["records"]) == 9 and len(data["warmup_records"]) == 1
    assert data["spec_decode"]["num_drafts"] == 0 and data["metrics_error"] is None
    bodies = fake_server.state.bodies
    assert len(bodies) == 10 and all(
        b["max_tokens"] == 4 and b["model"] == "smollm2" for b in bodies
    )


def test_open_loop_run_without_records(fake_server, mtbench_available, tmp_path):
    out = tmp_path / "open.json"
    argv = [
        "run",
        "--url",
        fake_server.base_url,
        "--model",
        "m",
        "--rate",
        "100",
        "--num-requests",
        "5",
        "--max-tokens",
        "2",
        "--no-metrics",
        "--no-records",
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert data["spec"]["mode"] == "open" and data["summary"]["num_ok"] == 5
    assert "records" not in data and data["spec_decode"] is None


def test_failed_run_exits_non_zero(mtbench_available, tmp_path):
    argv = [
        "run",
        "--url",
        "http://127.0.0.1:9/v1",
        "--model",
        "m",
        "--num-requests",
        "2",
        "--no-metrics",
        "--json",
        str(tmp_path / "r.json"),
    ]
    assert main(argv) == 1
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["summary"]["errors_by_kind"] == {"connect_error": 2}


def test_non_loopback_url_is_refused(capsys):
    assert main(["run", "--url", "http://192.168.1.10:8000/v1", "--model", "m"]) == 2
    assert "not loopback" in capsys.readouterr().err


def test_parser_has_subcommands_for_later_commands():
    parser, subcommands = build_parser()
    subcommands.add_parser("later").set_defaults(handler=lambda args: 0)
    assert parser.parse_args(["later"]).command == "later"
    assert {"run", "sweep", "report"} <= set(subcommands.choices)
    with pytest.raises(SystemExit):
        parser.parse_args([])
