"""Sweep and report: mode parsing, run order, a sweep against fake gateways, and the report
built from synthetic saved data (crossover, controller ratios, roofline check, files)."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
from loadtest_sweep_fake import SweepFakeServer

from loadtests.cli import main
from loadtests.metrics_scrape import histogram_delta, histogram_totals
from loadtests.report import (
    NO_OFF_STEPS,
    BatchCorrection,
    DecodeOnlySteps,
    analyze,
    batch_corrections,
    build_report,
    corrected_step_seconds,
    find_crossover,
    load_sweep,
    predicted_speedup,
    spec_seconds_per_token,
    speedup_from_off,
)
from loadtests.sweep import (
    GATEWAY_OFF,
    GATEWAY_SPEC,
    SWEEP_FORMAT,
    ServerTarget,
    SweepConfig,
    parse_levels,
    parse_mode,
    parse_modes,
    plan_points,
    run_sweep,
    split_modes,
)

SMOLLM2_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 49152,
    "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
    "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
    "tie_word_embeddings": True, "torch_dtype": "bfloat16",
}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Modes and plan
# --------------------------------------------------------------------------------------------


def test_modes_parse_into_servers_and_policies():
    modes = parse_modes("off,fixed:2, table:[[1,4,4],[5,64,0]],adaptive,vllm:off,vllm:fixed:4", 8)
    assert [(m.name, m.server, m.policy) for m in modes] == [
        ("off", GATEWAY_OFF, None),
        ("fixed:2", GATEWAY_SPEC, "fixed:2"),
        ("table:[[1,4,4],[5,64,0]]", GATEWAY_SPEC, "table:[[1,4,4],[5,64,0]]"),
        ("adaptive", GATEWAY_SPEC, "adaptive"),
        ("vllm:off", "vllm-off", None),
        ("vllm:fixed:4", "vllm-ngram-4", None),
    ]
    assert [m.is_peer for m in modes] == [False] * 4 + [True] * 2
    assert [m.speculative for m in modes] == [False, True, True, True, False, True]
    assert split_modes("a,table:[[1,2,3],[4,5,6]],b") == ["a", "table:[[1,2,3],[4,5,6]]", "b"]


@pytest.mark.parametrize(
    "text", ["fixed:9", "fixed:x", "table:[[0,4,2]]", "table:nope", "vllm:fixed:0", "sometimes"]
)
def test_bad_modes_are_refused(text):
    with pytest.raises(ValueError):
        parse_mode(text, 8)


def test_repeated_modes_and_bad_levels_are_refused():
    with pytest.raises(ValueError, match="repeat"):
        parse_modes("off,fixed:2,off", 8)
    assert parse_levels("4,1,2,2") == [1, 2, 4]
    for bad in ("", "0,1", "a"):
        with pytest.raises(ValueError):
            parse_levels(bad)


def test_plan_rotates_the_mode_order_at_every_level():
    config = SweepConfig(["humaneval"], [1, 2, 4], parse_modes("off,fixed:2,adaptive", 8))
    plan = plan_points(config, config.modes)
    orders = [[m.name for w, c, m in plan if c == level] for level in (1, 2, 4)]
    assert orders == [["off", "fixed:2", "adaptive"], ["fixed:2", "adaptive", "off"],
                      ["adaptive", "off", "fixed:2"]]  # fmt: skip
    assert config.num_requests(1) == 6 and config.num_requests(64) == 128
    assert config.warmup_requests(1) == 2 and config.warmup_requests(64) == 16


def test_histogram_totals_and_delta_sum_over_labels():
    before = histogram_totals(
        "# TYPE specgate_gamma_chosen histogram\n"
        'specgate_gamma_chosen_sum{model_name="a"} 10\nspecgate_gamma_chosen_count{model_name="a"} 5\n'
        'specgate_gamma_chosen_sum{model_name="b"} 2\nspecgate_gamma_chosen_count{model_name="b"} 1\n'
        "# TYPE vllm:other histogram\nvllm:other_sum 3\nvllm:other_count 3\n"
    )
    assert before == {"specgate_gamma_chosen": {"sum": 12.0, "count": 6.0}}
    after = {"specgate_gamma_chosen": {"sum": 32.0, "count": 16.0}}
    assert histogram_delta(before, after) == {
        "specgate_gamma_chosen": {"sum": 20.0, "count": 10.0, "mean": 2.0}
    }


# --------------------------------------------------------------------------------------------
# Sweep against fake gateways
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_gateways():
    off, spec = SweepFakeServer.start(speculative=False), SweepFakeServer.start(speculative=True)
    yield off, spec
    off.stop()
    spec.stop()


@pytest.fixture()
def model_folder(tmp_path) -> Path:
    folder = tmp_path / "fake-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(SMOLLM2_CONFIG))
    return folder


def test_sweep_against_fake_gateways_records_every_point(
    fake_gateways, humaneval_available, model_folder, tmp_path
):
    off, spec = fake_gateways
    spec.state.puts.clear()
    config = SweepConfig(["humaneval"], [1, 4, 16], parse_modes("off,fixed:2,fixed:4,adaptive", 8),
                         max_tokens=16, min_requests=4, warmup_max=2, model=str(model_folder))  # fmt: skip
    targets = {
        GATEWAY_OFF: ServerTarget(GATEWAY_OFF, off.base_url, "fake-model"),
        GATEWAY_SPEC: ServerTarget(GATEWAY_SPEC, spec.base_url, "fake-model"),
    }
    calls = []

    class Recorder:
        def start(self, total):
            calls.append(("start", total))

        def point_started(self, label, num_requests):
            calls.append(("point", label, num_requests))

        def request_done(self, record):
            calls.append(("request",))

        def point_done(self, point):
            calls.append(("done", point["mode"]))

        def message(self, text):
            pass

    path = run_sweep(config, tmp_path / "out", Recorder(), targets=targets)
    data = load_sweep(path)
    assert data["format"] == SWEEP_FORMAT and data["complete"]
    assert data["model"]["config"]["hidden_size"] == 576
    assert (
        data["hardware"]["preset"] == "cpu-local"
        and data["hardware"]["spec"]["name"] == "cpu-local"
    )
    points = data["points"]
    assert [(p["concurrency"], p["mode"]) for p in points] == [
        (1, "off"), (1, "fixed:2"), (1, "fixed:4"), (1, "adaptive"),
        (4, "fixed:2"), (4, "fixed:4"), (4, "adaptive"), (4, "off"),
        (16, "fixed:4"), (16, "adaptive"), (16, "off"), (16, "fixed:2"),
    ]  # fmt: skip
    # The speculative gateway was switched before each of its points, in run order.
    assert spec.state.puts == [p["mode"] for p in points if p["mode"] != "off"]
    for p in points:
        assert p["client"]["num_ok"] == p["num_requests"] == max(4, 2 * p["concurrency"])
        assert p["client"]["num_errors"] == 0 and p["load"]["mean_decoding"] > 0
        # Both gateways' schedulers export their decode-only steps; the sweep keeps `off`'s too.
        assert p["specgate"]["specgate_observed_step_seconds"]["count"] > 0
        assert p["specgate"]["specgate_batch_size"]["mean"] >= 1
        if p["mode"] == "off":
            assert p["controller"] is None and p["spec_decode"]["num_drafts"] == 0
        else:
            assert p["controller"]["policy"] == p["mode"]
            assert p["specgate"]["specgate_gamma_chosen"]["count"] > 0
    fixed4 = next(p for p in points if p["mode"] == "fixed:4" and p["concurrency"] == 1)
    assert fixed4["spec_decode"]["num_draft_tokens"] == 4 * fixed4["spec_decode"]["num_drafts"] > 0
    assert calls[0] == ("start", 12)
    assert sum(c[0] == "request" for c in calls) == sum(p["num_requests"] for p in points)
    assert [c[1] for c in calls if c[0] == "done"] == [p["mode"] for p in points]

    analysis = build_report(path)
    out = path.parent
    for name in ("report.json", "points.csv", "summary.md", "throughput_humaneval.png", "speedup_humaneval.png",
                 "latency_humaneval.png", "roofline_humaneval.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    with (out / "points.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 12
    assert analysis["roofline"]["points"] == 9  # predicted from `off` at every speculative point
    assert not (out / "logs").exists()


def test_sweep_cli_refuses_bad_arguments(capsys, tmp_path):
    assert main(["sweep", "--out", str(tmp_path), "--modes", "off,fixed:99"]) == 2
    assert "fixed:99" in capsys.readouterr().err
    assert main(["sweep", "--out", str(tmp_path), "--concurrency", "0"]) == 2


# --------------------------------------------------------------------------------------------
# Report from synthetic saved data
# --------------------------------------------------------------------------------------------


def test_crossover_between_levels_is_interpolated_in_log2():
    crossover = find_crossover([1, 2, 4, 8, 16], [1.4, 1.3, 1.2, 1.1, 0.9])
    assert (crossover["kind"], crossover["low"], crossover["high"]) == ("between", 8, 16)
    assert crossover["interpolated"] == pytest.approx(2**3.5)
    assert crossover["monotonic"]
    assert find_crossover([1, 2, 4], [1.2, 1.1, 1.05])["kind"] == "beyond"
    assert find_crossover([1, 2, 4], [0.9, 0.95, 0.8])["kind"] == "never"
    noisy = find_crossover([1, 2, 4, 8], [1.2, 0.99, 1.05, 0.9])
    assert (noisy["low"], noisy["high"], noisy["monotonic"]) == (4, 8, False)
    assert find_crossover([1, 2], [None, None])["kind"] == "no data"


def test_predicted_speedup_matches_the_planner_at_integer_points():
    from roofline import load_hardware
    from roofline.planner import GammaPlanner
    from roofline.specs import model_from_hf_config

    planner = GammaPlanner(model_from_hf_config(SMOLLM2_CONFIG, name="m"), load_hardware("cpu-local"), 8,
                           overhead_seconds=0.02, scale=3.0, per_token_seconds=1e-4)  # fmt: skip
    p = [0.8, 0.7, 0.6, 0.5]
    survival = [math.prod(p[: k + 1]) for k in range(4)]
    curve = planner.speedup_curve(16, 300, p + [0.0] * 4)
    assert predicted_speedup(planner, 16, 300, 4.0, survival) == pytest.approx(curve[4])
    # Between integer batches and draft counts the prediction lies between its neighbours.
    between = predicted_speedup(planner, 16.5, 300, 3.5, survival)
    ends = [predicted_speedup(planner, b, 300, d, survival) for b in (16, 17) for d in (3, 4)]
    assert min(ends) <= between <= max(ends)
    assert predicted_speedup(planner, 0.4, 300, 0.0, []) == pytest.approx(1.0)


def _planner(**calibration):
    from roofline import load_hardware
    from roofline.planner import GammaPlanner
    from roofline.specs import model_from_hf_config

    model = model_from_hf_config(SMOLLM2_CONFIG, name="m")
    return GammaPlanner(model, load_hardware("cpu-local"), 8, **calibration)


CALIBRATION = {"overhead_seconds": 0.02, "scale": 3.0, "per_token_seconds": 1e-4}


def test_spec_seconds_per_token_is_the_calibrated_step_over_the_tokens_it_emits():
    planner = _planner(**CALIBRATION)
    # ngram drafts cost nothing: t(B, 1) · R(B, 1 + D) is the calibrated step of query 1 + D.
    # (300 is a cache-bucket midpoint, so the bucketed ratio and the exact step agree.)
    step = planner.step_seconds(4, 3, 300)
    assert spec_seconds_per_token(planner, 4.0, 300, 2.0, [0.6, 0.3]) == pytest.approx(
        step / (4 * 1.9)
    )
    # Between whole batches it lies between its neighbours.
    between = spec_seconds_per_token(planner, 4.5, 300, 2.0, [0.6, 0.3])
    ends = [spec_seconds_per_token(planner, b, 300, 2.0, [0.6, 0.3]) for b in (4, 5)]
    assert min(ends) <= between <= max(ends)


def test_the_controllers_batch_size_correction_is_applied_where_it_reports_one():
    planner = _planner(**CALIBRATION)
    step = planner.step_seconds(4, 3, 300)  # 4 requests verifying 2 drafts: 12 tokens
    corrections = batch_corrections(
        {"by_batch_bucket": {"2-3": {"offset_seconds": 9.0, "seconds_per_token": 9.0},
                             "4-7": {"offset_seconds": 0.01, "seconds_per_token": 0.001}}}
    )  # fmt: skip
    corrected = spec_seconds_per_token(planner, 4.0, 300, 2.0, [0.6, 0.3], corrections)
    assert corrected == pytest.approx((step + 0.01 + 0.001 * 12) / (4 * 1.9))
    # Never below a tenth of the roofline's price; no correction for batches it does not cover.
    assert corrected_step_seconds(1.0, 4, 12, [BatchCorrection(4, 7, -5.0, 0.0)]) == 0.1
    assert corrected_step_seconds(1.0, 8, 12, corrections) == 1.0
    assert batch_corrections({"overhead_seconds": 0.0}) == []


def test_speedup_from_off_keeps_offs_time_outside_decode_steps():
    # off: 20 s wall, 12 s in 600 decode-only steps of 4 requests: 5 ms per token, f = 0.6.
    off = DecodeOnlySteps(seconds=12.0, count=600, batch=4.0)
    assert off.seconds_per_request_step == pytest.approx(0.005)
    result = speedup_from_off(20.0, off, spec_per_token=0.0025)  # r = 0.5
    assert result["off_decode_share"] == pytest.approx(0.6)
    assert result["decode_cost_ratio"] == pytest.approx(0.5)
    # 8 s outside + 12 s · 0.5 = 14 s for off's tokens.
    assert result["predicted_speedup"] == pytest.approx(20 / 14)
    assert speedup_from_off(0.0, off, 0.0025) is None


def _summary(tok_s: float, ttft: float = 0.05) -> dict:
    latency = {
        "count": 8,
        "mean": ttft,
        "p50": ttft,
        "p90": ttft * 1.5,
        "p99": ttft * 2,
        "max": ttft * 2,
    }
    tokens = round(tok_s * 10)
    return {
        "duration_seconds": 10.0, "num_requests": 8, "num_ok": 8, "num_errors": 0, "num_cancelled": 0,
        "errors_by_kind": {}, "total_output_tokens": tokens, "total_prompt_tokens": 800,
        "output_tokens_per_second": tok_s, "requests_per_second": 0.8, "ttft_seconds": latency,
        "tpot_seconds": latency, "itl_seconds": latency, "e2e_seconds": latency, "output_tokens": latency,
        "output_tokens_from_usage": True, "stop_reason": "completed",
    }  # fmt: skip


def _histograms(seconds: float, steps: float, batch: float) -> dict:
    return {
        "specgate_observed_step_seconds": {"sum": seconds, "count": steps, "mean": seconds / steps},
        "specgate_batch_size": {"sum": batch * steps, "count": steps, "mean": batch},
    }


def synthetic_sweep(off_steps: bool = True) -> dict:
    """Two levels, off / fixed:2 / fixed:4 / adaptive / vLLM peers, made-up but consistent.

    ``off_steps``: the `off` gateway exports its decode-only steps (sweeps before it did not)."""
    tok_s = {
        1: {"off": 50.0, "fixed:2": 65.0, "fixed:4": 70.0, "adaptive": 72.0, "vllm:off": 52.0, "vllm:fixed:4": 71.0},
        16: {"off": 300.0, "fixed:2": 290.0, "fixed:4": 270.0, "adaptive": 305.0, "vllm:off": 310.0,
             "vllm:fixed:4": 275.0},
    }  # fmt: skip

    def specgate_of(server: str, concurrency: int, off_steps: bool) -> dict | None:
        # 10 s runs, 6 s of them in decode-only steps of 0.9 · concurrency requests.
        steps = _histograms(6.0, 600 / concurrency, concurrency * 0.9)
        if server == GATEWAY_SPEC:
            return {"specgate_gamma_chosen": {"sum": 30.0, "count": 10.0, "mean": 3.0}, **steps}
        return steps if server == GATEWAY_OFF and off_steps else None

    points = []
    for concurrency, modes in tok_s.items():
        for mode, value in modes.items():
            summary = _summary(value)
            gamma = {"fixed:2": 2, "fixed:4": 4, "adaptive": 3, "vllm:fixed:4": 4}.get(mode, 0)
            spec = None
            if gamma:
                # Decode request-steps S: a fifth find no ngram match; each draft keeps position k
                # with probability 0.6^(k+1); tokens after the first = S + accepted.
                kept_per_draft = sum(0.6 ** (k + 1) for k in range(gamma))
                steps = (summary["total_output_tokens"] - 8) / (1 + 0.8 * kept_per_draft)
                drafts = 0.8 * steps
                per_pos = [drafts * 0.6 ** (k + 1) for k in range(gamma)]
                accepted = sum(per_pos)
                spec = {"num_drafts": drafts, "num_draft_tokens": drafts * gamma, "num_accepted_tokens": accepted,
                        "accepted_per_position": {str(k): v for k, v in enumerate(per_pos)},
                        "acceptance_rate": accepted / (drafts * gamma),
                        "mean_acceptance_length": 1 + accepted / drafts,
                        "per_position_acceptance": {str(k): v / drafts for k, v in enumerate(per_pos)}}  # fmt: skip
            elif mode in ("off", "vllm:off"):
                spec = {"num_drafts": 0, "num_draft_tokens": 0, "num_accepted_tokens": 0, "accepted_per_position": {},
                        "acceptance_rate": None, "mean_acceptance_length": None, "per_position_acceptance": {}}  # fmt: skip
            server = {
                "off": GATEWAY_OFF,
                "vllm:off": "vllm-off",
                "vllm:fixed:4": "vllm-ngram-4",
            }.get(mode, GATEWAY_SPEC)
            controller = None
            if server == GATEWAY_SPEC:
                controller = {"policy": mode, "last_gamma": gamma, "predicted_speedup": 1.1, "hardware": "cpu-local",
                              "calibration": {"overhead_seconds": 0.02, "per_token_seconds": 1e-4, "scale": 3.0,
                                              "samples": 2048}}  # fmt: skip
            points.append({
                "workload": "humaneval", "concurrency": concurrency, "mode": mode, "server": server,
                "peer": mode.startswith("vllm:"), "num_requests": 8, "warmup_requests": 2, "client": summary,
                "load": {"mean_in_flight": concurrency * 0.95, "mean_decoding": concurrency * 0.9,
                         "mean_prompt_tokens": 150.0, "mean_output_tokens": 128.0},
                "spec_decode": spec,
                "specgate": specgate_of(server, concurrency, off_steps),
                "controller": controller, "errors": [],
            })  # fmt: skip
    from dataclasses import asdict

    from roofline import load_hardware

    return {
        "format": SWEEP_FORMAT, "command": "specgate loadtest sweep --workload humaneval", "complete": True,
        "config": {"modes": ["off", "fixed:2", "fixed:4", "adaptive", "vllm:off", "vllm:fixed:4"], "gamma_max": 8,
                   "requests_per_point": {"1": 8, "16": 8}, "max_tokens": 128, "engine_args": ""},
        "started_at": "2026-11-24T02:30:00+00:00", "duration_seconds": 600.0,
        "environment": {"cpu_count": 2, "vllm": "0.32.0"}, "servers": {},
        "model": {"name": "SmolLM2-135M-Instruct", "path": None, "config": SMOLLM2_CONFIG},
        "hardware": {"preset": "cpu-local", "spec": asdict(load_hardware("cpu-local"))},
        "workloads": {"humaneval": {}}, "points": points,
    }  # fmt: skip


def test_analysis_of_synthetic_data():
    analysis = analyze(synthetic_sweep())
    rows = {(r["concurrency"], r["mode"]): r for r in analysis["rows"]}
    assert rows[(1, "fixed:4")]["speedup"] == pytest.approx(70 / 50)
    assert rows[(1, "vllm:fixed:4")]["speedup"] == pytest.approx(71 / 52)  # over vllm:off
    assert rows[(1, "off")]["roofline_speedup"] is None
    assert rows[(1, "fixed:2")]["drafted_per_step"] > 1.0
    summary = analysis["workloads"]["humaneval"]
    assert summary["crossover"]["kind"] == "between"
    assert (summary["crossover"]["low"], summary["crossover"]["high"]) == (1, 16)
    assert summary["best_speculative_mode"] == {"1": "fixed:4", "16": "fixed:2"}
    controller = summary["controller"]
    assert controller["adaptive_over_best_fixed_per_point"] == {
        "1": pytest.approx(72 / 70),
        "16": pytest.approx(305 / 300),
    }
    assert controller["adaptive_over_best_fixed_min"] == pytest.approx(305 / 300)
    assert controller["best_single_fixed"] == "fixed:4"  # geomean 137.5 vs off 122.5, fixed:2 137.3
    overhead = summary["gateway_overhead"]
    assert overhead["off vs vllm:off"]["1"]["throughput_ratio"] == pytest.approx(50 / 52)
    assert overhead["fixed:4 vs vllm:fixed:4"]["16"]["throughput_ratio"] == pytest.approx(270 / 275)
    roofline = analysis["roofline"]
    assert roofline["points"] == 6  # gateway speculative points only
    assert rows[(1, "vllm:fixed:4")]["roofline_error"] is None  # vllm:off has no step metrics
    errors = sorted(abs(r["roofline_error"]) for r in analysis["rows"] if r["roofline_error"] is not None
                    and not r["peer"])  # fmt: skip
    assert len(errors) == 6
    assert roofline["median_abs_error"] == pytest.approx((errors[2] + errors[3]) / 2)
    assert roofline["met"] == (roofline["median_abs_error"] <= 0.10)
    assert roofline["unavailable"] == []
    assert roofline["roofline_only"]["points"] == 6
    # Each prediction: off's 4 s outside decode-only steps kept, its 6 s scaled by r.
    for r in analysis["rows"]:
        if r["roofline_speedup"] is not None:
            assert r["off_decode_share"] == pytest.approx(0.6)
            assert r["decode_cost_ratio"] == pytest.approx(
                r["spec_decode_ms_per_token"] / r["off_decode_ms_per_token"]
            )
            assert r["roofline_speedup"] == pytest.approx(10 / (4 + 6 * r["decode_cost_ratio"]))  # fmt: skip


def _point(sweep: dict, concurrency: int, mode: str) -> dict:
    return next(p for p in sweep["points"] if (p["concurrency"], p["mode"]) == (concurrency, mode))


def test_prediction_from_off_for_a_hand_computed_point():
    sweep = synthetic_sweep()
    off, spec = _point(sweep, 16, "off"), _point(sweep, 16, "fixed:2")
    # off: 10 s wall, 6 s in 150 decode-only steps of 4 requests: 10 ms per token, f = 0.6.
    off["specgate"] = _histograms(6.0, 150, 4.0)
    # fixed:2: 100 decode request-steps drafting 2 and keeping 0.6 + 0.3 per step, 4 per step,
    # context 200 + 200 / 2 = 300; 198 output tokens (8 first tokens, 100 + 90 after).
    spec["client"]["total_output_tokens"] = 198
    spec["spec_decode"].update(num_draft_tokens=200.0, num_accepted_tokens=90.0,
                               accepted_per_position={"0": 60.0, "1": 30.0})  # fmt: skip
    spec["specgate"] = _histograms(3.0, 100, 4.0)
    spec["load"].update(mean_prompt_tokens=200.0, mean_output_tokens=200.0)
    spec["controller"]["calibration"] = {**CALIBRATION, "samples": 512}
    row = next(
        r for r in analyze(sweep)["rows"] if (r["concurrency"], r["mode"]) == (16, "fixed:2")
    )
    spec_per_token = _planner(**CALIBRATION).step_seconds(4, 3, 300) / (4 * 1.9)
    r = spec_per_token / 0.010
    assert (row["drafted_per_step"], row["accepted_per_step"]) == (
        pytest.approx(2.0),
        pytest.approx(0.9),
    )
    assert row["spec_decode_ms_per_token"] == pytest.approx(spec_per_token * 1e3)
    assert row["off_decode_ms_per_token"] == pytest.approx(10.0)
    assert row["decode_cost_ratio"] == pytest.approx(r)
    assert row["off_decode_share"] == pytest.approx(0.6)
    predicted = 10.0 / (4.0 + 6.0 * r)
    assert row["roofline_speedup"] == pytest.approx(predicted)
    assert row["roofline_error"] == pytest.approx((predicted - 290 / 300) / (290 / 300))
    assert row["roofline_unavailable"] is None


def test_old_sweeps_without_off_step_metrics_report_n_a(tmp_path, capsys):
    (tmp_path / "sweep.json").write_text(json.dumps(synthetic_sweep(off_steps=False)))
    assert main(["report", str(tmp_path)]) == 0
    assert "roofline check: n/a" in capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    roofline = report["roofline"]
    assert (
        roofline["median_abs_error"] is None and roofline["points"] == 0 and roofline["met"] is None
    )
    assert roofline["unavailable"] == [NO_OFF_STEPS]
    assert roofline["roofline_only"]["points"] == 6  # the diagnostic still stands
    speculative = [r for r in report["points"] if r["mode"] in ("fixed:2", "fixed:4", "adaptive")]
    assert all(
        r["roofline_speedup"] is None and r["roofline_unavailable"] == NO_OFF_STEPS
        for r in speculative
    )
    assert all(r["roofline_only_speedup"] is not None for r in speculative)
    summary = (tmp_path / "summary.md").read_text()
    assert "No prediction from `off`" in summary and "predates the `off` gateway" in summary
    assert "| n/a | n/a |" in summary  # the prediction's cells
    assert not (tmp_path / "roofline_humaneval.png").exists()


def test_report_rebuilds_the_same_files_from_saved_data(tmp_path, capsys):
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / "sweep.json").write_text(json.dumps(synthetic_sweep()))
    assert main(["report", str(folder)]) == 0
    printed = capsys.readouterr().out
    assert "crossover between concurrency 1 and 16" in printed and "roofline check" in printed
    first = {
        name: (folder / name).read_text() for name in ("report.json", "points.csv", "summary.md")
    }
    pngs = sorted(p.name for p in folder.glob("*.png"))
    assert pngs == ["latency_humaneval.png", "roofline_humaneval.png", "speedup_humaneval.png",
                    "throughput_humaneval.png"]  # fmt: skip
    for name in [*first, *pngs]:
        (folder / name).unlink()
    other = tmp_path / "copy"
    assert main(["report", str(folder / "sweep.json"), "--out", str(other)]) == 0
    assert {name: (other / name).read_text() for name in first} == first
    assert sorted(p.name for p in other.glob("*.png")) == pngs
    summary = first["summary.md"]
    assert (
        "Crossover" in summary
        and "Gateway overhead" in summary
        and "Median absolute relative error" in summary
    )
    assert "![speedup_humaneval](speedup_humaneval.png)" in summary


def test_report_refuses_other_files(tmp_path, capsys):
    (tmp_path / "sweep.json").write_text(json.dumps({"format": "something-else"}))
    assert main(["report", str(tmp_path)]) == 2
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_incomplete_sweep_is_flagged_in_the_summary(tmp_path):
    data = synthetic_sweep()
    data["complete"] = False
    data["model"]["config"] = None  # no roofline possible without the model's shape
    (tmp_path / "sweep.json").write_text(json.dumps(data))
    analysis = build_report(tmp_path, plots=False)
    assert analysis["roofline"]["median_abs_error"] is None
    text = (tmp_path / "summary.md").read_text()
    assert "incomplete" in text and "No roofline prediction" in text
    shutil.rmtree(tmp_path)
