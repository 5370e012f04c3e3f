"""Scrape a server's Prometheus `/metrics` and turn two scrapes into spec-decode statistics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtests.loopback import require_loopback_url, server_root

DRAFTS = "vllm:spec_decode_num_drafts"
DRAFT_TOKENS = "vllm:spec_decode_num_draft_tokens"
ACCEPTED_TOKENS = "vllm:spec_decode_num_accepted_tokens"
ACCEPTED_PER_POSITION = "vllm:spec_decode_num_accepted_tokens_per_pos"
SPECGATE_PREFIX = "specgate_"


@dataclass(slots=True, frozen=True)
class MetricsSnapshot:
    """Spec-decode counters summed over all label sets (engines, models), per position
    where the metric has one, plus every `specgate_*` gauge sample."""

    num_drafts: float = 0.0
    num_draft_tokens: float = 0.0
    num_accepted_tokens: float = 0.0
    accepted_per_position: dict[int, float] = field(default_factory=dict)
    specgate_gauges: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True, frozen=True)
class SpecDecodeDelta:
    num_drafts: float
    num_draft_tokens: float
    num_accepted_tokens: float
    accepted_per_position: dict[int, float]
    acceptance_rate: float | None
    """Accepted / drafted tokens."""
    mean_acceptance_length: float | None
    """1 + accepted / drafts: tokens gained per verification step, bonus token included."""
    per_position_acceptance: dict[int, float]
    """Accepted at position k / drafts (0-based k): the share of drafts whose token k was kept."""
    specgate_gauges: dict[str, float]
    """Values at the later scrape."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sample_key(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return name
    rendered = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return f"{name}{{{rendered}}}"


NON_GAUGE_SUFFIXES = ("_total", "_created", "_count", "_sum", "_bucket")


def _is_specgate_gauge(family_type: str, sample_name: str) -> bool:
    # Untyped samples count unless their suffix marks them as parts of counters or
    # histograms; `*_created` timestamps are typed as gauges by some exporters.
    if not sample_name.startswith(SPECGATE_PREFIX) or sample_name.endswith("_created"):
        return False
    if family_type == "gauge":
        return True
    return family_type == "unknown" and not sample_name.endswith(NON_GAUGE_SUFFIXES)


def parse_metrics(text: str) -> MetricsSnapshot:
    """Parse Prometheus text. Counters are matched on their `_total` samples, whatever
    the family's TYPE line says (exporters differ on whether it carries the suffix)."""
    totals = {DRAFTS + "_total": 0.0, DRAFT_TOKENS + "_total": 0.0, ACCEPTED_TOKENS + "_total": 0.0}
    per_position: dict[int, float] = {}
    gauges: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
            elif sample.name == ACCEPTED_PER_POSITION + "_total":
                position = int(sample.labels["position"])
                per_position[position] = per_position.get(position, 0.0) + sample.value
            elif _is_specgate_gauge(family.type, sample.name):
                gauges[_sample_key(sample.name, sample.labels)] = float(sample.value)
    return MetricsSnapshot(
        num_drafts=totals[DRAFTS + "_total"],
        num_draft_tokens=totals[DRAFT_TOKENS + "_total"],
        num_accepted_tokens=totals[ACCEPTED_TOKENS + "_total"],
        accepted_per_position=dict(sorted(per_position.items())),
        specgate_gauges=gauges,
    )


def spec_decode_delta(before: MetricsSnapshot, after: MetricsSnapshot) -> SpecDecodeDelta:
    drafts = after.num_drafts - before.num_drafts
    draft_tokens = after.num_draft_tokens - before.num_draft_tokens
    accepted = after.num_accepted_tokens - before.num_accepted_tokens
    positions = sorted(set(before.accepted_per_position) | set(after.accepted_per_position))
    accepted_per_position = {
        k: after.accepted_per_position.get(k, 0.0) - before.accepted_per_position.get(k, 0.0)
        for k in positions
    }
    return SpecDecodeDelta(
        num_drafts=drafts,
        num_draft_tokens=draft_tokens,
        num_accepted_tokens=accepted,
        accepted_per_position=accepted_per_position,
        acceptance_rate=accepted / draft_tokens if draft_tokens > 0 else None,
        mean_acceptance_length=1.0 + accepted / drafts if drafts > 0 else None,
        per_position_acceptance=(
            {k: v / drafts for k, v in accepted_per_position.items()} if drafts > 0 else {}
        ),
        specgate_gauges=dict(after.specgate_gauges),
    )


def metrics_url(base_url: str) -> str:
    """`/metrics` sits at the server root, next to the `/v1` API prefix."""
    return server_root(require_loopback_url(base_url)) + "/metrics"


async def scrape_metrics(
    base_url: str, client: httpx.AsyncClient | None = None, timeout_seconds: float = 10.0
) -> MetricsSnapshot:
    url = metrics_url(base_url)
    if client is not None:
        response = await client.get(url)
    else:
        async with httpx.AsyncClient(timeout=timeout_seconds, trust_env=False) as own_client:
            response = await own_client.get(url)
    response.raise_for_status()
    return parse_metrics(response.text)


def histogram_totals(text: str, prefix: str = "specgate_") -> dict[str, dict[str, float]]:
    """`_sum` and `_count` of every histogram named ``prefix...``, summed over label sets."""
    totals: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith(prefix) or family.type != "histogram":
            continue
        entry = totals.setdefault(family.name, {"sum": 0.0, "count": 0.0})
        for sample in family.samples:
            if sample.name == family.name + "_sum":
                entry["sum"] += sample.value
            elif sample.name == family.name + "_count":
                entry["count"] += sample.value
    return totals


def histogram_delta(before: dict, after: dict) -> dict[str, dict[str, float | None]]:
    delta: dict[str, dict[str, float | None]] = {}
    for name, end in after.items():
        start = before.get(name, {"sum": 0.0, "count": 0.0})
        total, count = end["sum"] - start["sum"], end["count"] - start["count"]
        delta[name] = {"sum": total, "count": count, "mean": total / count if count > 0 else None}
    return delta
