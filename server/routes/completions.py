from fastapi import APIRouter, Depends, Request
from vllm.entrypoints.openai.completion.protocol import CompletionRequest
from vllm.entrypoints.serve.utils.api_utils import load_aware_call, validate_json_request, with_cancellation

from server.routes._responses import to_http_response
from server.validation import check_completion_request

router = APIRouter()


@router.post("/v1/completions", dependencies=[Depends(validate_json_request)])
@with_cancellation
@load_aware_call
async def create_completion(request: CompletionRequest, raw_request: Request):
    check_completion_request(request, raw_request)
    handler = raw_request.app.state.openai_serving_completion
    return to_http_response(await handler.create_completion(request, raw_request))
