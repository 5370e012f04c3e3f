"""Run in a fresh interpreter by test_vllm_cpu_kernels: registers vLLM's CPU fallback kernels the way
a worker does after the plugins (vLLM's registration scans every loaded module, which a pytest
process full of other tests' imports can trip), then prints what the checks observed as JSON."""

import json
from types import SimpleNamespace

import numpy as np
import torch


def main() -> None:
    from vllm.platforms import current_platform

    from server.vllm_cpu_fixes import (
        fix_expand_kernel,
        sample_recovered_tokens_of_drafting_rows,
    )

    if not current_platform.is_cpu():
        print(json.dumps({"cpu": False}))
        return
    fix_expand_kernel()
    current_platform.register_triton_kernel_overrides()
    from vllm.v1.sample import rejection_sampler

    temperatures = torch.tensor([0.7, 0.0, 1.3])  # 0.0 = greedy, which the sampler expands as 1
    expanded = rejection_sampler.expand_batch_to_tokens(
        temperatures, torch.tensor([1, 3, 4], dtype=torch.int32), 4, replace_from=0, replace_to=1)

    num_draft_tokens = [2, 0, 3, 0]  # [batch]
    cu_num_draft_tokens = torch.tensor(np.cumsum(num_draft_tokens), dtype=torch.int32)
    target_probs = torch.rand(5, 64).softmax(-1)  # [num_tokens, vocab]
    draft_token_ids = torch.tensor([3, 9, 1, 4, 60], dtype=torch.int32)  # [num_tokens]

    def recovered(sample):  # every drafting row seeded: the draws that decide must be the same
        generators = {0: torch.Generator().manual_seed(5), 2: torch.Generator().manual_seed(6)}
        return sample(max(num_draft_tokens), num_draft_tokens, cu_num_draft_tokens, draft_token_ids, None,
                      target_probs, SimpleNamespace(generators=generators), torch.device("cpu")).tolist()

    nobody_drafts = sample_recovered_tokens_of_drafting_rows(
        0, [0, 0], torch.tensor([0, 0], dtype=torch.int32), torch.empty(0, dtype=torch.int32), None,
        torch.empty(0, 64), SimpleNamespace(generators={}), torch.device("cpu"))
    print(json.dumps({
        "cpu": True,
        "expanded_temperatures": expanded.tolist(),
        "recovered_of_drafting_rows": recovered(sample_recovered_tokens_of_drafting_rows),
        "recovered_by_vllm": recovered(rejection_sampler.sample_recovered_tokens),
        "recovered_when_nobody_drafts": nobody_drafts.numel(),
    }))


if __name__ == "__main__":
    main()
