"""`specgate serve`: parse settings, build the app, run uvicorn."""

from __future__ import annotations

import os

from pydantic import ValidationError

from server.settings import ServeSettings


def main(argv: list[str]) -> int:
    try:
        settings = ServeSettings(_cli_parse_args=argv)
    except ValidationError as error:
        print(f"specgate serve: invalid settings\n{error}")
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is fetched from a hub at run time

    import uvicorn

    from server.app import create_app

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)
    return 0
