from __future__ import annotations

import statistics
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roofline import load_hardware, load_model
from roofline.cost import step_cost, step_time_seconds
from roofline.planner import GammaPlanner, seq_len_bucket
from roofline.specs import hardware_presets, model_presets
from roofline.speculation import best_gamma, expected_tokens_for

MODELS = sorted(model_presets())
HARDWARE = sorted(hardware_presets())
acceptances = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def brute_force_curve(model, hardware, batch, seq_len, acceptance, gamma_max, draft_cost, overhead=0.0, scale=1.0):
    """S(γ) = E(γ) / [t(γ+1)/t(1) + c·γ], straight from the definitions."""
    t = lambda q: overhead + scale * step_time_seconds(model, hardware, batch, q, seq_len)  # noqa: E731
    return [1.0] + [
        expected_tokens_for(acceptance, g) / (t(g + 1) / t(1) + draft_cost * g) for g in range(1, gamma_max + 1)
    ]


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(MODELS),
    st.sampled_from(HARDWARE),
    st.integers(1, 1024),
    st.integers(0, 65536),
    acceptances,
    st.floats(0.0, 0.5),
    st.floats(0.0, 0.02),
    st.floats(0.2, 5.0),
)
def test_planner_matches_the_definitions(model_name, hardware_name, batch, seq_len, alpha, draft_cost, overhead, scale):
    model, hardware = load_model(model_name), load_hardware(hardware_name)
    planner = GammaPlanner(model, hardware, 12, draft_cost, overhead, scale, bucket_seq_len=False)
    expected = brute_force_curve(model, hardware, batch, seq_len, alpha, 12, draft_cost, overhead, scale)
    assert planner.speedup_curve(batch, seq_len, alpha) == pytest.approx(expected, rel=1e-9)
    gamma, speedup = planner.optimal(batch, seq_len, alpha)
    assert speedup == pytest.approx(best_gamma(expected)[1], rel=1e-9)
    assert expected[gamma] == pytest.approx(max(expected), rel=1e-9)
    assert planner.step_seconds(batch, 3, seq_len) == pytest.approx(
        overhead + scale * step_time_seconds(model, hardware, batch, 3, seq_len), rel=1e-12
    )


@given(st.integers(1, 512), st.integers(0, 32768), acceptances)
def test_gamma_zero_gives_exactly_one(batch, seq_len, alpha):
    planner = GammaPlanner(load_model("llama-3.1-8b"), load_hardware("h100"), gamma_max=8, draft_cost_ratio=0.1)
    assert planner.speedup_curve(batch, seq_len, alpha)[0] == 1.0
    gamma, speedup = planner.optimal(batch, seq_len, 0.0)
    assert (gamma, speedup) == (0, 1.0)


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(MODELS),
    st.sampled_from(HARDWARE),
    st.integers(1, 4096),
    st.integers(1, 4096),
    st.sampled_from([128, 1024, 8192]),
    st.floats(0.05, 0.99),
    st.sampled_from([0.0, 0.02, 0.1]),
)
def test_gamma_never_rises_with_batch_once_compute_bound(model_name, hardware_name, b1, b2, seq_len, alpha, cost):
    model, hardware = load_model(model_name), load_hardware(hardware_name)
    small, large = sorted((b1, b2))
    if step_cost(model, hardware, small, 1, seq_len).bound != "compute":
        return
    planner = GammaPlanner(model, hardware, 16, cost, bucket_seq_len=False)
    gamma_small, _ = planner.optimal(small, seq_len, alpha)
    gamma_large, _ = planner.optimal(large, seq_len, alpha)
    if gamma_large > gamma_small:  # only a floating-point tie may reorder them
        curve = planner.speedup_curve(large, seq_len, alpha)
        assert curve[gamma_large] == pytest.approx(curve[gamma_small], rel=1e-9)


@given(st.integers(1, 256), st.integers(1, 8192), st.floats(0.0, 0.99), st.floats(0.001, 0.01))
def test_speedup_rises_with_acceptance(batch, seq_len, alpha, step):
    planner = GammaPlanner(load_model("qwen2.5-7b"), load_hardware("a100"), gamma_max=8, draft_cost_ratio=0.05)
    low = planner.speedup_curve(batch, seq_len, alpha)
    high = planner.speedup_curve(batch, seq_len, alpha + step)
    assert all(h > lo for h, lo in zip(high[1:], low[1:]))
    assert planner.optimal(batch, seq_len, alpha + step)[1] >= planner.optimal(batch, seq_len, alpha)[1]


def test_per_position_acceptance_is_extended_with_the_last_value(llama8b, h100):
    planner = GammaPlanner(llama8b, h100, gamma_max=6)
    assert planner.speedup_curve(16, 1024, [0.8, 0.6, 0.5, 0.4]) == planner.speedup_curve(
        16, 1024, [0.8, 0.6, 0.5, 0.4, 0.4, 0.4, 0.4]
    )
    assert planner.speedup_curve(16, 1024, [0.7]) == pytest.approx(planner.speedup_curve(16, 1024, 0.7))
    gamma, speedup = planner.optimal(16, 1024, [0.8, 0.6, 0.5, 0.4])
    assert 1 <= gamma <= 6 and speedup > 1.0


def test_small_model_memory_bound_optimum(llama8b, h100):
    """Llama-3.1-8B on H100 at B = 1 is bandwidth-bound: verification is almost free, so γ*
    approaches the classic (Leviathan) optimum."""
    planner = GammaPlanner(llama8b, h100, gamma_max=16, draft_cost_ratio=0.1)
    gamma, speedup = planner.optimal(1, 4096, 0.75)
    assert gamma == 5
    assert speedup == pytest.approx(2.187, abs=1e-3)


def test_with_calibration_is_cheap_and_consistent(llama8b, h100):
    planner = GammaPlanner(llama8b, h100, gamma_max=8)
    calibrated = planner.with_calibration(overhead_seconds=0.002, scale=1.5)
    assert calibrated._target is planner._target
    assert (calibrated.overhead_seconds, calibrated.scale, calibrated.gamma_max) == (0.002, 1.5, 8)
    assert calibrated.step_seconds(4, 2, 512) == pytest.approx(0.002 + 1.5 * planner.step_seconds(4, 2, 512))
    # Fixed overhead makes verification relatively cheaper: speculation pays more.
    assert calibrated.optimal(256, 512, 0.7)[1] > planner.with_calibration(scale=1.5).optimal(256, 512, 0.7)[1]
    assert planner.with_calibration(scale=2.0).optimal(64, 512, 0.7) == pytest.approx(planner.optimal(64, 512, 0.7))


def test_block_drafter_caps_gamma_and_pays_per_block(llama8b, h100):
    planner = GammaPlanner(llama8b, h100, gamma_max=16, draft_cost_ratio=0.3, draft_block_size=4, bucket_seq_len=False)
    assert planner.gamma_max == 4
    ratios = planner.cost_ratios(8, 1024)
    verify = [planner.step_seconds(8, g + 1, 1024) / planner.step_seconds(8, 1, 1024) for g in range(5)]
    assert ratios[0] == 1.0
    assert ratios[1:] == pytest.approx([v + 0.3 for v in verify[1:]], rel=1e-6)


def test_draft_model_cost_is_its_own_roofline_step(h100):
    target, draft = load_model("llama-3.1-70b"), load_model("llama-3.1-8b")
    planner = GammaPlanner(target, h100, gamma_max=8, draft_model=draft, bucket_seq_len=False)
    decode = step_time_seconds(target, h100, 16, 1, 2048)
    per_draft = step_time_seconds(draft, h100, 16, 1, 2048) / decode
    ratios = planner.cost_ratios(16, 2048)
    verify3 = step_time_seconds(target, h100, 16, 4, 2048) / decode
    assert ratios[3] == pytest.approx(verify3 + 3 * per_draft, rel=1e-9)
    assert 0.1 < per_draft < 0.2  # 8B drafting for 70B costs about its weight ratio


def test_a_calibrated_draft_pass_costs_the_calibrated_step_times_the_size_ratio(h100):
    """Where calibration explains the target's steps by overheads (scale → 0), a draft pass
    still costs its share of a step, not nothing."""
    target, draft = load_model("llama-3.1-70b"), load_model("llama-3.1-8b")
    planner = GammaPlanner(target, h100, gamma_max=4, draft_model=draft, bucket_seq_len=False)
    calibrated = planner.with_calibration(overhead_seconds=0.03, scale=1e-6, per_token_seconds=0.001)
    size_ratio = step_time_seconds(draft, h100, 16, 1, 2048) / step_time_seconds(target, h100, 16, 1, 2048)
    verify2 = calibrated.step_seconds(16, 3, 2048) / calibrated.step_seconds(16, 1, 2048)
    assert calibrated.cost_ratios(16, 2048)[2] == pytest.approx(verify2 + 2 * size_ratio, rel=1e-6)


def test_seq_len_buckets_are_fine_and_cached(llama8b, h100):
    for seq_len in [0, 1, 63, 64, 100, 1000, 4097, 100_000]:
        assert abs(seq_len_bucket(seq_len) - seq_len) <= max(1, 0.016 * seq_len)
    planner = GammaPlanner(llama8b, h100, gamma_max=4, cache_entries=3)
    for seq_len in (1000, 1001, 5000, 9000, 20000):
        planner.optimal(8, seq_len, 0.5)
    assert len(planner._cache) == 3


def test_rejects_bad_arguments(llama8b, h100):
    with pytest.raises(ValueError):
        GammaPlanner(llama8b, h100, gamma_max=-1)
    with pytest.raises(ValueError):
        GammaPlanner(llama8b, h100, scale=0.0)
    planner = GammaPlanner(llama8b, h100)
    with pytest.raises(ValueError):
        planner.optimal(8, 1024, 1.5)
    with pytest.raises(ValueError):
        planner.optimal(0, 1024, 0.5)


def _median_microseconds(call, calls: int) -> float:
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1e3


def test_optimal_is_fast_enough_for_every_step(llama8b, h100):
    """Budget 20 µs at γ_max = 16 (loadtests/bench_roofline.py measures it properly); the
    bounds here leave room for a busy test machine."""
    planner = GammaPlanner(llama8b, h100, gamma_max=16, draft_cost_ratio=0.05)
    planner.optimal(16, 1024, 0.6)
    assert _median_microseconds(lambda: planner.optimal(16, 1024, 0.6), 2000) < 20.0
    seq_lens = iter(range(10_000, 10_000 + 4000))
    cold = lambda: (planner._cache.clear(), planner.optimal(16, next(seq_lens), 0.6))  # noqa: E731
    assert _median_microseconds(cold, 2000) < 60.0


def test_per_token_cost_makes_verification_dearer(smollm):
    cpu = load_hardware("cpu-local")
    plain = GammaPlanner(smollm, cpu, gamma_max=8, overhead_seconds=0.01, bucket_seq_len=False)
    per_token = plain.with_calibration(per_token_seconds=0.002)
    assert per_token.step_seconds(4, 3, 512) == pytest.approx(plain.step_seconds(4, 3, 512) + 0.002 * 12)
    ratios = per_token.cost_ratios(4, 512)
    assert ratios[2] == pytest.approx(per_token.step_seconds(4, 3, 512) / per_token.step_seconds(4, 1, 512))
    assert per_token.optimal(16, 512, 0.6)[0] < plain.optimal(16, 512, 0.6)[0]
