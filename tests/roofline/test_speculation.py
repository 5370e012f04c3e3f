from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roofline.speculation import (
    acceptance_by_position,
    best_gamma,
    classic_optimal,
    classic_speedup,
    expected_tokens,
    expected_tokens_from_positions,
    operations_factor,
    roofline_speedup,
)

alphas = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
gammas = st.integers(min_value=0, max_value=32)
costs = st.floats(min_value=0.0, max_value=2.0, allow_nan=False)

# Leviathan, Kalman, Matias 2023, Table 1 (c = ĉ = 0): (α, γ) → (operations, speed).
LEVIATHAN_TABLE_1 = [
    (0.6, 2, 1.53, 1.96),
    (0.7, 3, 1.58, 2.53),
    (0.8, 2, 1.23, 2.44),
    (0.8, 5, 1.63, 3.69),
    (0.9, 2, 1.11, 2.71),
    (0.9, 10, 1.60, 6.86),
]


@pytest.mark.parametrize(("alpha", "gamma", "operations", "speed"), LEVIATHAN_TABLE_1)
def test_reproduces_leviathan_table_1(alpha, gamma, operations, speed):
    assert round(operations_factor(alpha, gamma, 0.0), 2) == operations
    assert round(classic_speedup(alpha, gamma, 0.0), 2) == speed


def test_expected_tokens_closed_form():
    assert expected_tokens(0.8, 5) == pytest.approx((1 - 0.8**6) / 0.2)
    assert expected_tokens(0.0, 7) == 1.0
    assert expected_tokens(1.0, 7) == 8.0
    assert expected_tokens(0.5, 0) == 1.0


@given(alphas, gammas)
def test_expected_tokens_agrees_with_positions(alpha, gamma):
    assert expected_tokens_from_positions([alpha] * gamma) == pytest.approx(expected_tokens(alpha, gamma), rel=1e-9)


def test_expected_tokens_from_positions_by_hand():
    # 1 + 0.8 + 0.8·0.6 + 0.8·0.6·0.5 = 2.52
    assert expected_tokens_from_positions([0.8, 0.6, 0.5]) == pytest.approx(2.52)
    assert expected_tokens_from_positions([]) == 1.0


def test_acceptance_vector_is_extended_with_its_last_value():
    assert acceptance_by_position([0.8, 0.6], 4) == [0.8, 0.6, 0.6, 0.6]
    assert acceptance_by_position([0.8, 0.6, 0.5], 2) == [0.8, 0.6]
    assert acceptance_by_position(0.7, 3) == [0.7, 0.7, 0.7]
    with pytest.raises(ValueError):
        acceptance_by_position([], 3)
    with pytest.raises(ValueError):
        acceptance_by_position([1.2], 3)


@given(alphas, costs)
def test_gamma_zero_is_exactly_one(alpha, cost):
    assert classic_speedup(alpha, 0, cost) == 1.0
    assert roofline_speedup(alpha, 0, 1.0, 0.0) == 1.0


@given(st.floats(0.0, 0.98), st.floats(0.001, 0.02), st.integers(1, 20), costs)
def test_speedup_rises_with_acceptance(alpha, step, gamma, cost):
    assert classic_speedup(alpha + step, gamma, cost) > classic_speedup(alpha, gamma, cost)


@given(alphas, gammas, costs)
def test_operations_factor_is_at_least_one(alpha, gamma, cost):
    assert operations_factor(alpha, gamma, cost) >= 1.0 - 1e-12


def test_corollary_3_9_some_gamma_pays_when_alpha_exceeds_c():
    # If α > c, γ* gives at least (1 + α) / (1 + c).
    for alpha, cost in [(0.3, 0.2), (0.6, 0.5), (0.9, 0.1)]:
        gamma, speedup = classic_optimal(alpha, cost, gamma_max=16)
        assert gamma >= 1
        assert speedup >= (1 + alpha) / (1 + cost) - 1e-12


def test_classic_optimal_is_zero_when_drafting_costs_more_than_it_gains():
    assert classic_optimal(0.2, 0.5, gamma_max=8) == (0, 1.0)


def test_best_gamma_prefers_smallest_on_ties_and_zero_means_one():
    assert best_gamma([1.0, 1.5, 1.5, 1.2]) == (1, 1.5)
    assert best_gamma([1.0, 0.9, 0.8]) == (0, 1.0)


def test_rejects_bad_inputs():
    with pytest.raises(ValueError):
        expected_tokens(1.5, 2)
    with pytest.raises(ValueError):
        expected_tokens(0.5, -1)
    with pytest.raises(ValueError):
        classic_speedup(0.5, 2, -0.1)


def test_expected_tokens_is_stable_near_one():
    assert math.isclose(expected_tokens(1 - 1e-9, 10), 11.0, rel_tol=1e-6)
