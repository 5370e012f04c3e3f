"""Every error the gateway returns, in OpenAI's JSON shape, mapped in one place.

vLLM's own handlers cover validation, vLLM and raw exceptions (so responses match its
server byte for byte); specgate adds its own errors on top through `SpecgateError`.
"""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


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


def openai_error_response(
    message: str,
    status: HTTPStatus,
    *,
    error_type: str = "invalid_request_error",
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": status.value}}
    return JSONResponse(body, status_code=status.value, headers=headers)


async def _specgate_error_handler(_: Request, error: SpecgateError) -> JSONResponse:
    return openai_error_response(
        error.message, error.status, error_type=error.error_type, param=error.param, headers=error.headers
    )


async def _engine_dead_handler(_: Request, error: Exception) -> JSONResponse:
    return openai_error_response(
        "The inference engine is not running; retry against a healthy replica.",
        HTTPStatus.SERVICE_UNAVAILABLE, error_type="service_unavailable",
    )


def install_error_handlers(app: FastAPI) -> None:
    from vllm.entrypoints.serve.exception_handling.register import init_exception_handler
    from vllm.v1.engine.exceptions import EngineDeadError

    init_exception_handler(app)
    app.add_exception_handler(SpecgateError, _specgate_error_handler)
    app.add_exception_handler(EngineDeadError, _engine_dead_handler)
