"""The gateway answers as vLLM's own OpenAI server does, field for field."""

import httpx
import pytest

from loadtests.servers import running_vllm_server
from server.engine import vllm_cli_args
from server.settings import ServeSettings

pytestmark = pytest.mark.engine

REQUESTS = [
    ("/chat/completions", {"messages": [{"role": "user", "content": "Say hello twice."}],
                           "max_tokens": 16, "temperature": 0, "logprobs": True, "top_logprobs": 2}),
    ("/completions", {"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}),
    ("/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": -3}),
    ("/chat/completions", {"messages": "not a list"}),
]
VOLATILE = {"id", "created", "system_fingerprint"}


def shape(value):
    """Keys and value types, recursively; volatile values dropped, content kept."""
    if isinstance(value, dict):
        return {k: (type(v).__name__ if k in VOLATILE else shape(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return value


def test_responses_match_vllms_own_server(sd_gateway, embedded_model_path, model_id, tmp_path):
    settings = ServeSettings(speculative="ngram", gamma_max=4, dtype="float32")
    with running_vllm_server(vllm_cli_args(settings, embedded_model_path), log_dir=tmp_path) as vllm_server:
        for path, body in REQUESTS:
            body = {"model": model_id, **body}
            ours = httpx.post(sd_gateway.base_url + path, json=body, timeout=120)
            theirs = httpx.post(vllm_server.base_url + path, json=body, timeout=120)
            assert ours.status_code == theirs.status_code, (path, body)
            ours_json, theirs_json = ours.json(), theirs.json()
            if "error" in theirs_json:
                assert set(ours_json["error"]) == set(theirs_json["error"])
                assert ours_json["error"]["type"] == theirs_json["error"]["type"]
            else:
                assert shape(ours_json) == shape(theirs_json), path
        ours_models = httpx.get(sd_gateway.base_url + "/models").json()["data"][0]
        theirs_models = httpx.get(vllm_server.base_url + "/models").json()["data"][0]
        assert set(ours_models) == set(theirs_models) and ours_models["id"] == theirs_models["id"]
