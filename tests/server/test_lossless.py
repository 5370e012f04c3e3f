"""Speculative decoding must not change greedy outputs (rejection sampling is exact), under
every γ policy."""

import httpx
import pytest
from openai import OpenAI

from loadtests.servers import running_gateway
from tests.server.prompts import ALL

pytestmark = pytest.mark.engine
MAX_TOKENS = 64
POLICIES = ["fixed:4", "fixed:1", "table:[[1,1,4],[2,64,2]]", "off", "adaptive"]


def greedy_outputs(client: OpenAI, model: str) -> list[str]:
    return [
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}], max_tokens=MAX_TOKENS, temperature=0
        ).choices[0].message.content
        for prompt in ALL
    ]


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
