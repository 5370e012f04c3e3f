"""Refuse load-test targets that are not on this machine."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback_host(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_loopback_url(url: str) -> str:
    """Return `url` unchanged if its host is loopback; raise ValueError otherwise.

    A load generator pointed at someone else's server is a denial-of-service tool,
    so only 127.0.0.0/8, ::1 and localhost are accepted.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"load-test URL must be http(s)://, got {url!r}")
    host = parts.hostname or ""
    if not is_loopback_host(host):
        raise ValueError(
            f"refusing to load-test {url!r}: host {host!r} is not loopback "
            "(only 127.0.0.0/8, ::1 and localhost are allowed)"
        )
    return url


def server_root(url: str) -> str:
    """`http://127.0.0.1:8000/v1` -> `http://127.0.0.1:8000` (where /metrics lives)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
