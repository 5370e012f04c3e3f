"""The OpenAI API through the official `openai` SDK, against the real engine with SD on."""

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server.prompts import COPY_HEAVY

pytestmark = pytest.mark.engine


def test_models_lists_the_served_model(client):
    models = client.models.list().data
    assert [m.id for m in models] == ["SmolLM2-135M-Instruct"]
    assert models[0].object == "model"


def test_health(sd_gateway):
    assert httpx.get(f"{sd_gateway.root_url}/health").status_code == 200


def test_chat_non_streaming_with_usage(client, model_id):
    response = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": COPY_HEAVY[0]}], max_tokens=24, temperature=0
    )
    choice = response.choices[0]
    assert response.object == "chat.completion"
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert response.usage.completion_tokens <= 24
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_chat_streaming_matches_non_streaming_and_reports_usage(client, model_id):
    messages = [{"role": "user", "content": COPY_HEAVY[1]}]
    whole = client.chat.completions.create(model=model_id, messages=messages, max_tokens=32, temperature=0)
    stream = client.chat.completions.create(
        model=model_id, messages=messages, max_tokens=32, temperature=0,
        stream=True, stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_chat_n_max_completion_tokens_and_stop(client, model_id):
    response = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Count from 1 to 20, separated by spaces."}],
        n=2, max_completion_tokens=40, temperature=0.8, seed=7, stop=["10"],
    )
    assert len(response.choices) == 2
    assert {c.index for c in response.choices} == {0, 1}
    for choice in response.choices:
        assert "10" not in choice.message.content
        assert response.usage.completion_tokens <= 2 * 40


def test_chat_seed_makes_sampling_repeatable(client, model_id):
    def sample():
        return client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": "Invent a name for a cat."}],
            max_tokens=16, temperature=1.0, top_p=0.9, seed=1234,
        ).choices[0].message.content

    assert sample() == sample()


def test_chat_logprobs(client, model_id):
    response = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Say yes."}],
        max_tokens=5, temperature=0, logprobs=True, top_logprobs=3,
    )
    content = response.choices[0].logprobs.content
    assert len(content) == response.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0.0
        assert len(entry.top_logprobs) == 3
        # greedy: the sampled token is the most likely one
        assert entry.logprob == pytest.approx(max(t.logprob for t in entry.top_logprobs), abs=1e-4)


def test_completions_non_streaming_and_streaming(client, model_id):
    prompt = "def fibonacci(n):\n    "
    whole = client.completions.create(model=model_id, prompt=prompt, max_tokens=32, temperature=0)
    assert whole.object == "text_completion" and whole.choices[0].text
    stream = client.completions.create(
        model=model_id, prompt=prompt, max_tokens=32, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_unknown_model_is_a_404_in_openai_shape(sd_gateway):
    response = httpx.post(f"{sd_gateway.base_url}/chat/completions", json={
        "model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 404
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"} and error["code"] == 404


def test_invalid_body_is_a_400_not_a_500(sd_gateway):
    response = httpx.post(f"{sd_gateway.base_url}/chat/completions", content=b"{not json",
                          headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "error" in response.json()


def _counter(metrics_text: str, name: str) -> float:
    return sum(s.value for family in text_string_to_metric_families(metrics_text)
               for s in family.samples if s.name == name)


def test_metrics_show_speculative_decoding_after_traffic(client, model_id, sd_gateway):
    client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": COPY_HEAVY[3]}], max_tokens=32, temperature=0)
    text = httpx.get(f"{sd_gateway.root_url}/metrics").text
    drafts = _counter(text, "vllm:spec_decode_num_drafts_total")
    draft_tokens = _counter(text, "vllm:spec_decode_num_draft_tokens_total")
    accepted = _counter(text, "vllm:spec_decode_num_accepted_tokens_total")
    assert drafts > 0
    assert 0 < draft_tokens <= 4 * drafts
    assert 0 <= accepted <= draft_tokens
