from __future__ import annotations

import pytest

from loadtests.sse import SseDecoder
from loadtests.stats import LatencyStats, steady_output_tokens_per_second, summarize
from loadtests.stream_request import RequestRecord


def ok_record(index: int, ttft: float, e2e: float, tokens: int, itls: list[float]) -> RequestRecord:
    return RequestRecord(
        index=index,
        endpoint="chat",
        ok=True,
        status_code=200,
        ttft_seconds=ttft,
        e2e_seconds=e2e,
        output_tokens=tokens,
        output_tokens_source="usage",
        inter_token_latencies_seconds=itls,
        prompt_tokens=10,
    )


def test_latency_stats_percentiles_match_numpy_linear_interpolation():
    stats = LatencyStats.of(float(v) for v in range(1, 101))
    assert stats.count == 100
    assert stats.mean == pytest.approx(50.5)
    assert stats.p50 == pytest.approx(50.5)
    assert stats.p90 == pytest.approx(90.1)
    assert stats.p99 == pytest.approx(99.01)
    assert stats.max == 100.0


def test_latency_stats_of_nothing_is_empty():
    stats = LatencyStats.of([])
    assert stats.count == 0 and stats.p50 is None and stats.mean is None


def test_tpot_is_decode_time_per_token_after_the_first():
    record = ok_record(0, ttft=0.2, e2e=1.2, tokens=11, itls=[])
    assert record.tpot_seconds == pytest.approx(0.1)
    assert ok_record(0, ttft=0.2, e2e=0.2, tokens=1, itls=[]).tpot_seconds is None


def test_summary_separates_ok_errors_and_cancelled():
    records = [
        ok_record(0, ttft=0.1, e2e=0.5, tokens=5, itls=[0.1, 0.1, 0.1, 0.1]),
        ok_record(1, ttft=0.3, e2e=0.7, tokens=3, itls=[0.2, 0.2]),
        RequestRecord(index=2, endpoint="chat", error_kind="http_503"),
        RequestRecord(index=3, endpoint="chat", error_kind="http_503"),
        RequestRecord(index=4, endpoint="chat", error_kind="timeout"),
        RequestRecord(index=5, endpoint="chat", error_kind="cancelled"),
    ]
    summary = summarize(records, duration_seconds=2.0, stop_reason="max_duration")
    assert (summary.num_requests, summary.num_ok, summary.num_errors, summary.num_cancelled) == (
        6,
        2,
        3,
        1,
    )
    assert summary.errors_by_kind == {"http_503": 2, "timeout": 1}
    assert summary.total_output_tokens == 8 and summary.total_prompt_tokens == 20
    assert summary.output_tokens_per_second == pytest.approx(4.0)
    assert summary.requests_per_second == pytest.approx(1.0)
    assert summary.ttft_seconds.mean == pytest.approx(0.2)
    assert summary.itl_seconds.count == 6
    assert summary.tpot_seconds.mean == pytest.approx((0.1 + 0.2) / 2)
    assert summary.stop_reason == "max_duration"
    assert summary.to_dict()["e2e_seconds"]["max"] == pytest.approx(0.7)


def test_sse_decoder_joins_data_lines_and_skips_comments():
    decoder = SseDecoder()
    lines = [": keep-alive", "event: message", 'data: {"a":', "data: 1}", "", "data:[DONE]", ""]
    events = [e for line in lines if (e := decoder.feed_line(line)) is not None]
    assert events == ['{"a":\n1}', "[DONE]"]
    decoder.feed_line("data: tail")
    assert decoder.flush() == "tail" and decoder.flush() is None


def _served(start: float, ttft: float, e2e: float, tokens: int) -> RequestRecord:
    return RequestRecord(index=0, endpoint="chat", start_offset_seconds=start, ok=True, ttft_seconds=ttft,
                         e2e_seconds=e2e, output_tokens=tokens)


def test_steady_throughput_counts_tokens_until_the_last_request_is_sent():
    # two workers; the last request goes out at t=4, the other worker drains from 4 to 10
    records = [_served(0, 1, 4, 31), _served(0, 1, 10, 91), _served(4, 1, 5, 11)]
    # by t=4: all 31 of the first; the second: 1 + 90·(4−1)/(10−1) = 31; the third: none yet
    assert steady_output_tokens_per_second(records) == pytest.approx((31 + 31) / 4)
    assert summarize(records, 10).output_tokens_per_second == pytest.approx(133 / 10)


def test_steady_throughput_needs_a_request_sent_after_the_start():
    assert steady_output_tokens_per_second([_served(0, 1, 4, 31), _served(0, 1, 5, 41)]) is None
    assert steady_output_tokens_per_second([]) is None
