"""`create_app(settings)`: the FastAPI gateway around an in-process vLLM engine."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from server.admission import Admission, AdmissionCollector, AdmissionMiddleware
from server.auth import AuthMiddleware, KeyRing
from server.errors import install_error_handlers
from server.settings import ServeSettings


async def _log_engine_stats_forever(engine) -> None:
    from vllm import envs

    while True:
        await asyncio.sleep(envs.VLLM_LOG_STATS_INTERVAL)
        await engine.do_log_stats()


def create_app(settings: ServeSettings, *, keys: KeyRing | None = None) -> FastAPI:
    admission = Admission(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from vllm.entrypoints.launchers.api_server.app_state import init_app_state
        from vllm.utils.gc_utils import freeze_gc_heap

        from server.engine import (
            resolve_model_path,
            running_engine,
            vllm_cli_args,
            vllm_namespace,
        )
        from server.lifecycle import engine_processes, watch_engine

        namespace = vllm_namespace(vllm_cli_args(settings, resolve_model_path(settings)))
        async with running_engine(namespace) as engine:
            supported_tasks = await engine.get_supported_tasks()
            await init_app_state(engine, app.state, namespace, supported_tasks)
            admission.attach(engine, app.state.vllm_config.scheduler_config.max_num_seqs)
            tasks = [asyncio.create_task(_log_engine_stats_forever(engine)),
                     asyncio.create_task(watch_engine(engine, app.state, exit_on_death=settings.exit_on_engine_death,
                                                      processes=engine_processes()))]
            freeze_gc_heap()  # as vLLM's server: startup objects leave the GC's oldest generation
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    from server.routes import chat, completions, health, metrics, models, speculative

    app = FastAPI(title="specgate", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.admission = admission
    app.state.gateway_registry = CollectorRegistry()  # read by /metrics at scrape time
    app.state.gateway_registry.register(AdmissionCollector(admission))
    install_error_handlers(app)
    for route_module in (chat, completions, models, speculative, health, metrics):
        app.include_router(route_module.router)
    if settings.reject_unknown_parameters:
        _publish_strict_request_bodies(app, ("ChatCompletionRequest", "CompletionRequest"))
    # Pure ASGI, outermost last: auth, then admission (body limit, 429, deadline), then the routes.
    app.add_middleware(AdmissionMiddleware, admission=admission)
    app.add_middleware(AuthMiddleware, keys=keys if keys is not None else KeyRing.from_settings(settings),
                       metrics_require_auth=settings.metrics_require_auth)
    return app


def _publish_strict_request_bodies(app: FastAPI, schema_names: tuple[str, ...]) -> None:
    """vLLM's request models allow extra fields; the gateway answers 400 for them, so its
    OpenAPI schema says `additionalProperties: false` for those bodies."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schemas = generate().get("components", {}).get("schemas", {})
            for name in schema_names:
                if name in schemas:
                    schemas[name]["additionalProperties"] = False
        return app.openapi_schema

    app.openapi = openapi
