from fastapi import APIRouter, Depends, Request
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
from vllm.entrypoints.serve.utils.api_utils import load_aware_call, validate_json_request, with_cancellation

from server.routes._responses import to_http_response
from server.validation import check_chat_request

router = APIRouter()


@router.post("/v1/chat/completions", dependencies=[Depends(validate_json_request)])
@with_cancellation
@load_aware_call
async def create_chat_completion(request: ChatCompletionRequest, raw_request: Request):
    check_chat_request(request, raw_request)
    handler = raw_request.app.state.openai_serving_chat
    return to_http_response(await handler.create_chat_completion(request, raw_request))
