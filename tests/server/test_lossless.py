"""Speculative decoding must not change greedy outputs (rejection sampling is exact)."""

import pytest
from openai import OpenAI

from loadtests.servers import running_gateway
from tests.server.prompts import ALL

pytestmark = pytest.mark.engine
MAX_TOKENS = 64


def greedy_outputs(client: OpenAI, model: str) -> list[str]:
    return [
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}], max_tokens=MAX_TOKENS, temperature=0
        ).choices[0].message.content
        for prompt in ALL
    ]


def test_greedy_outputs_identical_with_and_without_speculation(client, model_id, tmp_path):
    with_speculation = greedy_outputs(client, model_id)
    with running_gateway(["--speculative", "off", "--dtype", "float32"], log_dir=tmp_path) as plain:
        plain_client = OpenAI(base_url=plain.base_url, api_key="unused", max_retries=0, timeout=120)
        without_speculation = greedy_outputs(plain_client, model_id)
    assert len(ALL) >= 10
    differing = [p for p, spec, base in zip(ALL, with_speculation, without_speculation) if spec != base]
    assert not differing, f"greedy outputs differ with speculation for {differing}"
