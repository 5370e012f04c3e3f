"""The two vLLM patches of the general plugin, on stand-in classes (the engine tests drive the real ones)."""

from types import SimpleNamespace

from server.vllm_plugin import SKIP_DRAFTER_FIELD, _patch_engine_core_post_step, _patch_model_runner


def test_post_step_takes_drafts_only_when_the_scheduler_expects_some():
    class EngineCore:
        def __init__(self, scheduler):
            self.scheduler, self.taken = scheduler, 0

        def post_step(self, model_executed):
            self.taken += 1

    _patch_engine_core_post_step(EngineCore)
    _patch_engine_core_post_step(EngineCore)  # idempotent: vLLM calls register() per process
    vllm_scheduler = EngineCore(SimpleNamespace())  # not ours: vLLM's behaviour
    expecting, idle = EngineCore(SimpleNamespace(expects_draft_tokens=True)), EngineCore(
        SimpleNamespace(expects_draft_tokens=False))
    for core in (vllm_scheduler, expecting, idle):
        core.post_step(True)
    assert (vllm_scheduler.taken, expecting.taken, idle.taken) == (1, 1, 0)


def test_model_runner_skips_the_drafter_when_the_scheduler_output_says_so():
    class Runner:
        def execute_model(self, scheduler_output, intermediate_tensors=None):
            return self._input_fits_in_drafter("metadata")

        def _input_fits_in_drafter(self, common_attn_metadata):
            return True

    _patch_model_runner(Runner)
    runner = Runner()
    assert runner.execute_model(SimpleNamespace()) is True  # vLLM's scheduler sets no field
    assert runner.execute_model(SimpleNamespace(**{SKIP_DRAFTER_FIELD: False})) is True
    assert runner.execute_model(SimpleNamespace(**{SKIP_DRAFTER_FIELD: True})) is False
