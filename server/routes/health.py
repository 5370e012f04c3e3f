from fastapi import APIRouter, Request, Response
from vllm.v1.engine.exceptions import EngineDeadError

router = APIRouter()


@router.get("/health", response_class=Response)
async def health(raw_request: Request) -> Response:
    try:
        await raw_request.app.state.engine_client.check_health()
    except EngineDeadError:
        return Response(status_code=503)
    return Response(status_code=200)
