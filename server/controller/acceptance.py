"""Acceptance estimates per draft position: global and per request, exponentially weighted.

p[k] estimates P(draft k+1 accepted | drafts 1..k accepted). A verified step with d drafts
and a accepted says: positions 1..a were accepted, position a+1 (if a < d) was rejected,
later ones were not tried. Per-request estimates start from the global ones.

One step's outcomes are learnt at once, as arrays: the scheduler hands over every request
of the step in one call, which at batch 256 costs about a quarter of updating request by
request in Python. Each request's estimates live in a row of `survival_by_row` /
`expected_by_row`, the tables the per-step rule reads; row 0 holds the global estimates, the
row of every request not seen yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

GLOBAL_ROW = 0


@dataclass(slots=True)
class AcceptanceEstimates:
    gamma_max: int
    prior: float = 0.5
    global_rate: float = 0.01  # EWMA weight per observation, batch-wide
    request_rate: float = 0.25  # per request: a request's own text changes fast
    capacity: int = 64  # request rows to start with; doubled when full
    global_p: np.ndarray = field(init=False)  # [γ], a view of row 0
    survival_by_row: np.ndarray = field(init=False)  # [rows, γ]: Π_{j≤k} p_j, the chance draft k is reached and kept
    expected_by_row: np.ndarray = field(init=False)  # [rows, γ+1]: Σ_{i≤k} survival_i, what the first k drafts add
    _p_by_row: np.ndarray = field(init=False)  # [rows, γ]
    _row_of: dict[str, int] = field(default_factory=dict)
    _free_rows: list[int] = field(default_factory=list)
    _below: np.ndarray = field(init=False)
    # The last `rows_of` answer: a step's requests are mostly the last step's, in the same order,
    # and comparing two lists of the same id objects is cheaper than looking each id up again.
    _rows_cache: tuple[list[str], np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        rows = self.capacity + 1
        self._p_by_row = np.full((rows, self.gamma_max), self.prior)
        self.survival_by_row = np.zeros((rows, self.gamma_max))
        self.expected_by_row = np.zeros((rows, self.gamma_max + 1))
        self._free_rows = list(range(rows - 1, GLOBAL_ROW, -1))
        self._below = np.arange(self.gamma_max) < np.arange(self.gamma_max + 1)[:, None]  # [γ+1, γ]: k → positions < k
        self.global_p = self._p_by_row[GLOBAL_ROW]  # a view: the global estimates are row 0
        self._forget_rows_cache()
        self.set_global([self.prior] * self.gamma_max)

    def set_global(self, p: Sequence[float]) -> None:
        self.global_p[:] = p
        self._refresh_tables([GLOBAL_ROW])

    # ---- learning -------------------------------------------------------------------
    def observe(self, request_ids: Sequence[str], drafted: Sequence[int], accepted: Sequence[int]) -> None:
        """One step: request i had `drafted[i]` drafts verified and kept the first `accepted[i]`.

        Each request at most once per call. The global estimate takes the step's n observations
        at a position as one: p ← p + (1 − (1 − rate)ⁿ) · (their mean − p), the weight n
        sequential updates would give them, without an order among simultaneous requests."""
        if not request_ids:
            return
        rows = self._rows_creating(request_ids)
        accepted_ = np.minimum(accepted, self.gamma_max)  # [n]
        tried = self._below[np.minimum(np.minimum(accepted_ + 1, drafted), self.gamma_max)]  # [n, γ]: to the first rejection
        kept = self._below[accepted_]  # [n, γ]
        p = self._p_by_row[rows]  # [n, γ]
        p += self.request_rate * tried * (kept - p)
        self._p_by_row[rows] = p
        counts = tried.sum(axis=0)  # [γ]
        weight = 1.0 - (1.0 - self.global_rate) ** counts
        step_mean = (tried & kept).sum(axis=0) / np.maximum(counts, 1)
        self.global_p += weight * (step_mean - self.global_p)
        rows.append(GLOBAL_ROW)
        self._refresh_tables(rows)

    def _rows_creating(self, request_ids: Sequence[str]) -> list[int]:
        row_of = self._row_of.get
        rows = [row_of(request_id) for request_id in request_ids]
        if None in rows:
            for index, row in enumerate(rows):
                if row is None:
                    if not self._free_rows:
                        self._grow()
                    row = rows[index] = self._row_of[request_ids[index]] = self._free_rows.pop()
                    self._p_by_row[row] = self.global_p
            self._forget_rows_cache()
        return rows

    def _forget_rows_cache(self) -> None:
        self._rows_cache = ([], np.empty(0, dtype=np.intp))

    def _grow(self) -> None:
        rows = len(self._p_by_row)
        self._p_by_row = np.concatenate([self._p_by_row, np.empty_like(self._p_by_row)])
        self.survival_by_row = np.concatenate([self.survival_by_row, np.zeros_like(self.survival_by_row)])
        self.expected_by_row = np.concatenate([self.expected_by_row, np.zeros_like(self.expected_by_row)])
        self._free_rows.extend(range(2 * rows - 1, rows - 1, -1))
        self.global_p = self._p_by_row[GLOBAL_ROW]

    def _refresh_tables(self, rows: list[int]) -> None:
        survival = self._p_by_row[rows].cumprod(axis=1)  # [n, γ]
        self.survival_by_row[rows] = survival
        self.expected_by_row[rows, 1:] = survival.cumsum(axis=1)

    def forget(self, request_id: str) -> None:
        row = self._row_of.pop(request_id, None)
        if row is not None:
            self._free_rows.append(row)
            self._forget_rows_cache()

    # ---- reading --------------------------------------------------------------------
    def rows_of(self, request_ids: list[str]) -> np.ndarray:
        """Each request's row in the tables (read-only); the global row for a request not seen yet."""
        cached_ids, cached_rows = self._rows_cache
        if request_ids == cached_ids:
            return cached_rows
        rows = np.fromiter(map(self._row_of.get, request_ids, repeat(GLOBAL_ROW)), dtype=np.intp, count=len(request_ids))
        rows.flags.writeable = False
        self._rows_cache = (request_ids.copy(), rows)
        return rows

    def of_request(self, request_id: str) -> list[float] | None:
        row = self._row_of.get(request_id)
        return None if row is None else self._p_by_row[row].tolist()

    def survival(self, request_id: str) -> list[float] | None:
        """Π_{j≤k} p_j for k = 1..γ_max (decreasing), or None for an unseen request."""
        row = self._row_of.get(request_id)
        return None if row is None else self.survival_by_row[row].tolist()

    def tracked_request_ids(self) -> list[str]:
        return list(self._row_of)

    def mean_acceptance(self) -> float:
        """Per draft token, as vLLM reports it: accepted / drafted, over the estimates' weights."""
        return float(self.expected_by_row[GLOBAL_ROW, -1]) / self.gamma_max
