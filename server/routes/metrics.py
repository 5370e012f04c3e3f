"""`/metrics`: vLLM's `vllm:*` series plus specgate's, from one registry.

In prometheus-client multiprocess mode (PROMETHEUS_MULTIPROC_DIR set) the registry
also collects what the engine-core process wrote, where specgate's controller runs.
"""

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from vllm.v1.metrics.prometheus import get_prometheus_registry

router = APIRouter()


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    return Response(content=generate_latest(get_prometheus_registry()), media_type=CONTENT_TYPE_LATEST)
