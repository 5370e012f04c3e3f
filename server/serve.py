"""`specgate serve`: parse settings, build the app, run uvicorn."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

from pydantic import ValidationError

from server.settings import ServeSettings


def main(argv: list[str]) -> int:
    try:
        settings = ServeSettings(_cli_parse_args=argv)
    except ValidationError as error:
        print(f"specgate serve: invalid settings\n{error}")
        return 2
    from server.auth import KeyRing, access_summary, is_loopback_host

    try:
        keys = KeyRing.from_settings(settings)
    except ValueError as error:
        print(f"specgate serve: {error}", file=sys.stderr)
        return 2
    if not keys.enabled and not is_loopback_host(settings.host) and not settings.allow_remote_without_keys:
        print(f"specgate serve: refusing to serve {settings.host!r} without API keys: anyone who can reach "
              "it could use it. Set SPECGATE_API_KEYS (or --api-key-file), bind to 127.0.0.1, or pass "
              "--allow-remote-without-keys.", file=sys.stderr)
        return 2
    print(f"specgate serve: {access_summary(settings, keys)}", file=sys.stderr, flush=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is fetched from a hub at run time
    _use_multiprocess_metrics()

    import uvicorn

    from server.app import create_app
    from server.lifecycle import GatewayServer, keep_exit_status_on_signals

    if not settings.exit_on_engine_death:  # vLLM's engine-error handler would stop the server otherwise
        os.environ["VLLM_KEEP_ALIVE_ON_ENGINE_DEATH"] = "1"
    app = create_app(settings, keys=keys)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            timeout_graceful_shutdown=settings.drain_timeout_seconds)
    server = GatewayServer(config)
    app.state.server = server  # the engine watchdog (and vLLM's engine-error handler) stop it
    keep_exit_status_on_signals()
    server.run()
    if not server.started:
        return 3  # the lifespan (engine start) failed, as uvicorn.run reports it
    return getattr(app.state, "exit_status", 0)


def _use_multiprocess_metrics() -> None:
    """The controller's metrics are written in vLLM's engine-core process; prometheus-client's
    multiprocess mode lets `/metrics` here collect them. Must run before prometheus_client is
    imported anywhere in this process (it picks its value store at import)."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        return
    folder = tempfile.mkdtemp(prefix="specgate-metrics-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
