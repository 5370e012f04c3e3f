from __future__ import annotations

import asyncio
import socket
import time

import pytest
from loadtest_fake_server import FakeOpenAIServer

from loadtests.loadgen import LoadSpec, poisson_arrival_offsets, run_load
from loadtests.templates import RequestTemplate


def chat(**body) -> RequestTemplate:
    return RequestTemplate("chat", {"messages": [{"role": "user", "content": "hi"}], **body})


def spec_for(server: FakeOpenAIServer, **overrides) -> LoadSpec:
    fields = {
        "base_url": server.base_url,
        "model": "fake",
        "timeout_seconds": 10.0,
        "max_duration_seconds": 20.0,
        **overrides,
    }
    return LoadSpec(**fields)


def wait_until(predicate, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_closed_loop_sends_exact_requests_and_counts_tokens(fake_server):
    spec = spec_for(fake_server, concurrency=4, num_requests=20)
    result = asyncio.run(run_load(spec, [chat(max_tokens=5, fake_delay=0.002)]))
    summary = result.summary
    assert (summary.num_requests, summary.num_ok, summary.num_errors) == (20, 20, 0)
    assert summary.total_output_tokens == 100
    assert summary.total_prompt_tokens == 60
    assert summary.output_tokens_from_usage
    assert summary.stop_reason == "completed"
    assert fake_server.state.requests_received == 20
    assert fake_server.state.max_open_streams <= 4
    assert [r.index for r in result.records] == list(range(20))
    assert all(r.output_tokens == 5 and r.content_chunks == 5 for r in result.records)
    assert summary.itl_seconds.count == 20 * 4
    assert summary.output_tokens_per_second == pytest.approx(100 / summary.duration_seconds)
    assert summary.requests_per_second == pytest.approx(20 / summary.duration_seconds)


def test_latencies_follow_the_servers_delays(fake_server):
    ttft, delay, tokens = 0.05, 0.02, 6
    spec = spec_for(fake_server, concurrency=2, num_requests=6)
    summary = asyncio.run(
        run_load(spec, [chat(max_tokens=tokens, fake_ttft=ttft, fake_delay=delay)])
    ).summary
    assert summary.num_ok == 6
    assert ttft <= summary.ttft_seconds.p50 < ttft + 0.25
    assert 0.5 * delay <= summary.itl_seconds.p50 < delay + 0.1
    assert 0.8 * delay <= summary.tpot_seconds.mean < delay + 0.1
    expected_e2e = ttft + (tokens - 1) * delay
    assert 0.9 * expected_e2e <= summary.e2e_seconds.p50 < expected_e2e + 0.3
    assert summary.ttft_seconds.p50 <= summary.ttft_seconds.p90 <= summary.ttft_seconds.p99


def test_templates_are_cycled_in_order_with_streaming_fields(fake_server):
    templates = [chat(max_tokens=1, marker=i) for i in range(3)]
    asyncio.run(run_load(spec_for(fake_server, concurrency=1, num_requests=7), templates))
    bodies = fake_server.state.bodies
    assert [b["marker"] for b in bodies] == [0, 1, 2, 0, 1, 2, 0]
    assert all(b["model"] == "fake" and b["stream"] is True for b in bodies)
    assert all(b["stream_options"] == {"include_usage": True} for b in bodies)


def test_connections_are_reused_between_requests(fake_server):
    spec = spec_for(fake_server, concurrency=2, num_requests=10)
    result = asyncio.run(run_load(spec, [chat(max_tokens=3)]))
    assert result.summary.num_ok == 10
    assert len(fake_server.state.client_ports) <= 2


def test_completions_endpoint(fake_server):
    template = RequestTemplate("completions", {"prompt": "def f():", "max_tokens": 4})
    result = asyncio.run(run_load(spec_for(fake_server, num_requests=3), [template]))
    assert result.summary.num_ok == 3
    assert result.summary.total_output_tokens == 12


def test_warmup_requests_are_excluded_and_use_later_templates(fake_server):
    templates = [chat(max_tokens=2, marker=i) for i in range(10)]
    spec = spec_for(fake_server, concurrency=2, num_requests=4, warmup_requests=3)
    result = asyncio.run(run_load(spec, templates))
    assert result.summary.num_requests == 4
    assert len(result.warmup_records) == 3
    assert all(r.warmup for r in result.warmup_records)
    assert fake_server.state.requests_received == 7
    markers = [b["marker"] for b in fake_server.state.bodies]
    assert sorted(markers[:3]) == [4, 5, 6]
    assert sorted(markers[3:]) == [0, 1, 2, 3]


def test_open_loop_follows_seeded_poisson_arrivals(fake_server):
    spec = spec_for(fake_server, concurrency=100, num_requests=16, rate_per_second=40, seed=7)
    result = asyncio.run(run_load(spec, [chat(max_tokens=3)]))
    assert result.summary.num_ok == 16
    assert result.summary.total_output_tokens == 48
    expected = poisson_arrival_offsets(40, 16, seed=7)
    scheduled = [r.scheduled_offset_seconds for r in result.records]
    assert scheduled == pytest.approx(expected.tolist())
    for record in result.records:
        assert record.start_offset_seconds >= record.scheduled_offset_seconds - 0.005
        assert record.start_offset_seconds < record.scheduled_offset_seconds + 0.25
    assert result.summary.duration_seconds >= expected[-1]


def test_poisson_arrivals_are_reproducible_and_have_the_right_rate():
    a = poisson_arrival_offsets(10.0, 5000, seed=1)
    assert a[0] == 0.0 and (a == poisson_arrival_offsets(10.0, 5000, seed=1)).all()
    assert (a != poisson_arrival_offsets(10.0, 5000, seed=2)).any()
    assert a[-1] / (len(a) - 1) == pytest.approx(0.1, rel=0.05)


def test_open_loop_caps_requests_in_flight(fake_server):
    spec = spec_for(fake_server, concurrency=2, num_requests=8, rate_per_second=1000)
    result = asyncio.run(run_load(spec, [chat(max_tokens=3, fake_delay=0.02)]))
    assert result.summary.num_ok == 8
    assert fake_server.state.max_open_streams <= 2


def test_errors_are_counted_by_kind_not_raised(fake_server):
    templates = [
        chat(max_tokens=2),
        chat(fake_mode="http_500"),
        chat(fake_mode="malformed"),
        chat(fake_mode="stream_error"),
        chat(max_tokens=2, fake_mode="truncate"),
    ]
    result = asyncio.run(run_load(spec_for(fake_server, concurrency=3, num_requests=10), templates))
    summary = result.summary
    assert summary.num_ok == 2 and summary.num_errors == 8
    assert summary.errors_by_kind == {
        "http_500": 2,
        "malformed_sse": 2,
        "stream_error": 2,
        "incomplete_stream": 2,
    }
    failed = {r.error_kind: r for r in result.records if not r.ok}
    assert failed["http_500"].status_code == 500 and "boom" in failed["http_500"].error_text
    assert summary.total_output_tokens == 4


def test_missing_usage_falls_back_to_counting_chunks(fake_server):
    spec = spec_for(fake_server, num_requests=2)
    result = asyncio.run(run_load(spec, [chat(max_tokens=7, fake_mode="no_usage")]))
    assert result.summary.total_output_tokens == 14
    assert {r.output_tokens_source for r in result.records} == {"chunks"}
    assert not result.summary.output_tokens_from_usage


def test_connection_refused_is_an_error_kind():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = LoadSpec(
        base_url=f"http://127.0.0.1:{port}/v1", model="m", concurrency=2, num_requests=5
    )
    started = time.monotonic()
    result = asyncio.run(run_load(spec, [chat()]))
    assert time.monotonic() - started < 5
    assert result.summary.num_ok == 0
    assert result.summary.errors_by_kind == {"connect_error": 5}
    assert result.summary.output_tokens_per_second == 0.0
    assert result.summary.ttft_seconds.p50 is None


def test_per_request_timeout(fake_server):
    spec = spec_for(fake_server, num_requests=1, timeout_seconds=0.3)
    result = asyncio.run(run_load(spec, [chat(fake_mode="hang")]))
    assert result.summary.errors_by_kind == {"timeout": 1}
    assert wait_until(lambda: fake_server.state.open_streams == 0)


def test_max_duration_cancels_hung_requests(fake_server):
    spec = spec_for(fake_server, concurrency=2, num_requests=10, max_duration_seconds=0.5)
    started = time.monotonic()
    result = asyncio.run(run_load(spec, [chat(fake_mode="hang")]))
    assert time.monotonic() - started < 2.0
    summary = result.summary
    assert summary.stop_reason == "max_duration"
    assert summary.num_cancelled == 2 and summary.num_errors == 0 and summary.num_ok == 0
    assert summary.duration_seconds == pytest.approx(0.5, abs=0.2)
    assert wait_until(lambda: fake_server.state.open_streams == 0)


def test_max_duration_stops_a_long_closed_loop(fake_server):
    spec = spec_for(fake_server, concurrency=2, num_requests=1000, max_duration_seconds=0.6)
    started = time.monotonic()
    result = asyncio.run(run_load(spec, [chat(max_tokens=3, fake_delay=0.03)]))
    assert time.monotonic() - started < 2.0
    assert result.summary.stop_reason == "max_duration"
    assert 2 <= result.summary.num_ok < 1000
    assert fake_server.state.requests_received < 100


def test_max_duration_stops_an_open_loop(fake_server):
    spec = spec_for(
        fake_server, concurrency=50, num_requests=1000, rate_per_second=20, max_duration_seconds=0.5
    )
    started = time.monotonic()
    result = asyncio.run(run_load(spec, [chat(max_tokens=2)]))
    assert time.monotonic() - started < 2.0
    assert result.summary.stop_reason == "max_duration"
    assert result.summary.num_requests < 100


def test_cancellation_closes_connections(fake_server):
    spec = spec_for(fake_server, concurrency=3, num_requests=3)

    async def cancel_midway() -> float:
        task = asyncio.create_task(run_load(spec, [chat(fake_mode="hang")]))
        await asyncio.sleep(0.3)
        assert fake_server.state.open_streams == 3
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - cancelled_at

    assert asyncio.run(cancel_midway()) < 1.0
    assert wait_until(lambda: fake_server.state.open_streams == 0)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/v1",
        "http://10.0.0.1:8000/v1",
        "http://127.0.0.1.evil.com/v1",
        "http://[::2]:8000/v1",
        "ftp://127.0.0.1/v1",
        "http://0.0.0.0:8000/v1",
    ],
)
def test_non_loopback_urls_are_refused(url):
    with pytest.raises(ValueError, match=r"loopback|http"):
        LoadSpec(base_url=url, model="m")


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8000/v1",
        "http://127.0.0.1:8000/v1",
        "http://127.1.2.3/v1",
        "http://[::1]:8000/v1",
        "https://LOCALHOST/v1",
    ],
)
def test_loopback_urls_are_accepted(url):
    assert LoadSpec(base_url=url, model="m").base_url == url


def test_spec_validation_and_serialisation():
    with pytest.raises(ValueError):
        LoadSpec(base_url="http://127.0.0.1/v1", model="m", concurrency=0)
    with pytest.raises(ValueError):
        LoadSpec(base_url="http://127.0.0.1/v1", model="m", rate_per_second=0)
    spec = LoadSpec(base_url="http://127.0.0.1/v1", model="m", api_key="secret")
    assert spec.to_dict()["api_key"] == "***" and spec.to_dict()["mode"] == "closed"
    with pytest.raises(ValueError):
        asyncio.run(run_load(spec, []))


def test_result_to_dict_is_json_ready(fake_server):
    import json

    result = asyncio.run(run_load(spec_for(fake_server, num_requests=2), [chat(max_tokens=3)]))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["summary"]["num_ok"] == 2
    assert data["summary"]["ttft_seconds"].keys() >= {"p50", "p90", "p99", "mean"}
    assert len(data["records"]) == 2 and data["records"][0]["tpot_seconds"] is not None
    assert "records" not in result.to_dict(include_records=False)
