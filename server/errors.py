"""Every error the gateway returns, in OpenAI's JSON shape, mapped in one place.

vLLM's own handlers cover validation, vLLM and raw exceptions (so responses match its
server byte for byte); specgate adds its own errors on top through `SpecgateError`.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

ENGINE_DEAD_MESSAGE = "The inference engine is not running; retry against a healthy replica."


class SpecgateError(Exception):
    """An error with an HTTP status, surfaced to the client as OpenAI error JSON."""

    def __init__(
        self,
        message: str,
        status: HTTPStatus = HTTPStatus.BAD_REQUEST,
        *,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message, self.status, self.error_type, self.param = message, status, error_type, param
        self.headers = headers


def error_body(message: str, status: HTTPStatus, *, error_type: str = "invalid_request_error",
               param: str | None = None) -> dict:
    return {"error": {"message": message, "type": error_type, "param": param, "code": status.value}}


def openai_error_response(
    message: str,
    status: HTTPStatus,
    *,
    error_type: str = "invalid_request_error",
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = error_body(message, status, error_type=error_type, param=param)
    return JSONResponse(body, status_code=status.value, headers=headers)


def error_event(message: str, status: HTTPStatus, *, error_type: str) -> bytes:
    """The end of a stream that failed after its 200 was sent: an error event, then [DONE]
    (what vLLM's serving layer sends when a stream fails)."""
    return f"data: {json.dumps(error_body(message, status, error_type=error_type))}\n\ndata: [DONE]\n\n".encode()


def engine_dead_response() -> JSONResponse:
    return openai_error_response(ENGINE_DEAD_MESSAGE, HTTPStatus.SERVICE_UNAVAILABLE, error_type="service_unavailable")


ENGINE_DEAD_EVENT = error_event(ENGINE_DEAD_MESSAGE, HTTPStatus.SERVICE_UNAVAILABLE, error_type="service_unavailable")


def overloaded_error(retry_after_seconds: int) -> SpecgateError:
    return SpecgateError(
        "The server is at capacity (running and queued requests); retry after a moment.",
        HTTPStatus.TOO_MANY_REQUESTS, error_type="rate_limit_error",
        headers={"Retry-After": str(retry_after_seconds)},
    )


def timeout_message(seconds: float) -> str:
    return f"The request took longer than the server's limit of {seconds:g} s and was aborted."


def specgate_error_response(error: SpecgateError) -> JSONResponse:
    return openai_error_response(
        error.message, error.status, error_type=error.error_type, param=error.param, headers=error.headers
    )


async def _specgate_error_handler(_: Request, error: SpecgateError) -> JSONResponse:
    return specgate_error_response(error)


async def _engine_dead_handler(_: Request, error: Exception) -> JSONResponse:
    return engine_dead_response()


async def _http_error_handler(_: Request, error: StarletteHTTPException) -> JSONResponse:
    """Routing errors (unknown path 404, wrong method 405) in OpenAI's shape, not `{"detail": ...}`."""
    status = HTTPStatus(error.status_code)
    return openai_error_response(str(error.detail), status, error_type=status.phrase, headers=error.headers)


def install_error_handlers(app: FastAPI) -> None:
    from vllm.entrypoints.serve.exception_handling.register import (
        init_exception_handler,
    )
    from vllm.v1.engine.exceptions import EngineDeadError

    init_exception_handler(app)
    # Starlette's router raises its own HTTPException; vLLM's handler covers FastAPI's subclass.
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_exception_handler(SpecgateError, _specgate_error_handler)
    app.add_exception_handler(EngineDeadError, _engine_dead_handler)
