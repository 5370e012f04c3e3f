"""γ policies: `adaptive`, `fixed:K`, `table:[[lo,hi,K],...]` (vLLM's dynamic-SD table), `off`."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GammaPolicy:
    kind: str  # "adaptive" | "fixed" | "table" | "off"
    fixed_gamma: int = 0
    table: tuple[tuple[int, int, int], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("adaptive", "fixed", "table", "off"):
            raise ValueError(f"unknown γ policy {self.kind!r}")
        if self.kind == "fixed" and self.fixed_gamma < 0:
            raise ValueError("fixed γ must be ≥ 0")
        for lo, hi, gamma in self.table:
            if not (1 <= lo <= hi and gamma >= 0):
                raise ValueError(f"bad table row {[lo, hi, gamma]}: need 1 ≤ lo ≤ hi and K ≥ 0")

    @classmethod
    def parse(cls, text: str) -> GammaPolicy:
        text = text.strip()
        if text in ("adaptive", "off"):
            return cls(text)
        if text.startswith("fixed:"):
            try:
                return cls("fixed", fixed_gamma=int(text.removeprefix("fixed:")))
            except ValueError:
                raise ValueError(f"bad policy {text!r}: expected fixed:K with an integer K") from None
        if text.startswith("table:"):
            try:
                rows = json.loads(text.removeprefix("table:"))
                table = tuple((int(lo), int(hi), int(k)) for lo, hi, k in rows)
            except (ValueError, TypeError):
                raise ValueError(f"bad policy {text!r}: expected table:[[lo,hi,K],...]") from None
            return cls("table", table=table)
        raise ValueError(f"bad policy {text!r}: expected adaptive, off, fixed:K or table:[[lo,hi,K],...]")

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"fixed:{self.fixed_gamma}"
        if self.kind == "table":
            return "table:" + json.dumps([list(row) for row in self.table], separators=(",", ":"))
        return self.kind

    def table_gamma(self, batch: int) -> int:
        """vLLM's rule: the row containing the batch size; gaps carry the previous K forward."""
        chosen = 0
        for lo, hi, gamma in sorted(self.table):
            if batch >= lo:
                chosen = gamma
            if lo <= batch <= hi:
                return gamma
        return chosen
