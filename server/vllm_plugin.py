"""vLLM `general_plugins` entry point (`[project.entry-points."vllm.general_plugins"]`).

vLLM calls `register()` in each of its processes. specgate adds one EngineCore utility
method, `specgate_control`, so the API process can read and steer the γ controller that
lives inside the engine-core process's scheduler (AsyncLLM's `call_utility_async`). The
scheduler itself is chosen with `--scheduler-cls server.scheduler.SpecgateScheduler`.
"""

import json

SCHEDULER_QUALNAME = "server.scheduler.SpecgateScheduler"
CONTROL_METHOD = "specgate_control"


def _specgate_control(self, payload: str) -> str:
    handler = getattr(self.scheduler, "handle_specgate_control", None)
    if handler is None:
        return json.dumps({"error": f"the engine's scheduler is not {SCHEDULER_QUALNAME}"})
    return handler(payload)


def register() -> None:
    from vllm.v1.engine.core import EngineCore

    if not hasattr(EngineCore, CONTROL_METHOD):
        setattr(EngineCore, CONTROL_METHOD, _specgate_control)
