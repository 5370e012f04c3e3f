"""One request of a workload, before the load generator adds model and streaming fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Endpoint = Literal["chat", "completions"]

ENDPOINT_PATHS: dict[str, str] = {"chat": "/chat/completions", "completions": "/completions"}


@dataclass(slots=True, frozen=True)
class RequestTemplate:
    endpoint: Endpoint
    body: dict[str, Any] = field(default_factory=dict)
    """OpenAI request body without `model`, `stream` and `stream_options`."""

    def __post_init__(self) -> None:
        if self.endpoint not in ENDPOINT_PATHS:
            raise ValueError(f"endpoint must be 'chat' or 'completions', got {self.endpoint!r}")

    @property
    def path(self) -> str:
        return ENDPOINT_PATHS[self.endpoint]

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "body": self.body}
