"""API-key authentication: a pure-ASGI middleware in front of every route.

Keys come from `--api-keys` / `SPECGATE_API_KEYS` (comma-separated) and `--api-key-file`;
admin keys from `--admin-api-keys` / `--admin-api-key-file`. Clients send
`Authorization: Bearer KEY`. The presented key is hashed once and compared with every
configured key's hash with `secrets.compare_digest`, without stopping at a match, so the
time taken says nothing about which key (or how much of one) matched.

With no key configured, authentication is off: `serve` then binds to loopback only
unless `--allow-remote-without-keys` is given.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import openai_error_response
from server.settings import ServeSettings

# Routes anyone may call. Everything else needs a key once keys are configured.
PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
METRICS_PATH = "/metrics"
# Routes that change the server's behaviour for everyone: admin keys only.
ADMIN_ROUTES = frozenset({("PUT", "/v1/speculative")})
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def _digest(key: str | bytes) -> bytes:
    return hashlib.sha256(key.encode("utf-8") if isinstance(key, str) else key).digest()


def parse_keys(text: str) -> list[str]:
    """Keys from a comma-separated value or a key file's text (one per line, '#' comments)."""
    keys = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        keys.extend(part.strip() for part in line.split(","))
    return [key for key in keys if key]


def _read_key_file(path: Path) -> list[str]:
    try:
        return parse_keys(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"cannot read API key file {path}: {error.strerror}") from None


@dataclass(frozen=True, slots=True)
class KeyRing:
    user_digests: tuple[bytes, ...]
    admin_digests: tuple[bytes, ...]

    @classmethod
    def from_settings(cls, settings: ServeSettings) -> KeyRing:
        user = parse_keys(settings.api_keys.get_secret_value()) if settings.api_keys else []
        admin = parse_keys(settings.admin_api_keys.get_secret_value()) if settings.admin_api_keys else []
        if settings.api_key_file is not None:
            user += _read_key_file(settings.api_key_file)
        if settings.admin_api_key_file is not None:
            admin += _read_key_file(settings.admin_api_key_file)
        return cls(tuple(_digest(k) for k in dict.fromkeys(user)), tuple(_digest(k) for k in dict.fromkeys(admin)))

    @property
    def enabled(self) -> bool:
        return bool(self.user_digests or self.admin_digests)

    def check(self, presented: str | bytes) -> tuple[bool, bool]:
        """(valid, admin) for a presented key; constant time in the keys' contents."""
        digest = _digest(presented)
        admin = False
        for known in self.admin_digests:
            admin |= secrets.compare_digest(digest, known)
        user = False
        for known in self.user_digests:
            user |= secrets.compare_digest(digest, known)
        return user or admin, admin


def bearer_token(scope: Scope) -> bytes | None:
    """The key of an `Authorization: Bearer KEY` header, as sent (bytes), or None."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            token = token.strip()
            return token if scheme.lower() == b"bearer" and token else None
    return None


def is_loopback_host(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def access_summary(settings: ServeSettings, keys: KeyRing) -> str:
    """One line for the start-up log: who may call what."""
    if not keys.enabled:
        where = "on loopback only" if is_loopback_host(settings.host) else f"on {settings.host} (--allow-remote-without-keys)"
        return (f"authentication OFF: no API keys configured; serving {where}. "
                "Set SPECGATE_API_KEYS (or --api-key-file) to require keys.")
    metrics = "needs a key" if settings.metrics_require_auth else "open"
    admin = f"{len(keys.admin_digests)} admin key(s)" if keys.admin_digests else "no admin key (PUT /v1/speculative answers 403)"
    return (f"authentication ON: {len(keys.user_digests)} API key(s), {admin}; "
            f"/health open, /metrics {metrics}.")


class AuthMiddleware:
    """401 without a valid key, 403 for a non-admin key on an admin route, in OpenAI error JSON."""

    def __init__(self, app: ASGIApp, keys: KeyRing, *, metrics_require_auth: bool = False) -> None:
        self.app = app
        self.keys = keys
        self.public = PUBLIC_PATHS if metrics_require_auth else PUBLIC_PATHS | {METRICS_PATH}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys.enabled or scope["path"] in self.public:
            return await self.app(scope, receive, send)
        token = bearer_token(scope)
        valid, admin = self.keys.check(token) if token is not None else (False, False)
        if not valid:
            message = ("Invalid API key." if token is not None else
                       "Missing API key: send it as 'Authorization: Bearer <key>'.")
            response = openai_error_response(message, HTTPStatus.UNAUTHORIZED, error_type="authentication_error",
                                             headers={"WWW-Authenticate": "Bearer"})
            return await response(scope, receive, send)
        if not admin and (scope["method"], scope["path"].rstrip("/") or "/") in ADMIN_ROUTES:
            response = openai_error_response("This route needs an admin API key.", HTTPStatus.FORBIDDEN,
                                             error_type="permission_error")
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)
