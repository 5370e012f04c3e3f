"""Turn `ServeSettings` into vLLM's own engine arguments and run the in-process engine.

The arguments go through vLLM's serve argument parser, so the gateway's engine is
configured exactly as `python -m vllm.entrypoints.openai.api_server` with the same flags.
"""

from __future__ import annotations

import json
import shlex
from argparse import Namespace
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from server.settings import ServeSettings
from server.vllm_plugin import SCHEDULER_QUALNAME

CPU_DEFAULT_MEMORY_UTILIZATION = 0.3
NGRAM_PROMPT_LOOKUP_MIN, NGRAM_PROMPT_LOOKUP_MAX = 2, 4  # n-gram lengths the ngram drafter matches


def speculative_config(settings: ServeSettings) -> dict | None:
    if settings.speculative_config is not None:
        return json.loads(settings.speculative_config)
    if settings.speculative == "off":
        return None
    if settings.speculative == "ngram":
        return {
            "method": "ngram",
            "num_speculative_tokens": settings.gamma_max,
            "prompt_lookup_max": NGRAM_PROMPT_LOOKUP_MAX,
            "prompt_lookup_min": NGRAM_PROMPT_LOOKUP_MIN,
        }
    draft_path = settings.speculative.removeprefix("draft:")
    return {"method": "draft_model", "model": draft_path, "num_speculative_tokens": settings.gamma_max}


def resolve_model_path(settings: ServeSettings) -> Path:
    if settings.model is not None:
        return Path(settings.model)
    from server.model_prep import prepare_embedded_model

    return prepare_embedded_model().path


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def vllm_cli_args(settings: ServeSettings, model_path: Path, *, with_controller: bool = True) -> list[str]:
    """The flags `vllm serve` would take for these settings.

    Without the controller they are the flags of the plain-vLLM peer in benchmarks: the same
    engine, with vLLM's own scheduler and its fixed γ = gamma_max."""
    served_name = settings.served_model_name or model_path.name
    on_cpu = _on_cpu()
    args = [
        "--model", str(model_path),
        "--served-model-name", served_name,
        "--max-model-len", str(settings.max_model_len),
        "--dtype", settings.dtype,
        "--seed", str(settings.seed),
    ]
    memory = settings.gpu_memory_utilization or (CPU_DEFAULT_MEMORY_UTILIZATION if on_cpu else None)
    if memory is not None:
        args += ["--gpu-memory-utilization", str(memory)]
    if settings.enforce_eager if settings.enforce_eager is not None else on_cpu:
        args.append("--enforce-eager")
    if settings.max_num_seqs is not None:
        args += ["--max-num-seqs", str(settings.max_num_seqs)]
    spec = speculative_config(settings)
    if spec is not None:
        args += ["--speculative-config", json.dumps(spec)]
    if with_controller:
        # Without speculation the scheduler only times steps (the `off` baseline's step seconds).
        # It is a synchronous Scheduler (it learns from each step before planning the next);
        # where vLLM would turn on async scheduling (GPUs) it would pair it with a batch queue.
        args += ["--scheduler-cls", SCHEDULER_QUALNAME, "--no-async-scheduling"]
        if spec is not None:
            options = {"gamma_policy": settings.gamma_policy}
            if settings.hardware:
                options["hardware"] = settings.hardware
            args += ["--additional-config", json.dumps({"specgate": options})]
    return args + shlex.split(settings.vllm_args)


def vllm_namespace(cli_args: list[str]) -> Namespace:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser(prog="specgate serve (vLLM engine flags)"))
    namespace = parser.parse_args(cli_args)
    validate_parsed_serve_args(namespace)
    return namespace


@asynccontextmanager
async def running_engine(namespace: Namespace) -> AsyncIterator[object]:
    """vLLM's AsyncLLM, in this process, shut down on exit."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.launchers.api_server.entry import build_async_engine_client_from_engine_args

    engine_args = AsyncEngineArgs.from_cli_args(namespace)
    async with build_async_engine_client_from_engine_args(engine_args) as engine:
        yield engine
