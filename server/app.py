"""`create_app(settings)`: the FastAPI gateway around an in-process vLLM engine."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI

from server.errors import install_error_handlers
from server.settings import ServeSettings


async def _log_engine_stats_forever(engine) -> None:
    import vllm.envs as envs

    while True:
        await asyncio.sleep(envs.VLLM_LOG_STATS_INTERVAL)
        await engine.do_log_stats()


def create_app(settings: ServeSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from vllm.entrypoints.launchers.api_server.app_state import init_app_state
        from vllm.utils.gc_utils import freeze_gc_heap

        from server.engine import resolve_model_path, running_engine, vllm_cli_args, vllm_namespace

        namespace = vllm_namespace(vllm_cli_args(settings, resolve_model_path(settings)))
        async with running_engine(namespace) as engine:
            supported_tasks = await engine.get_supported_tasks()
            await init_app_state(engine, app.state, namespace, supported_tasks)
            app.state.settings = settings
            stats_task = asyncio.create_task(_log_engine_stats_forever(engine))
            freeze_gc_heap()  # as vLLM's server: startup objects leave the GC's oldest generation
            try:
                yield
            finally:
                stats_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stats_task

    from server.routes import chat, completions, health, metrics, models, speculative

    app = FastAPI(title="specgate", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    for route_module in (chat, completions, models, speculative, health, metrics):
        app.include_router(route_module.router)
    return app
