"""`specgate serve`: parse settings, build the app, run uvicorn."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from pydantic import ValidationError

from server.settings import ServeSettings


def main(argv: list[str]) -> int:
    try:
        settings = ServeSettings(_cli_parse_args=argv)
    except ValidationError as error:
        print(f"specgate serve: invalid settings\n{error}")
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is fetched from a hub at run time
    _use_multiprocess_metrics()

    import uvicorn

    from server.app import create_app

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)
    return 0


def _use_multiprocess_metrics() -> None:
    """The controller's metrics are written in vLLM's engine-core process; prometheus-client's
    multiprocess mode lets `/metrics` here collect them. Must run before prometheus_client is
    imported anywhere in this process (it picks its value store at import)."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        return
    folder = tempfile.mkdtemp(prefix="specgate-metrics-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
