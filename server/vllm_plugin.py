"""vLLM `general_plugins` entry point (`[project.entry-points."vllm.general_plugins"]`).

vLLM calls `register()` in each of its processes. specgate adds:

* one EngineCore utility method, `specgate_control`, so the API process can read and steer the
  γ controller that lives inside the engine-core process's scheduler (AsyncLLM's
  `call_utility_async`);
* a switch for the draft model's forward pass. vLLM runs a draft model every step to keep its
  KV cache in step, even when no drafts are wanted (γ = 0), which costs a useless draft ~25 %
  of throughput. When the scheduler sets `specgate_skip_drafter` on its output, the model
  runner takes vLLM's own "input does not fit the drafter" path for that step (no draft
  forward, placeholder drafts that the scheduler discards).

The scheduler itself is chosen with `--scheduler-cls server.scheduler.SpecgateScheduler`.
"""

import json

SCHEDULER_QUALNAME = "server.scheduler.SpecgateScheduler"
CONTROL_METHOD = "specgate_control"
SKIP_DRAFTER_FIELD = "specgate_skip_drafter"


def _specgate_control(self, payload: str) -> str:
    handler = getattr(self.scheduler, "handle_specgate_control", None)
    if handler is None:
        return json.dumps({"error": f"the engine's scheduler is not {SCHEDULER_QUALNAME}"})
    return handler(payload)


def _patch_model_runner() -> None:
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    if getattr(GPUModelRunner, "_specgate_patched", False):
        return
    execute_model = GPUModelRunner.execute_model
    input_fits_in_drafter = GPUModelRunner._input_fits_in_drafter

    def execute_model_noting_skip(self, scheduler_output, *args, **kwargs):
        self._specgate_skip_drafter = getattr(scheduler_output, SKIP_DRAFTER_FIELD, False)
        return execute_model(self, scheduler_output, *args, **kwargs)

    def input_fits_unless_skipped(self, common_attn_metadata):
        if getattr(self, "_specgate_skip_drafter", False):
            return False
        return input_fits_in_drafter(self, common_attn_metadata)

    GPUModelRunner.execute_model = execute_model_noting_skip
    GPUModelRunner._input_fits_in_drafter = input_fits_unless_skipped
    GPUModelRunner._specgate_patched = True


def register() -> None:
    from vllm.v1.engine.core import EngineCore

    if not hasattr(EngineCore, CONTROL_METHOD):
        setattr(EngineCore, CONTROL_METHOD, _specgate_control)
    _patch_model_runner()
