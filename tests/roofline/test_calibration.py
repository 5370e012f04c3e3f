from __future__ import annotations

import importlib.util
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roofline.calibration import (
    MIN_SCALE,
    StepModelFit,
    fit_overhead_and_scale,
    fit_step_model,
    measure_hardware,
    median_seconds,
)

seconds = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)
has_torch = importlib.util.find_spec("torch") is not None


def test_recovers_an_exact_line():
    samples = [(p, 0.004 + 1.7 * p) for p in (0.001, 0.002, 0.005, 0.02)]
    overhead, scale = fit_overhead_and_scale(samples)
    assert overhead == pytest.approx(0.004)
    assert scale == pytest.approx(1.7)


def test_small_model_overhead_dominated_case():
    # Predicted 1-3 ms, measured ≈ 20 ms + predicted: fixed overhead dominates.
    samples = [(0.001, 0.0211), (0.0015, 0.0214), (0.003, 0.0231), (0.0021, 0.0220)]
    overhead, scale = fit_overhead_and_scale(samples)
    assert 0.019 < overhead < 0.021
    assert 0.5 < scale < 1.5


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([], (0.0, 1.0)),
        ([(0.0, 0.0)], (0.0, 1.0)),
        ([(0.0, 0.5), (0.0, 0.7)], (0.0, 1.0)),
        ([(0.01, 0.03)], (0.0, 3.0)),  # one sample: pure scale
        ([(0.01, 0.02), (0.01, 0.04)], (0.0, 3.0)),  # equal predictions: slope not identifiable
        ([(float("nan"), 1.0), (0.01, float("inf")), (-1.0, 2.0), (0.01, 0.02)], (0.0, 2.0)),
    ],
)
def test_degenerate_inputs_stay_usable(samples, expected):
    assert fit_overhead_and_scale(samples) == pytest.approx(expected)


def test_negative_slope_falls_back_to_overhead_only():
    # Measured falls as predicted rises: the data say the time is overhead, not roofline.
    overhead, scale = fit_overhead_and_scale([(0.001, 0.05), (0.002, 0.04)])
    assert scale == MIN_SCALE
    assert overhead == pytest.approx(0.045, rel=1e-3)


def test_negative_intercept_is_clipped_to_zero():
    overhead, scale = fit_overhead_and_scale([(1.0, 1.0), (2.0, 3.0), (3.0, 5.0)])  # m = 2p − 1
    assert overhead == 0.0
    assert scale == pytest.approx((1 + 6 + 15) / 14)


@given(st.lists(st.tuples(seconds, seconds), max_size=30))
def test_fit_is_always_finite_and_feasible(samples):
    overhead, scale = fit_overhead_and_scale(samples)
    assert math.isfinite(overhead) and math.isfinite(scale)
    assert overhead >= 0.0 and scale > 0.0


@given(st.lists(st.floats(1e-4, 1.0), min_size=2, max_size=20, unique=True), st.floats(0.0, 0.05), st.floats(0.1, 10.0))
def test_fit_recovers_any_feasible_line(predicted, overhead, scale):
    fitted = fit_overhead_and_scale([(p, overhead + scale * p) for p in predicted])
    assert fitted == pytest.approx((overhead, scale), rel=1e-6, abs=1e-9)


def test_median_seconds_uses_warmup_and_median():
    calls = []
    assert median_seconds(lambda: calls.append(1), repeats=5, warmup=3) >= 0.0
    assert len(calls) == 8


@pytest.mark.skipif(not has_torch, reason="calibration measures with torch")
def test_measure_hardware_writes_a_usable_spec():
    spec = measure_hardware("test-cpu", copy_bytes=8 * 2**20, matmul_size=256, repeats=3)
    assert spec.name == "test-cpu"
    assert spec.memory_bandwidth_bytes_per_second > 1e8
    assert spec.peak_flops_bf16_per_second > 1e8
    assert spec.source.startswith("measured by specgate roofline calibrate")


def test_step_model_recovers_a_per_token_cost():
    samples = []
    for batch in (1, 4, 16, 64):
        for query_len in (1, 3, 5):
            tokens = batch * query_len
            predicted = max(0.01, 0.0004 * tokens) + 0.00001 * tokens  # a roofline: piecewise linear
            samples.append((tokens, predicted, 0.02 + 0.002 * tokens + 1.5 * predicted))
    fitted = fit_step_model(samples)
    assert (fitted.overhead_seconds, fitted.per_token_seconds, fitted.scale) == pytest.approx(
        (0.02, 0.002, 1.5), rel=1e-6
    )


def test_step_model_without_per_token_cost_agrees_with_two_parameter_fit():
    samples = [(t, 0.001 * t + 0.01, 0.005 + 2.0 * (0.001 * t + 0.01)) for t in (1, 8, 64, 256)]
    fitted = fit_step_model(samples)
    assert fitted.per_token_seconds == pytest.approx(0.0, abs=1e-12)
    assert (fitted.overhead_seconds, fitted.scale) == pytest.approx(
        fit_overhead_and_scale([(p, m) for _, p, m in samples])
    )


@given(st.lists(st.tuples(st.integers(0, 4096), seconds, seconds), max_size=20))
def test_step_model_is_always_finite_and_feasible(samples):
    fitted = fit_step_model(samples)
    assert all(math.isfinite(v) for v in (fitted.overhead_seconds, fitted.per_token_seconds, fitted.scale))
    assert fitted.overhead_seconds >= 0.0 and fitted.per_token_seconds >= 0.0 and fitted.scale > 0.0
    assert fit_step_model([]) == StepModelFit(0.0, 0.0, 1.0)


def _squared_error(samples, fit: StepModelFit) -> float:
    return sum((m - fit.overhead_seconds - fit.per_token_seconds * t - fit.scale * p) ** 2 for t, p, m in samples)


step_samples = st.lists(st.tuples(st.integers(1, 4096), st.floats(1e-4, 1.0), st.floats(1e-4, 1.0)),
                        min_size=1, max_size=40)


@given(step_samples)
def test_step_model_fits_at_least_as_well_as_the_two_parameter_fit(samples):
    """The three-parameter fit (solved from the samples' sums, not the samples) contains the
    two-parameter one (t_token = 0), so its squared error, computed directly, is no larger."""
    fitted = fit_step_model(samples)
    overhead, scale = fit_overhead_and_scale([(p, m) for _, p, m in samples])
    two_parameter = _squared_error(samples, StepModelFit(overhead, 0.0, scale))
    assert _squared_error(samples, fitted) <= two_parameter * (1 + 1e-6) + 1e-12
