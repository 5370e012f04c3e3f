"""`/metrics`: vLLM's `vllm:*` series plus specgate's, from one registry, then the gateway's
`specgate_admission_*` / `specgate_request_timeouts_total` (read from `server.admission` at scrape).

In prometheus-client multiprocess mode (PROMETHEUS_MULTIPROC_DIR set) the registry
also collects what the engine-core process wrote, where specgate's controller runs.
"""

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from vllm.v1.metrics.prometheus import get_prometheus_registry

from server.admission import AdmissionCollector

router = APIRouter()


def _gateway_registry(raw_request: Request) -> CollectorRegistry:
    """The gateway's own series (admission), kept apart from vLLM's registry, which multiprocess
    mode builds anew for every scrape."""
    state = raw_request.app.state
    registry = getattr(state, "gateway_registry", None)
    if registry is None:
        registry = state.gateway_registry = CollectorRegistry()
        registry.register(AdmissionCollector(state.admission))
    return registry


@router.get("/metrics", response_class=Response)
async def metrics(raw_request: Request) -> Response:
    content = generate_latest(get_prometheus_registry()) + generate_latest(_gateway_registry(raw_request))
    return Response(content=content, media_type=CONTENT_TYPE_LATEST)
