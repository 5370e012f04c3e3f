"""The general plugin's vLLM patches: the scheduler hooks and the CPU sampling fixes on tensors and
stand-in classes (the engine tests drive the real ones; test_vllm_cpu_kernels runs them inside
vLLM's rejection sampler)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from server.vllm_cpu_fixes import (
    expand_batch_to_tokens_kernel,
    restore_discarded_samples_generators,
)
from server.vllm_plugin import (
    SKIP_DRAFTER_FIELD,
    _patch_engine_core_post_step,
    _patch_model_runner,
)


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.int32, torch.int64])
def test_expand_kernel_repeats_each_requests_value_over_its_tokens(dtype):
    values = torch.tensor([0, 7, 3], dtype=dtype)  # 0 is replaced by 1
    cu_num_tokens = torch.tensor([2, 2, 5], dtype=torch.int32)  # the second request has no drafts
    output = torch.full((5,), -9, dtype=dtype)
    expand_batch_to_tokens_kernel(output, values, cu_num_tokens, 0, 1)
    assert output.tolist() == [1, 1, 3, 3, 3]


def test_a_discarded_samples_generator_is_restored_instead_of_rewound_by_offset():
    class Runner:
        def __init__(self):
            generators = {0: torch.Generator().manual_seed(1), 1: torch.Generator().manual_seed(2)}
            self.input_batch = SimpleNamespace(generators=generators, num_reqs=2)
            self.discard_request_mask = SimpleNamespace(np=np.array([True, False]))  # request 0 mid-prefill

        def _sample(self):
            return {i: torch.rand(1, generator=g).item() for i, g in self.input_batch.generators.items()}

        def _bookkeeping_sync(self):
            for i in np.nonzero(self.discard_request_mask.np)[0]:
                generator = self.input_batch.generators.get(int(i))
                if generator is not None:
                    generator.set_offset(generator.get_offset() - 4)  # vLLM's rewind: raises on CPU

    restore_discarded_samples_generators(Runner)
    restore_discarded_samples_generators(Runner)  # idempotent: vLLM calls register() per process
    runner = Runner()
    first = runner._sample()
    runner._bookkeeping_sync()
    runner.discard_request_mask.np[:] = False
    second = runner._sample()
    assert second[0] == first[0]  # the discarded draw left no trace
    assert second[1] != first[1]
    assert sorted(runner.input_batch.generators) == [0, 1]
