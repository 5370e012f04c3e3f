from __future__ import annotations

import asyncio

import pytest
from loadtest_metrics_samples import SCRAPE_AFTER, SCRAPE_BEFORE

from loadtests.metrics_scrape import metrics_url, parse_metrics, scrape_metrics, spec_decode_delta


def test_parse_sums_engines_and_reads_positions():
    snapshot = parse_metrics(SCRAPE_AFTER)
    assert snapshot.num_drafts == 110
    assert snapshot.num_draft_tokens == 440
    assert snapshot.num_accepted_tokens == 248
    assert snapshot.accepted_per_position == {0: 85, 1: 69, 2: 52, 3: 42}
    assert snapshot.specgate_gauges == {
        "specgate_gamma": 4.0,
        'specgate_acceptance_estimate{position="0"}': 0.77,
    }


def test_delta_gives_acceptance_rate_length_and_per_position():
    delta = spec_decode_delta(parse_metrics(SCRAPE_BEFORE), parse_metrics(SCRAPE_AFTER))
    assert (delta.num_drafts, delta.num_draft_tokens, delta.num_accepted_tokens) == (100, 400, 228)
    assert delta.acceptance_rate == pytest.approx(0.57)
    assert delta.mean_acceptance_length == pytest.approx(3.28)
    assert delta.accepted_per_position == {0: 77, 1: 63, 2: 48, 3: 40}
    assert delta.per_position_acceptance == pytest.approx({0: 0.77, 1: 0.63, 2: 0.48, 3: 0.40})
    assert sum(delta.accepted_per_position.values()) == delta.num_accepted_tokens
    assert delta.specgate_gauges["specgate_gamma"] == 4.0


def test_delta_without_spec_decode_metrics_is_empty_not_an_error():
    empty = parse_metrics("# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0\n")
    delta = spec_decode_delta(empty, empty)
    assert delta.num_drafts == 0
    assert delta.acceptance_rate is None and delta.mean_acceptance_length is None
    assert delta.per_position_acceptance == {}


def test_metrics_url_is_at_the_server_root():
    assert metrics_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/metrics"
    assert metrics_url("http://localhost:9/v1/") == "http://localhost:9/metrics"
    with pytest.raises(ValueError):
        metrics_url("http://example.com/v1")


def test_scrape_from_a_server(fake_server):
    fake_server.state.metrics_text = SCRAPE_AFTER
    snapshot = asyncio.run(scrape_metrics(fake_server.base_url))
    assert snapshot.num_drafts == 110
