"""Acceptance estimates per draft position: global and per request, exponentially weighted.

p[k] estimates P(draft k+1 accepted | drafts 1..k accepted). A verified step with d drafts
and a accepted says: positions 1..a were accepted, position a+1 (if a < d) was rejected,
later ones were not tried. Per-request estimates start from the global ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import accumulate
from operator import mul
from typing import NamedTuple


def survival_of(p: list[float]) -> list[float]:
    """Π_{j≤k} p_j for k = 1..len(p): the chance draft k is reached and kept."""
    return list(accumulate(p, mul))


class DraftTable(NamedTuple):
    """A request's survival laid out for the per-step rule, which runs for every request every
    step: survival decreases in k, so `bisect_left(negated, -t)` counts the leading drafts whose
    survival exceeds t, and `expected[k]` is what the first k drafts add in expectation."""

    negated: list[float]  # -Π_{j≤k} p_j, ascending
    expected: list[float]  # expected[k] = Σ_{i≤k} Π_{j≤i} p_j, expected[0] = 0


def draft_table(p: list[float]) -> DraftTable:
    survival = survival_of(p)
    return DraftTable([-s for s in survival], [0.0, *accumulate(survival)])


@dataclass(slots=True)
class AcceptanceEstimates:
    gamma_max: int
    prior: float = 0.5
    global_rate: float = 0.01  # EWMA weight per observation, batch-wide
    request_rate: float = 0.25  # per request: a request's own text changes fast
    global_p: list[float] = field(default_factory=list)
    by_request: dict[str, list[float]] = field(default_factory=dict)
    tables_by_request: dict[str, DraftTable] = field(default_factory=dict)
    draft_tokens: int = 0
    accepted_tokens: int = 0

    def __post_init__(self) -> None:
        if not self.global_p:
            self.global_p = [self.prior] * self.gamma_max

    def _request(self, request_id: str) -> list[float]:
        p = self.by_request.get(request_id)
        if p is None:
            p = self.by_request[request_id] = list(self.global_p)
        return p

    def _observe_position(self, p: list[float], position: int, accepted: bool) -> None:
        value = 1.0 if accepted else 0.0
        p[position] += self.request_rate * (value - p[position])
        self.global_p[position] += self.global_rate * (value - self.global_p[position])

    def observe_verified(self, request_id: str, drafted: int, accepted: int) -> None:
        """`drafted` drafts were verified and the first `accepted` of them kept."""
        p = self._request(request_id)
        for position in range(min(accepted + 1, drafted, self.gamma_max)):
            self._observe_position(p, position, position < accepted)
        self.draft_tokens += drafted
        self.accepted_tokens += accepted
        self._refresh_table(request_id, p)

    def observe_shadow(self, request_id: str, position: int, matched: bool) -> None:
        """A proposed-but-not-verified draft at `position` (0-based) vs the token generated there.

        Exact for greedy sampling (a draft is accepted iff it is the argmax)."""
        if position < self.gamma_max:
            p = self._request(request_id)
            self._observe_position(p, position, matched)
            self._refresh_table(request_id, p)

    def _refresh_table(self, request_id: str, p: list[float]) -> None:
        self.tables_by_request[request_id] = draft_table(p)

    def survival(self, request_id: str) -> list[float] | None:
        """Π_{j≤k} p_j for k = 1..γ_max (decreasing), or None for an unseen request."""
        table = self.tables_by_request.get(request_id)
        return None if table is None else [-s for s in table.negated]

    def forget(self, request_id: str) -> None:
        self.by_request.pop(request_id, None)
        self.tables_by_request.pop(request_id, None)

    def mean_acceptance(self) -> float:
        """Per draft token, as vLLM reports it: accepted / drafted, over the estimates' weights."""
        expected, survive = 0.0, 1.0
        for value in self.global_p:
            survive *= value
            expected += survive
        return expected / self.gamma_max if self.gamma_max else 0.0
