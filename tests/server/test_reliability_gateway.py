"""The hardened gateway against the real engine: keys, bad input, overload, disconnects, deadlines.

One gateway for the module, with API keys, a batch of 2 (`--max-num-seqs 2`), a queue of 2 and
a 15 s request deadline, so overload and timeouts are reached in seconds (and a slow CI
machine does not reach the deadline of the streams the overload test holds open). Leaks are read from
vLLM's own gauges: `vllm:num_requests_running` + `vllm:num_requests_waiting` must return to 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from loadtests.servers import running_gateway

pytestmark = pytest.mark.engine

USER_KEY, ADMIN_KEY = "sk-user-reliability-test", "sk-admin-reliability-test"
AUTH = {"Authorization": f"Bearer {USER_KEY}"}
MAX_NUM_SEQS, MAX_QUEUED, TIMEOUT_S = 2, 2, 15
MODEL = "SmolLM2-135M-Instruct"
LONG = 1500  # output tokens: ~30 s or more on this CPU, far past every wait below


@pytest.fixture(scope="module")
def gateway(embedded_model_path, tmp_path_factory):
    args = ["--speculative", "ngram", "--gamma-max", "4", "--max-num-seqs", str(MAX_NUM_SEQS),
            "--max-queued-requests", str(MAX_QUEUED), "--request-timeout-seconds", str(TIMEOUT_S)]
    env = {"SPECGATE_API_KEYS": USER_KEY, "SPECGATE_ADMIN_API_KEYS": ADMIN_KEY}
    with running_gateway(args, env=env, log_dir=tmp_path_factory.mktemp("reliability-gateway")) as server:
        yield server
        # whatever the tests did, nothing may be left in the engine, nor admission slots held
        assert engine_settles(server), engine_load(server)
        assert "specgate_admission_sequences_in_flight 0.0" in httpx.get(f"{server.root_url}/metrics").text


@pytest.fixture
def anyio_backend():
    return "asyncio"


def engine_load(gateway) -> dict[str, float]:
    text = httpx.get(f"{gateway.root_url}/metrics", timeout=10).text
    wanted = {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:generation_tokens_total",
              "specgate_admission_sequences_in_flight", "specgate_admission_rejected_total", "specgate_request_timeouts_total"}
    load = dict.fromkeys(wanted, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                load[sample.name] += sample.value
    return load


def engine_settles(gateway, within_seconds: float = 10.0) -> bool:
    """True once the engine holds no request, running or waiting, and the gateway no admission slot.

    The slot of an aborted request is released a moment after the engine drops it; a test that
    starts before then would find one slot fewer than it counts on."""
    deadline = time.monotonic() + within_seconds
    while time.monotonic() < deadline:
        load = engine_load(gateway)
        if (load["vllm:num_requests_running"] == 0 and load["vllm:num_requests_waiting"] == 0
                and load["specgate_admission_sequences_in_flight"] == 0):
            return True
        time.sleep(0.2)
    return False


def wait_for_load(gateway, running: int, waiting: int = 0, within_seconds: float = 30.0) -> None:
    deadline = time.monotonic() + within_seconds
    while time.monotonic() < deadline:
        load = engine_load(gateway)
        if load["vllm:num_requests_running"] >= running and load["vllm:num_requests_waiting"] >= waiting:
            return
        time.sleep(0.1)
    raise AssertionError(f"engine never reached {running} running / {waiting} waiting: {engine_load(gateway)}")


def generated_tokens(gateway) -> float:
    return engine_load(gateway)["vllm:generation_tokens_total"]


def long_chat(stream: bool = True, max_tokens: int = LONG) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": "Tell a very long story about a lighthouse."}],
            "max_tokens": max_tokens, "ignore_eos": True, "stream": stream}


def assert_openai_error(response: httpx.Response, status: int | None = None) -> dict:
    if status is not None:
        assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["code"] == response.status_code and error["message"]
    return error


class OpenStream:
    """A streaming request held open on its own connection; `close()` drops the connection."""

    def __init__(self, gateway, body: dict):
        self.client = httpx.AsyncClient(timeout=60)
        self.request = self.client.build_request("POST", f"{gateway.base_url}/chat/completions", json=body, headers=AUTH)
        self.response: httpx.Response | None = None

    async def start(self, read_events: int = 0) -> OpenStream:
        self.response = await self.client.send(self.request, stream=True)
        self.lines = self.response.aiter_lines()
        for _ in range(read_events):
            await self.next_event()
        return self

    async def next_event(self) -> str:
        async for line in self.lines:
            if line.startswith("data: "):
                return line.removeprefix("data: ")
        raise EOFError

    async def rest(self) -> list[str]:
        return [line.removeprefix("data: ") async for line in self.lines if line.startswith("data: ")]

    async def close(self) -> None:
        if self.response is not None:
            await self.response.aclose()
        await self.client.aclose()


def raw_request(gateway, body: dict) -> socket.socket:
    """Send a request on a bare socket and leave it unread (close it to disconnect)."""
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", gateway.port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                 + f"Authorization: Bearer {USER_KEY}\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
    return sock


# -- auth ----------------------------------------------------------------------------------

def test_every_api_route_needs_a_key(gateway):
    schema = httpx.get(f"{gateway.root_url}/openapi.json").json()  # the schema itself is public
    routes = [(method.upper(), path) for path, item in schema["paths"].items() for method in item]
    api_routes = [(method, path) for method, path in routes if path.startswith("/v1/")]
    assert len(api_routes) >= 5, routes
    for method, path in api_routes + [("GET", "/v1/no-such-route"), ("DELETE", "/v1/models")]:
        for headers in ({}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": f"Basic {USER_KEY}"}):
            response = httpx.request(method, gateway.root_url + path, headers=headers, json={})
            assert_openai_error(response, 401)
            assert response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{gateway.root_url}/health").status_code == 200
    assert httpx.get(f"{gateway.root_url}/metrics").status_code == 200


def test_user_keys_open_the_api_and_only_admin_keys_change_the_policy(gateway):
    assert httpx.get(f"{gateway.base_url}/models", headers=AUTH).json()["data"][0]["id"] == MODEL
    policy = httpx.get(f"{gateway.base_url}/speculative", headers=AUTH).json()["policy"]
    forbidden = httpx.put(f"{gateway.base_url}/speculative", headers=AUTH, json={"policy": "off"})
    assert assert_openai_error(forbidden, 403)["type"] == "permission_error"
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert httpx.put(f"{gateway.base_url}/speculative", headers=admin, json={"policy": policy}).status_code == 200


# -- validation ----------------------------------------------------------------------------

def _chat(**fields):
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **fields}


MALFORMED = [
    # (id, path, request kwargs, status, text the message or param must contain)
    ("invalid-json", "/chat/completions", {"content": b'{"model": ', "headers": {"content-type": "application/json"}}, 400, "JSON"),
    ("not-an-object", "/chat/completions", {"json": [1, 2]}, 400, "dictionary"),
    ("wrong-content-type", "/chat/completions", {"content": json.dumps(_chat()).encode(), "headers": {"content-type": "text/plain"}}, 400, "application/json"),
    ("messages-not-a-list", "/chat/completions", {"json": _chat(messages="hi")}, 400, "messages"),
    ("temperature-a-string", "/chat/completions", {"json": _chat(temperature="hot")}, 400, "temperature"),
    ("unknown-model", "/chat/completions", {"json": _chat(model="gpt-99")}, 404, "gpt-99"),
    ("empty-messages", "/chat/completions", {"json": _chat(messages=[])}, 400, "empty"),
    ("bad-role", "/chat/completions", {"json": _chat(messages=[{"role": "wizard", "content": "hi"}])}, 400, "role"),
    ("user-without-content", "/chat/completions", {"json": _chat(messages=[{"role": "user"}])}, 400, "content"),
    ("negative-max-tokens", "/chat/completions", {"json": _chat(max_tokens=-1)}, 400, "max_tokens"),
    ("huge-max-tokens", "/chat/completions", {"json": _chat(max_tokens=10**15)}, 400, "max_model_len=2048"),
    ("n-too-large", "/chat/completions", {"json": _chat(n=3)}, 400, "at most 2"),
    ("n-zero", "/chat/completions", {"json": _chat(n=0)}, 400, "n must be at least 1"),
    ("batch-of-prompts-too-large", "/completions", {"json": {"model": MODEL, "prompt": ["a", "b", "c"], "max_tokens": 2}}, 400, "3 sequences"),
    ("unsupported-parameter", "/chat/completions", {"json": _chat(functions=[{"name": "f"}])}, 400, "'functions'"),
    ("removed-guided-decoding", "/completions", {"json": {"model": MODEL, "prompt": "a", "guided_json": {}}}, 400, "guided_json"),
    ("nan-temperature", "/chat/completions", {"content": json.dumps(_chat(temperature=float("nan"))).encode(), "headers": {"content-type": "application/json"}}, 400, "temperature"),
    ("body-over-the-limit", "/chat/completions", {"content": b" " * (8 * 1024 * 1024 + 1), "headers": {"content-type": "application/json"}}, 413, "limit"),
]


@pytest.mark.parametrize("path, kwargs, status, text", [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_requests_get_a_4xx_in_openai_shape(gateway, path, kwargs, status, text):
    kwargs = dict(kwargs)
    headers = {**AUTH, **kwargs.pop("headers", {})}
    response = httpx.post(gateway.base_url + path, headers=headers, timeout=60, **kwargs)
    error = assert_openai_error(response, status)
    assert text in error["message"] + str(error["param"]), error


@pytest.mark.parametrize("path, body", [
    ("/chat/completions", {"messages": [{"role": "user", "content": "lighthouse " * 3000}]}),
    ("/completions", {"prompt": "lighthouse " * 3000}),
    ("/completions", {"prompt": "lighthouse " * 3000, "stream": True}),
])
def test_a_prompt_longer_than_the_context_is_a_400_naming_the_limit(gateway, path, body):
    response = httpx.post(gateway.base_url + path, headers=AUTH, json={"model": MODEL, "max_tokens": 4, **body}, timeout=60)
    assert "maximum context length is 2048 tokens" in assert_openai_error(response, 400)["message"]


def _bounded_generation(body) -> None:
    """Requests the fuzzers make valid must finish well inside the deadline: cap their output."""
    if not isinstance(body, dict):
        return
    caps = [body.get(k) for k in ("max_tokens", "max_completion_tokens")]
    if any(type(v) is int and v <= 8 for v in caps):
        return
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is None or (type(value) is int and 8 < value <= 2048):
            body[key] = 8


def test_schemathesis_finds_no_server_error(gateway):
    """Every operation of the gateway's OpenAPI schema, valid and invalid data: never a 5xx,
    every error in OpenAI's shape."""
    import hypothesis
    import schemathesis
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{gateway.root_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /v1/chat/completions", "POST /v1/completions", "PUT /v1/speculative"}
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    seen: dict[int, int] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz_operation(operation, mode, gateway.root_url, headers, seen)
            except hypothesis.errors.Unsatisfiable:
                pass  # e.g. no invalid request exists for an operation without parameters
    assert seen.get(200, 0) > 0 and sum(v for k, v in seen.items() if 400 <= k < 500) > 0, seen


def _fuzz_operation(operation, mode, root_url: str, headers: dict, seen: dict[int, int]) -> None:
    from schemathesis import GenerationMode

    @settings(max_examples=40 if operation.method.upper() == "POST" else 5, deadline=None, database=None,
              derandomize=True, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case):
        if operation.label == "PUT /v1/speculative" and isinstance(case.body, dict) and mode is GenerationMode.POSITIVE:
            case.body["policy"] = "adaptive"  # a valid policy other than the running one would change other tests
        _bounded_generation(case.body)
        response = case.call(base_url=root_url, headers=headers, timeout=60)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (operation.label, case.body, response.text[:500])
        if response.status_code >= 400:
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}, (operation.label, error)

    check()


JSON_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "developer", "tool", "wizard", ""]) | JSON_JUNK},
    optional={"content": st.text(max_size=40) | JSON_JUNK, "name": st.text(max_size=8),
              "tool_calls": JSON_JUNK, "tool_call_id": st.text(max_size=8)},
)
CHAT_FIELDS = {
    "model": st.sampled_from([MODEL, "no-such-model", ""]) | JSON_JUNK,
    "messages": st.lists(MESSAGE, max_size=3) | JSON_JUNK,
    "n": st.integers(-2, 4) | JSON_JUNK,
    "temperature": st.floats(-1, 3) | JSON_JUNK,
    "top_p": st.floats(-0.5, 1.5) | JSON_JUNK,
    "top_k": st.integers(-2, 100) | JSON_JUNK,
    "stop": st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=6) | JSON_JUNK,
    "stream": st.booleans() | JSON_JUNK,
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}) | JSON_JUNK,
    "logprobs": st.booleans() | JSON_JUNK,
    "top_logprobs": st.integers(-1, 30) | JSON_JUNK,
    "seed": st.integers(-2**64, 2**64) | JSON_JUNK,
    "presence_penalty": st.floats(-3, 3) | JSON_JUNK,
    "logit_bias": st.dictionaries(st.integers(-5, 60000).map(str), st.floats(-200, 200), max_size=3) | JSON_JUNK,
    "response_format": st.sampled_from([{"type": "text"}, {"type": "json_object"}, {"type": "bogus"}]) | JSON_JUNK,
    "tools": JSON_JUNK,
    "tool_choice": st.sampled_from(["none", "auto", "required"]) | JSON_JUNK,
    "user": JSON_JUNK,
}
MAX_TOKENS = st.integers(-3, 12) | st.sampled_from([2049, 10**12, "8", 1.5, None, [], {}])


@settings(max_examples=300, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/chat/completions", "/completions"]),
       body=st.fixed_dictionaries({"max_tokens": MAX_TOKENS}, optional={**CHAT_FIELDS, "prompt": JSON_JUNK | st.text(max_size=30)})
       | JSON_JUNK)
def test_fuzzed_request_bodies_never_get_a_5xx(gateway, path, body):
    try:
        payload = json.dumps(body).encode()  # NaN and Infinity become invalid JSON: also fair input
    except ValueError:
        payload = b"{"
    response = httpx.post(gateway.base_url + path, content=payload, timeout=60,
                          headers={**AUTH, "content-type": "application/json"})
    assert response.status_code < 500, (body, response.text[:500])
    if response.status_code >= 400:
        assert_openai_error(response)


# -- overload ------------------------------------------------------------------------------

@pytest.mark.anyio
async def test_past_the_batch_and_the_queue_the_gateway_answers_429_and_recovers(gateway):
    assert await asyncio.to_thread(engine_settles, gateway), engine_load(gateway)
    capacity = MAX_NUM_SEQS + MAX_QUEUED
    opened = time.monotonic()
    streams = [await OpenStream(gateway, long_chat()).start() for _ in range(capacity)]
    try:
        # Refused by the gateway's own count, so asked at once: each stream ends at its deadline
        # (TIMEOUT_S after it opened), and a slot freed that way would admit this request.
        async with httpx.AsyncClient(timeout=60) as client:
            rejected = await client.post(f"{gateway.base_url}/chat/completions", headers=AUTH, json=long_chat(False, 4))
        asked_after = time.monotonic() - opened
        assert asked_after < TIMEOUT_S, f"opening {capacity} streams took {asked_after:.1f} s, past their deadline"
        assert rejected.status_code == 429, (rejected.text, engine_load(gateway))  # the load says whether a slot timed out
        assert assert_openai_error(rejected)["type"] == "rate_limit_error"
        assert int(rejected.headers["retry-after"]) >= 1
        # the slots are real: the engine holds the batch and the queue, and never more
        await asyncio.to_thread(wait_for_load, gateway, MAX_NUM_SEQS, MAX_QUEUED, opened + TIMEOUT_S - time.monotonic())
        load = await asyncio.to_thread(engine_load, gateway)
        assert load["vllm:num_requests_running"] <= MAX_NUM_SEQS
        assert load["vllm:num_requests_running"] + load["vllm:num_requests_waiting"] <= capacity
    finally:
        for stream in streams:
            await stream.close()
    assert await asyncio.to_thread(engine_settles, gateway)
    async with httpx.AsyncClient(timeout=60) as client:
        recovered = await client.post(f"{gateway.base_url}/chat/completions", headers=AUTH, json=long_chat(False, 4))
    assert recovered.status_code == 200


# -- disconnects ---------------------------------------------------------------------------

@pytest.mark.anyio
async def test_a_client_dropping_mid_stream_aborts_its_engine_request(gateway):
    before = generated_tokens(gateway)
    stream = await OpenStream(gateway, long_chat()).start(read_events=3)
    await stream.close()
    assert await asyncio.to_thread(engine_settles, gateway, 5.0), engine_load(gateway)
    assert generated_tokens(gateway) - before < LONG / 3


@pytest.mark.anyio
async def test_clients_dropping_before_their_first_token_abort_their_engine_requests(gateway):
    assert await asyncio.to_thread(engine_settles, gateway), engine_load(gateway)  # all 4 slots free
    before = generated_tokens(gateway)
    # two streams fill the batch, so the next requests wait in the engine's queue
    busy = [await OpenStream(gateway, long_chat()).start(read_events=1) for _ in range(MAX_NUM_SEQS)]
    try:
        queued_stream = raw_request(gateway, long_chat(stream=True))
        queued_whole = raw_request(gateway, long_chat(stream=False))
        await asyncio.to_thread(wait_for_load, gateway, MAX_NUM_SEQS, 2)
        queued_stream.close()
        queued_whole.close()
        deadline = time.monotonic() + 5
        while (await asyncio.to_thread(engine_load, gateway))["vllm:num_requests_waiting"] > 0:
            assert time.monotonic() < deadline, engine_load(gateway)
            await asyncio.sleep(0.1)
    finally:
        for stream in busy:
            await stream.close()
    assert await asyncio.to_thread(engine_settles, gateway, 5.0), engine_load(gateway)
    assert generated_tokens(gateway) - before < LONG


def test_a_client_dropping_a_non_streaming_request_aborts_it(gateway):
    before = generated_tokens(gateway)
    sock = raw_request(gateway, long_chat(stream=False))
    wait_for_load(gateway, 1)
    time.sleep(0.5)
    sock.close()
    assert engine_settles(gateway, 5.0), engine_load(gateway)
    assert generated_tokens(gateway) - before < LONG / 3


@pytest.mark.anyio
async def test_many_mixed_disconnects_leave_the_engine_empty(gateway):
    """Streams dropped after some tokens, streams and whole requests dropped while queued or
    running, and requests refused with 429, in one burst: the engine ends empty."""
    streams, sockets = [], []
    for i in range(12):
        if i % 3 == 0:
            sockets.append(raw_request(gateway, long_chat(stream=bool(i % 2))))
        else:
            streams.append(await OpenStream(gateway, long_chat()).start())  # some get 429: capacity is 4
    await asyncio.sleep(1.0)
    for stream in streams:
        if stream.response.status_code == 200:
            with contextlib.suppress(TimeoutError, EOFError):
                await asyncio.wait_for(stream.next_event(), 0.5)  # running ones have tokens by now
    for index, closable in enumerate(streams + sockets):
        await closable.close() if isinstance(closable, OpenStream) else closable.close()
        if index % 4 == 0:
            await asyncio.sleep(0.1)
    assert await asyncio.to_thread(engine_settles, gateway, 10.0), engine_load(gateway)
    assert any(stream.response.status_code == 429 for stream in streams)


# -- deadlines -----------------------------------------------------------------------------

@pytest.mark.anyio
async def test_requests_past_the_deadline_are_aborted_with_504(gateway):
    async def whole():
        async with httpx.AsyncClient(timeout=60) as client:
            return await client.post(f"{gateway.base_url}/chat/completions", headers=AUTH, json=long_chat(False))

    async def streamed():
        stream = await OpenStream(gateway, long_chat()).start()
        try:
            return stream.response.status_code, await stream.rest()
        finally:
            await stream.close()

    started = time.monotonic()
    response, (stream_status, events) = await asyncio.gather(whole(), streamed())
    assert TIMEOUT_S - 0.5 < time.monotonic() - started < TIMEOUT_S + 10
    error = assert_openai_error(response, 504)
    assert error["type"] == "timeout_error" and f"{TIMEOUT_S} s" in error["message"]
    assert stream_status == 200 and events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["code"] == 504
    assert len(events) > 3  # tokens streamed before the deadline
    assert await asyncio.to_thread(engine_settles, gateway, 5.0), engine_load(gateway)


# -- soak ----------------------------------------------------------------------------------

@pytest.mark.anyio
async def test_a_short_soak_loses_and_leaks_nothing(gateway):
    """loadtests/soak.py's mix (streams, whole requests, drops, bad requests, 429s) for 20 s."""
    from loadtests.soak import Soak, scrape

    soak = Soak(gateway.base_url, MODEL, USER_KEY, seed=7, request_timeout=60, max_tokens=(4, 24))
    await soak.run(20 / 60, 8, lambda _: None)
    account = soak.account
    assert account.lost == 0, account.lost_reasons
    assert account.bad_accepted == 0, account.bad_accepted_kinds
    assert account.completed > 0 and account.disconnected > 0 and account.rejected_4xx
    assert await asyncio.to_thread(engine_settles, gateway)
    assert scrape(gateway.root_url)["specgate_admission_sequences_in_flight"] == 0
