"""Speculative decoding arithmetic: expected tokens per step, speedup, optimal γ.

Sources: Leviathan, Kalman, Matias 2023, "Fast Inference from Transformers via Speculative
Decoding" (Eq. 1, Thm 3.8, Cor. 3.9, Thm 3.11); the roofline form
S(γ) = E(α, γ) / [C(B, γ+1, S) / C(B, 1, S) + draft cost(γ)] from "Roofline Model for
Estimating Speculative Decoding Speedup in LLM Inference".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

Acceptance = Union[float, Sequence[float]]


def _check_probability(value: float, what: str = "acceptance") -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must be in [0, 1], got {value}")
    return value


def _check_gamma(gamma: int) -> int:
    if gamma < 0 or int(gamma) != gamma:
        raise ValueError(f"gamma must be a non-negative integer, got {gamma}")
    return int(gamma)


def expected_tokens(alpha: float, gamma: int) -> float:
    """E(α, γ) = (1 − α^(γ+1)) / (1 − α): tokens produced by one verification step with γ
    drafts, each accepted with probability α (Leviathan et al. 2023, Eq. 1). E(1, γ) = γ + 1."""
    alpha = _check_probability(alpha)
    gamma = _check_gamma(gamma)
    if alpha > 1.0 - 1e-6:
        # The closed form loses precision near α = 1; the geometric sum does not.
        return sum(alpha**k for k in range(gamma + 1))
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def expected_tokens_from_positions(acceptance_by_position: Sequence[float]) -> float:
    """E = 1 + Σ_k Π_{j≤k} p_j with p_k = P(draft k accepted | drafts before it accepted).

    γ is the length of the sequence; a constant p_k = α gives :func:`expected_tokens`.
    """
    expected, survive = 1.0, 1.0
    for p in acceptance_by_position:
        survive *= _check_probability(p)
        expected += survive
    return expected


def acceptance_by_position(acceptance: Acceptance, gamma: int) -> list[float]:
    """γ per-position conditional acceptance rates from a scalar α or a (possibly shorter)
    vector, extended with its last value."""
    gamma = _check_gamma(gamma)
    if isinstance(acceptance, (int, float)):
        return [_check_probability(acceptance)] * gamma
    values = [_check_probability(p) for p in acceptance]
    if not values:
        raise ValueError("acceptance vector is empty")
    return (values + [values[-1]] * gamma)[:gamma]


def expected_tokens_for(acceptance: Acceptance, gamma: int) -> float:
    """E for either a scalar α or a per-position vector."""
    if isinstance(acceptance, (int, float)):
        return expected_tokens(acceptance, gamma)
    return expected_tokens_from_positions(acceptance_by_position(acceptance, gamma))


def classic_speedup(acceptance: Acceptance, gamma: int, draft_cost: float) -> float:
    """Walltime improvement with verification as cheap as one target step (Leviathan et al.
    2023, Thm 3.8): (1 − α^(γ+1)) / ((1 − α)(γc + 1)), c = draft step time / target step time."""
    if draft_cost < 0:
        raise ValueError(f"draft cost must be ≥ 0, got {draft_cost}")
    return expected_tokens_for(acceptance, gamma) / (gamma * draft_cost + 1.0)


def operations_factor(acceptance: Acceptance, gamma: int, draft_ops_ratio: float = 0.0) -> float:
    """Increase in arithmetic operations (Leviathan et al. 2023, Thm 3.11):
    (1 − α)(γĉ + γ + 1) / (1 − α^(γ+1)), ĉ = draft ops per token / target ops per token."""
    if draft_ops_ratio < 0:
        raise ValueError(f"draft ops ratio must be ≥ 0, got {draft_ops_ratio}")
    return (gamma * draft_ops_ratio + gamma + 1.0) / expected_tokens_for(acceptance, gamma)


def roofline_speedup(acceptance: Acceptance, gamma: int, verify_cost_ratio: float, draft_cost: float) -> float:
    """E(γ) / [C(B, γ+1, S) / C(B, 1, S) + draft cost(γ)], both costs in target steps.

    ``draft_cost`` is the whole drafting cost of this step (γ·c for a per-token drafter)."""
    if gamma == 0:
        return 1.0
    return expected_tokens_for(acceptance, gamma) / (verify_cost_ratio + draft_cost)


def best_gamma(speedups: Sequence[float]) -> tuple[int, float]:
    """(γ*, S(γ*)) from S(0..γ_max); the smallest γ wins ties and γ = 0 is 1.0x."""
    best, best_speedup = 0, 1.0
    for gamma, speedup in enumerate(speedups):
        if gamma and speedup > best_speedup:
            best, best_speedup = gamma, speedup
    return best, best_speedup


def classic_optimal(acceptance: Acceptance, draft_cost: float, gamma_max: int = 16) -> tuple[int, float]:
    """argmax over γ = 0..γ_max of :func:`classic_speedup`."""
    return best_gamma([classic_speedup(acceptance, g, draft_cost) for g in range(gamma_max + 1)])


__all__ = [
    "Acceptance",
    "acceptance_by_position",
    "best_gamma",
    "classic_optimal",
    "classic_speedup",
    "expected_tokens",
    "expected_tokens_for",
    "expected_tokens_from_positions",
    "operations_factor",
    "roofline_speedup",
]
