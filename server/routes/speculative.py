"""`/v1/speculative`: the γ controller's policy and live estimates; `PUT` switches the policy."""

import json
from http import HTTPStatus

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from server.controller.policy import GammaPolicy
from server.errors import SpecgateError
from server.vllm_plugin import CONTROL_METHOD

router = APIRouter()


class PolicyUpdate(BaseModel):
    policy: str = Field(description="adaptive, off, fixed:K or table:[[lo,hi,K],...]")


async def _control(raw_request: Request, payload: dict) -> JSONResponse:
    engine = raw_request.app.state.engine_client
    reply = json.loads(await engine.engine_core.call_utility_async(CONTROL_METHOD, json.dumps(payload)))
    if "error" in reply:
        raise SpecgateError(reply["error"], HTTPStatus.CONFLICT)
    return JSONResponse(reply)


@router.get("/v1/speculative")
async def speculative_status(raw_request: Request) -> JSONResponse:
    return await _control(raw_request, {"action": "status"})


@router.put("/v1/speculative")
async def set_speculative_policy(update: PolicyUpdate, raw_request: Request) -> JSONResponse:
    try:
        GammaPolicy.parse(update.policy)
    except ValueError as error:
        raise SpecgateError(str(error), param="policy") from None
    return await _control(raw_request, {"action": "set_policy", "policy": update.policy})
