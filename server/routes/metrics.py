"""`/metrics`: vLLM's `vllm:*` series plus specgate's, from one registry, then the gateway's
`specgate_admission_*` / `specgate_request_timeouts_total` (read from `server.admission` at scrape).

In prometheus-client multiprocess mode (PROMETHEUS_MULTIPROC_DIR set) the registry
also collects what the engine-core process wrote, where specgate's controller runs.
"""

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from vllm.v1.metrics.prometheus import get_prometheus_registry

router = APIRouter()


@router.get("/metrics", response_class=Response)
async def metrics(raw_request: Request) -> Response:
    # The gateway's own series live in a registry of their own (`create_app`): multiprocess mode
    # builds vLLM's registry anew for every scrape.
    content = generate_latest(get_prometheus_registry()) + generate_latest(raw_request.app.state.gateway_registry)
    return Response(content=content, media_type=CONTENT_TYPE_LATEST)
