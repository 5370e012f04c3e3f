"""The general plugin's vLLM patches: the scheduler hooks on stand-in classes (the engine tests drive
the real ones), the CPU sampling fixes on tensors, stand-ins and inside vLLM's rejection sampler."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from server.vllm_cpu_fixes import (
    expand_batch_to_tokens_kernel,
    fix_expand_kernel,
    restore_discarded_samples_generators,
    sample_recovered_tokens_of_drafting_rows,
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


@pytest.fixture
def cpu_kernels():
    """vLLM's CPU fallback kernels registered in this process, as each worker does after the plugins."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        pytest.skip("the fallback kernels are registered only on vLLM's CPU platform")
    fix_expand_kernel()
    current_platform.register_triton_kernel_overrides()


def test_vllm_rejection_sampler_expands_float_temperatures_on_cpu(cpu_kernels):
    from vllm.v1.sample.rejection_sampler import expand_batch_to_tokens

    temperatures = torch.tensor([0.7, 0.0, 1.3])  # 0.0 = greedy, which the sampler expands as 1
    expanded = expand_batch_to_tokens(temperatures, torch.tensor([1, 3, 4], dtype=torch.int32), 4,
                                      replace_from=0, replace_to=1)
    assert expanded.tolist() == pytest.approx([0.7, 1.0, 1.0, 1.3])


def test_recovered_tokens_drawn_for_drafting_rows_only_match_vllms(cpu_kernels):
    from vllm.v1.sample import rejection_sampler

    vllm_sample_recovered_tokens = rejection_sampler.sample_recovered_tokens
    assert vllm_sample_recovered_tokens is not sample_recovered_tokens_of_drafting_rows
    num_draft_tokens = [2, 0, 3, 0]  # [batch]
    cu_num_draft_tokens = torch.tensor(np.cumsum(num_draft_tokens), dtype=torch.int32)
    target_probs = torch.rand(5, 64).softmax(-1)  # [num_tokens, vocab]
    draft_token_ids = torch.tensor([3, 9, 1, 4, 60], dtype=torch.int32)  # [num_tokens]

    def recovered(sample):  # every drafting row seeded: the draws that decide must be the same
        generators = {0: torch.Generator().manual_seed(5), 2: torch.Generator().manual_seed(6)}
        return sample(max(num_draft_tokens), num_draft_tokens, cu_num_draft_tokens, draft_token_ids, None,
                      target_probs, SimpleNamespace(generators=generators), torch.device("cpu")).tolist()

    assert recovered(sample_recovered_tokens_of_drafting_rows) == recovered(vllm_sample_recovered_tokens)
    nobody_drafts = sample_recovered_tokens_of_drafting_rows(
        0, [0, 0], torch.tensor([0, 0], dtype=torch.int32), torch.empty(0, dtype=torch.int32), None,
        torch.empty(0, 64), SimpleNamespace(generators={}), torch.device("cpu"))
    assert nobody_drafts.numel() == 0


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
