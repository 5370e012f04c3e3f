"""The γ controller inside the real engine: /v1/speculative, metrics, policy switching,
and turning a useless draft model off."""

import concurrent.futures
import csv

import httpx
import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from loadtests.draft_models import truncated_draft
from loadtests.servers import running_gateway
from server.scheduler import STEP_LOG_FIELDS
from tests.server.prompts import ALL, COPY_HEAVY

pytestmark = pytest.mark.engine


def gamma_histogram(root_url: str) -> dict[float, float]:
    """Cumulative bucket counts of specgate_gamma_chosen, by upper bound."""
    text = httpx.get(f"{root_url}/metrics").text
    return {float(s.labels["le"]): s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == "specgate_gamma_chosen_bucket"}


def steps_by_gamma(before: dict, after: dict) -> dict[int, float]:
    bounds = sorted(after)
    counts, previous = {}, 0.0
    for bound in bounds:
        cumulative = after[bound] - before.get(bound, 0.0)
        if bound != float("inf"):
            counts[int(bound)] = cumulative - previous
        previous = cumulative
    return counts


def send_concurrently(client, model, prompts, max_tokens=48):
    """Greedy, all at once, each exactly `max_tokens` long (ignore_eos), so step counts are known."""
    with concurrent.futures.ThreadPoolExecutor(len(prompts)) as pool:
        list(pool.map(lambda p: client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": p}], max_tokens=max_tokens, temperature=0,
            extra_body={"ignore_eos": True}), prompts))


def test_status_reports_policy_estimates_and_calibration(sd_gateway, client, model_id):
    client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": COPY_HEAVY[0]}],
                                   max_tokens=32, temperature=0)
    status = httpx.get(f"{sd_gateway.base_url}/speculative").json()
    assert status["policy"] == "adaptive" and status["gamma_max"] == 4
    assert len(status["acceptance_by_position"]) == 4
    assert all(0 <= p <= 1 for p in status["acceptance_by_position"])
    assert status["hardware"] == "cpu-local" and status["steps"] > 0
    assert {"overhead_seconds", "per_token_seconds", "scale", "samples", "by_batch_bucket"} <= set(status["calibration"])
    assert status["drafter_paused"] is False  # ngram: nothing to pause


def test_bad_policy_is_a_400_and_changes_nothing(sd_gateway):
    response = httpx.put(f"{sd_gateway.base_url}/speculative", json={"policy": "fixed:lots"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "policy"
    assert httpx.get(f"{sd_gateway.base_url}/speculative").json()["policy"] == "adaptive"


def test_table_policy_switches_gamma_as_the_batch_grows(sd_gateway, client, model_id):
    table = "table:[[1,1,4],[2,64,1]]"
    httpx.put(f"{sd_gateway.base_url}/speculative", json={"policy": table}).raise_for_status()
    try:
        before = gamma_histogram(sd_gateway.root_url)
        send_concurrently(client, model_id, ALL[:1])
        single = steps_by_gamma(before, gamma_histogram(sd_gateway.root_url))
        before = gamma_histogram(sd_gateway.root_url)
        send_concurrently(client, model_id, ALL[:8])
        batched = steps_by_gamma(before, gamma_histogram(sd_gateway.root_url))
    finally:
        httpx.put(f"{sd_gateway.base_url}/speculative", json={"policy": "adaptive"}).raise_for_status()
    assert single[4] > 0 and single[1] == 0
    assert batched[1] > 0  # how many γ=4 steps the batched run has depends on how unevenly its requests finish
    # The step log pairs each step's batch with its γ: the table, step by step.
    with open(sd_gateway.env["SPECGATE_STEP_LOG"], newline="") as log:
        decode_steps = [(int(r["batch"]), int(r["gamma"])) for r in csv.DictReader(log)
                        if r["policy"] == table and int(r["batch"]) > 0]
    assert {gamma for batch, gamma in decode_steps if batch == 1} == {4}
    assert {gamma for batch, gamma in decode_steps if batch >= 2} == {1}
    assert max(batch for batch, _ in decode_steps) >= 4


def test_metrics_from_the_engine_process_reach_the_gateway(sd_gateway, client, model_id):
    client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": COPY_HEAVY[2]}],
                                   max_tokens=32, temperature=0)
    names = {s.name for f in text_string_to_metric_families(httpx.get(f"{sd_gateway.root_url}/metrics").text)
             for s in f.samples}
    for name in ("specgate_gamma_chosen_count", "specgate_batch_size_count", "specgate_acceptance_rate",
                 "specgate_acceptance_rate_by_position", "specgate_predicted_speedup",
                 "specgate_predicted_step_seconds_count", "specgate_observed_step_seconds_count",
                 "specgate_accepted_tokens_per_step_count", "specgate_decision_seconds_count",
                 "specgate_gamma_policy_info", "specgate_predicted_goodput_tokens_per_second"):
        assert name in names, name


def test_step_log_and_step_seconds_agree(sd_gateway, client, model_id):
    """Decode-only steps are timed schedule() to schedule() while the engine stays busy; the
    log has one row per step and the period (where there is one) includes the step's own window."""
    send_concurrently(client, model_id, ALL[:4], max_tokens=24)
    text = httpx.get(f"{sd_gateway.root_url}/metrics").text
    timed = sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "specgate_observed_step_seconds_count")
    with open(sd_gateway.env["SPECGATE_STEP_LOG"], newline="") as log:
        rows = list(csv.DictReader(log))
    assert tuple(rows[0]) == STEP_LOG_FIELDS
    with_period = [r for r in rows if r["period_seconds"]]
    assert len(with_period) == timed > 0
    assert all(r["decode_only"] == "1" for r in with_period)
    assert all(float(r["period_seconds"]) >= float(r["window_seconds"]) > 0 for r in with_period)
    # one row per scheduling step: the engine is idle now, so none waits for its period
    assert len(rows) == httpx.get(f"{sd_gateway.base_url}/speculative").json()["steps"]
    assert {r["policy"] for r in rows} >= {"adaptive"}


def test_useless_draft_model_is_turned_off(embedded_model_path, tmp_path):
    draft = truncated_draft(embedded_model_path, tmp_path / "draft-6-layers")
    model = "SmolLM2-135M-Instruct"
    args = ["--speculative", f"draft:{draft}", "--gamma-max", "4", "--dtype", "float32"]
    with running_gateway(args, log_dir=tmp_path) as gateway:
        client = OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0, timeout=300)
        for round_start in (0, 4, 8):  # a few hundred steps
            send_concurrently(client, model, ALL[round_start:round_start + 3], max_tokens=96)
        status = httpx.get(f"{gateway.base_url}/speculative").json()
        before = gamma_histogram(gateway.root_url)
        send_concurrently(client, model, ALL[4:8], max_tokens=64)
        later = steps_by_gamma(before, gamma_histogram(gateway.root_url))
        # with the draft model paused, outputs are still the target's own
        paused = [complete(client, model, prompt) for prompt in ALL[:2]]
        httpx.put(f"{gateway.base_url}/speculative", json={"policy": "off"}).raise_for_status()
        plain = [complete(client, model, prompt) for prompt in ALL[:2]]
    assert status["steps"] >= 200
    assert status["drafter_paused"] is True, status
    # after those steps, nearly every step verifies no drafts at all
    assert later[0] >= 0.8 * sum(later.values()), later
    assert paused == plain


def complete(client, model, prompt) -> str:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                          max_tokens=48, temperature=0).choices[0].message.content
