"""Minimal server-sent-events decoding: lines in, `data` payloads out."""

from __future__ import annotations

from dataclasses import dataclass, field

DONE_SENTINEL = "[DONE]"


@dataclass(slots=True)
class SseDecoder:
    """Feed lines (without newline); returns an event's data when a blank line ends it."""

    _data_lines: list[str] = field(default_factory=list)

    def feed_line(self, line: str) -> str | None:
        if line == "":
            return self.flush()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if name == "data":
            self._data_lines.append(value[1:] if value.startswith(" ") else value)
        return None

    def flush(self) -> str | None:
        """The pending event's data, if any (also for a stream that ends without a blank line)."""
        if not self._data_lines:
            return None
        data = "\n".join(self._data_lines)
        self._data_lines.clear()
        return data
