"""The offline replay: exact token accounting on synthetic traces, the step-time fit, modes."""

import csv
from pathlib import Path

import pytest

from loadtests.replay import (
    StepTimeModel,
    Trace,
    fit_step_time,
    make_controller,
    parse_mode,
    replay,
)
from server.model_prep import default_model_dir

UNIT_STEP = StepTimeModel(fixed_seconds=1.0, per_token_seconds=0.0, per_kv_position_seconds=0.0)


def copying_trace(length: int = 40) -> Trace:
    """The output repeats the prompt's pattern, so ngram drafts are always right once it started."""
    pattern = (11, 12, 13, 14, 15, 16, 17)
    prompt = pattern * 3
    output = tuple(pattern[i % len(pattern)] for i in range(length))
    return Trace(prompt, output)


def novel_trace(length: int = 40) -> Trace:
    """No repeated bigram anywhere: ngram never proposes."""
    return Trace(tuple(range(100, 120)), tuple(range(200, 200 + length)))


@pytest.fixture(scope="module")
def model_dir():
    path = default_model_dir()
    if not (path / "config.json").is_file():
        pytest.skip("embedded model not prepared")
    return path


def test_off_emits_one_token_per_decoding_request_per_step(model_dir):
    controller = make_controller(model_dir, "cpu-local", "off")
    result = replay([copying_trace(), copying_trace()], 2, controller, UNIT_STEP)
    assert result.output_tokens == 80
    assert result.accepted_tokens == result.verified_drafts == 0
    assert result.steps == 1 + 39  # the prefill step samples the first token, then one per step


def test_fixed_gamma_on_a_perfect_copy_accepts_every_draft(model_dir):
    controller = make_controller(model_dir, "cpu-local", "fixed:4")
    result = replay([copying_trace(41)], 1, controller, UNIT_STEP)
    assert result.output_tokens == 41
    # prefill step emits the first token; then each step verifies 4 drafts and keeps all + 1 bonus
    assert result.steps == 1 + 8
    assert result.accepted_tokens == 32 and result.verified_drafts == 32


def test_drafts_are_checked_against_the_recorded_output(model_dir):
    controller = make_controller(model_dir, "cpu-local", "fixed:4")
    result = replay([novel_trace()], 1, controller, UNIT_STEP)
    assert result.verified_drafts == 0 and result.output_tokens == 40 and result.steps == 40


def test_step_time_is_charged_per_token_and_kv_position(model_dir):
    controller = make_controller(model_dir, "cpu-local", "off")
    model = StepTimeModel(fixed_seconds=0.0, per_token_seconds=1.0, per_kv_position_seconds=0.5,
                          per_prefill_token_seconds=0.25)
    trace = novel_trace(10)
    result = replay([trace], 1, controller, model)
    # prefill step: 20 prompt tokens; then 9 decode steps of 1 token over 21, 22, ... 29 positions
    assert result.seconds == pytest.approx(20 * 0.25 + 9 * 1.0 + 0.5 * sum(range(21, 30)))


def test_adaptive_learns_to_draft_deep_on_a_copying_request(model_dir):
    controller = make_controller(model_dir, "cpu-local", "adaptive")
    result = replay([copying_trace(200)], 1, controller, StepTimeModel(0.03, 0.0005, 0.0))
    assert result.accepted_tokens / result.steps > 4


def test_fit_step_time_recovers_a_line(tmp_path):
    path = tmp_path / "steps.csv"
    with path.open("w", newline="") as sink:
        writer = csv.writer(sink)
        writer.writerow(["entered_seconds", "batch", "tokens", "verified_drafts", "seq_len", "decode_only", "period_seconds"])
        entered = 100.0
        steps = [(1, 1, 0, 100, 0), (1, 5, 4, 300, 0), (4, 20, 16, 200, 0), (2, 402, 0, 10, 400), (8, 9, 1, 500, 0),
                 (16, 80, 64, 250, 0), (4, 60, 4, 300, 52)]
        for batch, tokens, verified, seq_len, prompt_tokens in steps:
            period = 0.03 + 0.001 * (tokens - prompt_tokens) + 1e-6 * batch * seq_len + 0.0002 * prompt_tokens
            writer.writerow([entered, batch, tokens, verified, seq_len, int(not prompt_tokens),
                             period if not prompt_tokens else ""])  # steps with a prefill: no period logged
            entered += period
    fitted = fit_step_time(path)
    assert fitted.fixed_seconds == pytest.approx(0.03, rel=1e-6)
    assert fitted.per_token_seconds == pytest.approx(0.001, rel=1e-6)
    assert fitted.per_kv_position_seconds == pytest.approx(1e-6, rel=1e-4)
    assert fitted.per_prefill_token_seconds == pytest.approx(0.0002, rel=1e-4)


def test_mode_options_parse_into_controller_fields():
    assert parse_mode("adaptive") == ("adaptive", {})
    assert parse_mode("adaptive@request_rate=0.1+hysteresis=0") == ("adaptive", {"request_rate": 0.1, "hysteresis": 0})


def test_the_oracle_verifies_only_drafts_that_are_accepted(model_dir):
    mixed = [copying_trace(60), novel_trace(30), Trace((5, 6, 7, 8, 5, 6, 9, 9, 5, 6), (7, 8, 1, 2, 3, 5, 6, 9, 4, 4))]
    fixed = replay(mixed, 3, make_controller(model_dir, "cpu-local", "fixed:8"), StepTimeModel(0.03, 0.001, 0.0))
    oracle = replay(mixed, 3, make_controller(model_dir, "cpu-local", "fixed:8"), StepTimeModel(0.03, 0.001, 0.0),
                    oracle=True)
    assert oracle.verified_drafts == oracle.accepted_tokens == fixed.accepted_tokens
    assert fixed.verified_drafts > fixed.accepted_tokens  # the third trace's drafts are partly wrong
    assert oracle.output_tokens == fixed.output_tokens == 100
    assert oracle.seconds < fixed.seconds


def test_the_run_command_reports_the_issue_ratios_and_the_oracle_ceiling(model_dir, tmp_path, capsys):
    import gzip
    import json

    from loadtests.replay import main

    traces = tmp_path / "copy.jsonl.gz"
    with gzip.open(traces, "wt") as sink:
        for trace in (copying_trace(50), novel_trace(30), copying_trace(20)):
            sink.write(json.dumps({"prompt": trace.prompt, "output": trace.output}) + "\n")
    out = tmp_path / "replay.json"
    assert main(["run", str(traces), "--concurrency", "1,2", "--modes", "off,fixed:4,adaptive,oracle",
                 "--min-requests", "3", "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert set(summary["points"]["copy"]["1"]) == {"off", "fixed:4", "adaptive", "oracle"}
    assert summary["best_single_fixed"] == "fixed:4"
    assert summary["oracle_over_best_single_geomean"] >= 1.0
    assert "the ceiling of any per-request γ" in capsys.readouterr().out


def test_throughput_is_steady_state_until_the_last_request_is_sent(model_dir):
    controller = make_controller(model_dir, "cpu-local", "off")
    model = StepTimeModel(fixed_seconds=1.0, per_token_seconds=0.0, per_kv_position_seconds=0.0,
                          per_prefill_token_seconds=0.1)
    result = replay([novel_trace(10), novel_trace(10), novel_trace(2)], 1, controller, model)
    # each request: a 3 s prefill step (1 + 20 × 0.1) with its first token, then 1 s per token
    assert result.steady_seconds == pytest.approx(24.0) and result.steady_output_tokens == 20
    assert result.tokens_per_second == pytest.approx(20 / 24)
    assert result.whole_run_tokens_per_second == pytest.approx(22 / 28)


def test_specgate_loadtest_replay_dispatches_to_the_replay(capsys):
    from loadtests.cli import main

    assert main(["replay", "fit", str(Path(__file__).resolve().parents[2] / "loadtests/results/replay/steps.csv.gz")]) == 0
    assert "StepTimeModel(fixed_seconds=0.038" in capsys.readouterr().out
