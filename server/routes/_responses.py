"""Turn what a vLLM serving handler returns into an HTTP response (as vLLM's routes do)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel


def to_http_response(result: Any) -> JSONResponse | StreamingResponse:
    from vllm.entrypoints.serve.engine.protocol import ErrorResponse

    if isinstance(result, ErrorResponse):
        return JSONResponse(content=result.model_dump(), status_code=result.error.code)
    if isinstance(result, BaseModel):
        return JSONResponse(content=result.model_dump())
    return StreamingResponse(content=result, media_type="text/event-stream")
