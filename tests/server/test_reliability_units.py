"""Auth, admission, deadlines, body limit, engine-death answers and the watchdog, without an engine.

The middlewares wrap small stand-in apps that behave as vLLM's serving layer does where it
matters: a non-streaming handler that is cancelled on disconnect (vLLM's `with_cancellation`)
and a streaming response that listens for the disconnect (Starlette's `StreamingResponse`).
"""

import asyncio
import json
import signal
import types

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from server.admission import Admission, AdmissionMiddleware, admit_sequences
from server.auth import (
    AuthMiddleware,
    KeyRing,
    bearer_token,
    is_loopback_host,
    parse_keys,
)
from server.errors import SpecgateError, install_error_handlers
from server.lifecycle import ENGINE_DEAD_EXIT_STATUS, watch_engine
from server.settings import ServeSettings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def assert_openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == status and error["message"]
    return error


# -- keys ----------------------------------------------------------------------------------

def test_keys_from_env_flags_and_files(tmp_path, monkeypatch):
    key_file = tmp_path / "keys"
    key_file.write_text("# team keys\nfile-key-1\n\n  file-key-2  # laptop\n")
    monkeypatch.setenv("SPECGATE_API_KEYS", "env-key-1, env-key-2,")
    settings = ServeSettings(_cli_parse_args=["--api-key-file", str(key_file), "--admin-api-keys", "boss"])
    keys = KeyRing.from_settings(settings)
    assert keys.enabled and len(keys.user_digests) == 4 and len(keys.admin_digests) == 1
    assert keys.check("env-key-2") == (True, False)
    assert keys.check(b"file-key-2") == (True, False)
    assert keys.check("boss") == (True, True)
    assert keys.check("env-key") == (False, False)
    assert "boss" not in repr(settings)  # keys are secrets in the settings' repr


def test_missing_key_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot read API key file"):
        KeyRing.from_settings(ServeSettings(api_key_file=tmp_path / "absent"))


def test_no_keys_means_auth_off():
    assert not KeyRing.from_settings(ServeSettings()).enabled
    assert parse_keys(" , ,\n# only a comment\n") == []


@pytest.mark.parametrize("header, token", [
    (b"Bearer abc", b"abc"), (b"bearer  abc ", b"abc"), (b"Basic abc", None), (b"Bearer", None), (b"Bearer ", None),
])
def test_bearer_token_parsing(header, token):
    assert bearer_token({"headers": [(b"authorization", header)]}) == token


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("example.com", False), ("", False),
])
def test_loopback_hosts(host, loopback):
    assert is_loopback_host(host) is loopback


def test_serve_refuses_a_remote_bind_without_keys(capsys, monkeypatch):
    from server.serve import main

    monkeypatch.delenv("SPECGATE_API_KEYS", raising=False)
    assert main(["--host", "0.0.0.0"]) == 2  # returns before anything is started
    assert "refusing to serve '0.0.0.0' without API keys" in capsys.readouterr().err


# -- auth middleware -----------------------------------------------------------------------

def _routes_app() -> FastAPI:
    app = FastAPI()
    for path in ("/v1/models", "/v1/speculative", "/health", "/metrics", "/openapi-extra"):
        app.add_api_route(path, lambda: {"ok": True}, methods=["GET"])
    app.add_api_route("/v1/speculative", lambda: {"ok": True}, methods=["PUT"])
    return app


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


async def _auth_client(metrics_require_auth=False, admin=("boss",)) -> httpx.AsyncClient:
    keys = KeyRing.from_settings(ServeSettings(api_keys="user", admin_api_keys=",".join(admin) or None))
    return _client(AuthMiddleware(_routes_app(), keys, metrics_require_auth=metrics_require_auth))


async def test_auth_rejects_missing_wrong_and_non_bearer_keys():
    async with await _auth_client() as client:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic user"},
                        {"Authorization": "user"}, {"Authorization": "Bearer user2"}):
            response = await client.get("/v1/models", headers=headers)
            error = assert_openai_error(response, 401)
            assert error["type"] == "authentication_error"
            assert response.headers["www-authenticate"] == "Bearer"
        assert (await client.get("/v1/models", headers={"Authorization": "Bearer user"})).status_code == 200
        # unknown routes need a key too: no probing for what exists
        assert (await client.get("/v1/secret-route")).status_code == 401
        assert (await client.get("/openapi-extra")).status_code == 401


async def test_admin_routes_need_an_admin_key():
    async with await _auth_client() as client:
        user, boss = {"Authorization": "Bearer user"}, {"Authorization": "Bearer boss"}
        assert (await client.get("/v1/speculative", headers=user)).status_code == 200
        assert assert_openai_error(await client.put("/v1/speculative", headers=user), 403)["type"] == "permission_error"
        assert (await client.put("/v1/speculative/", headers=user)).status_code == 403
        assert (await client.put("/v1/speculative", headers=boss)).status_code == 200
        assert (await client.get("/v1/models", headers=boss)).status_code == 200  # admin keys open everything
    async with await _auth_client(admin=()) as client:  # keys but no admin key: admin routes closed
        assert (await client.put("/v1/speculative", headers={"Authorization": "Bearer user"})).status_code == 403


async def test_health_is_open_and_metrics_configurable():
    async with await _auth_client() as client:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
    async with await _auth_client(metrics_require_auth=True) as client:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers={"Authorization": "Bearer user"})).status_code == 200


async def test_without_keys_everything_is_open():
    app = AuthMiddleware(_routes_app(), KeyRing.from_settings(ServeSettings()))
    async with _client(app) as client:
        assert (await client.put("/v1/speculative")).status_code == 200


# -- admission, deadline, body limit, engine death -----------------------------------------

class FakeEngine:
    def __init__(self):
        self.errored = False


class Backend:
    """Stand-in for the serving layer behind the admission middleware."""

    def __init__(self, admission: Admission):
        self.admission = admission
        self.release = asyncio.Event()
        self.aborted = 0
        self.fail_with_500 = False
        self.stream_error = False
        self.app = FastAPI()
        install_error_handlers_light(self.app)
        self.app.add_api_route("/v1/chat/completions", self.chat, methods=["POST"])
        self.app.add_api_route("/v1/completions", self.chat, methods=["POST"])
        self.app.add_api_route("/v1/models", lambda: {"ok": True}, methods=["GET"])

    async def chat(self, raw_request: Request):
        body = await raw_request.json()
        admit_sequences(raw_request.scope, self.admission, body.get("n", 1))
        if body.get("stream"):
            return StreamingResponse(self._stream(), media_type="text/event-stream")
        return await _cancel_on_disconnect(raw_request, self._whole())

    async def _whole(self):
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.aborted += 1
            raise
        if self.fail_with_500:
            return JSONResponse({"error": {"message": "x", "type": "x", "param": None, "code": 500}}, 500)
        return JSONResponse({"ok": True})

    async def _stream(self):
        try:
            yield 'data: {"n": 0}\n\n'
            if self.stream_error:  # the engine dies mid-stream; vLLM's layer sends its error event
                self.admission.engine.errored = True
                yield 'data: {"error": {"message": "EngineCore encountered an issue.", "code": 500}}\n\n'
                yield "data: [DONE]\n\n"
                return
            await self.release.wait()
            yield "data: [DONE]\n\n"
        except (asyncio.CancelledError, GeneratorExit):
            self.aborted += 1
            raise


def install_error_handlers_light(app: FastAPI) -> None:
    from server.errors import _specgate_error_handler

    app.add_exception_handler(SpecgateError, _specgate_error_handler)


async def _cancel_on_disconnect(request: Request, work):
    """vLLM's `with_cancellation`: the handler races a listener for http.disconnect."""
    handler = asyncio.ensure_future(work)

    async def disconnected():
        while (await request.receive())["type"] != "http.disconnect":
            pass

    listener = asyncio.ensure_future(disconnected())
    done, pending = await asyncio.wait([handler, listener], return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return handler.result() if handler in done else None


def _stack(max_num_seqs=2, **settings) -> tuple[Backend, Admission, FakeEngine, AdmissionMiddleware]:
    admission = Admission(ServeSettings(**settings))
    engine = FakeEngine()
    admission.attach(engine, max_num_seqs)
    backend = Backend(admission)
    return backend, admission, engine, AdmissionMiddleware(backend.app, admission)


def test_capacity_is_the_batch_plus_the_queue():
    _, admission, _, _ = _stack(max_num_seqs=8)
    assert admission.capacity == 16  # default queue: one more batch
    _, admission, _, _ = _stack(max_num_seqs=8, max_queued_requests=0)
    assert admission.capacity == 8


async def test_overload_is_a_429_with_retry_after_and_slots_come_back():
    backend, admission, _, app = _stack(max_num_seqs=1, max_queued_requests=1, retry_after_seconds=3)
    async with _client(app) as client:
        held = [asyncio.create_task(client.post("/v1/chat/completions", json={})) for _ in range(2)]
        while admission.in_flight < 2:
            await asyncio.sleep(0.01)
        response = await client.post("/v1/chat/completions", json={})
        assert assert_openai_error(response, 429)["type"] == "rate_limit_error"
        assert response.headers["retry-after"] == "3"
        assert (await client.get("/v1/models")).status_code == 200  # only generation is admitted
        backend.release.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
        assert admission.in_flight == 0
        assert (await client.post("/v1/chat/completions", json={})).status_code == 200


async def test_a_stream_holds_its_slots_until_it_ends():
    backend, admission, _, app = _stack(max_num_seqs=2, max_queued_requests=0)
    async with _client(app) as client:
        stream = asyncio.create_task(client.post("/v1/chat/completions", json={"stream": True, "n": 2}))
        while admission.in_flight < 2:
            await asyncio.sleep(0.01)
        assert (await client.post("/v1/chat/completions", json={})).status_code == 429
        backend.release.set()
        assert (await stream).text.endswith("data: [DONE]\n\n")
        assert admission.in_flight == 0


async def test_n_beyond_the_batch_is_a_400_and_beyond_free_slots_a_429():
    backend, admission, _, app = _stack(max_num_seqs=2, max_queued_requests=1)
    async with _client(app) as client:
        error = assert_openai_error(await client.post("/v1/chat/completions", json={"n": 3}), 400)
        assert error["param"] == "n" and "at most 2" in error["message"]
        held = asyncio.create_task(client.post("/v1/chat/completions", json={"n": 2}))
        while admission.in_flight < 2:
            await asyncio.sleep(0.01)
        assert (await client.post("/v1/chat/completions", json={"n": 2})).status_code == 429
        assert admission.in_flight == 2  # the rejected request gave its first slot back
        backend.release.set()
        await held
        assert admission.in_flight == 0


async def test_deadline_aborts_a_whole_response_with_504():
    backend, admission, _, app = _stack(request_timeout_seconds=0.3)
    async with _client(app) as client:
        error = assert_openai_error(await client.post("/v1/chat/completions", json={}), 504)
        assert error["type"] == "timeout_error" and "0.3 s" in error["message"]
    await asyncio.sleep(0.05)  # the cancelled handler runs its cleanup on the next turns of the loop
    assert backend.aborted == 1 and admission.in_flight == 0


async def test_deadline_ends_a_stream_with_an_error_event():
    backend, admission, _, app = _stack(request_timeout_seconds=0.3)
    async with _client(app) as client:
        response = await client.post("/v1/chat/completions", json={"stream": True})
    assert response.status_code == 200
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[0] == '{"n": 0}' and events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["code"] == 504
    assert backend.aborted == 1 and admission.in_flight == 0


async def test_body_over_the_limit_is_a_413():
    backend, _, _, app = _stack(max_body_bytes=1024)
    async with _client(app) as client:
        big = b'{"pad": "' + b"x" * 2000 + b'"}'
        assert_openai_error(await client.post("/v1/chat/completions", content=big), 413)

        async def chunked():
            for _ in range(3):
                yield b"x" * 600

        assert_openai_error(await client.post("/v1/chat/completions", content=chunked()), 413)

        async def small_chunks():
            yield b'{"n":'
            yield b" 1}"

        backend.release.set()
        assert (await client.post("/v1/chat/completions", content=small_chunks())).status_code == 200


async def test_dead_engine_means_503_for_new_and_in_flight_requests():
    backend, admission, engine, app = _stack()
    async with _client(app) as client:
        whole = asyncio.create_task(client.post("/v1/chat/completions", json={}))
        while admission.in_flight < 1:
            await asyncio.sleep(0.01)
        engine.errored = True
        backend.fail_with_500 = True  # what vLLM's serving layer answers when the engine dies
        backend.release.set()
        error = assert_openai_error(await whole, 503)
        assert error["type"] == "service_unavailable" and "engine" in error["message"]
        for path in ("/v1/chat/completions", "/v1/models"):
            assert_openai_error(await client.post(path, json={}) if "chat" in path else await client.get(path), 503)
    assert admission.in_flight == 0


async def test_dead_engine_rewrites_a_streams_error_event_into_503():
    backend, _, engine, app = _stack()
    backend.stream_error = True
    async with _client(app) as client:
        response = await client.post("/v1/chat/completions", json={"stream": True})
    assert engine.errored and response.status_code == 200
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    assert json.loads(events[-2])["error"]["code"] == 503


# -- routing errors in OpenAI shape --------------------------------------------------------

async def test_unknown_routes_and_methods_answer_in_openai_shape():
    app = FastAPI()
    install_error_handlers(app)
    app.add_api_route("/v1/models", lambda: {"ok": True}, methods=["GET"])
    async with _client(app) as client:
        assert_openai_error(await client.get("/v1/nope"), 404)
        response = await client.post("/v1/models")
        assert_openai_error(response, 405)
        assert response.headers["allow"] == "GET"


# -- engine watchdog -----------------------------------------------------------------------

async def _watch(engine, *, exit_on_death, shutting_down=False):
    server = types.SimpleNamespace(should_exit=shutting_down, signalled=shutting_down)
    state = types.SimpleNamespace(server=server)
    task = asyncio.create_task(watch_engine(engine, state, exit_on_death=exit_on_death))
    await asyncio.sleep(0.3)
    assert not task.done() and not hasattr(state, "engine_died")
    engine.errored = True
    await asyncio.wait_for(task, 5)
    return state, server


async def test_watchdog_stops_the_server_with_a_failure_status_when_the_engine_dies():
    state, server = await _watch(FakeEngine(), exit_on_death=True)
    assert state.engine_died and server.should_exit and state.exit_status == ENGINE_DEAD_EXIT_STATUS != 0


async def test_watchdog_can_keep_serving_503s():
    state, server = await _watch(FakeEngine(), exit_on_death=False)
    assert state.engine_died and not server.should_exit and not hasattr(state, "exit_status")


async def test_engine_stopping_during_a_signalled_shutdown_is_not_a_failure():
    state, _ = await _watch(FakeEngine(), exit_on_death=True, shutting_down=True)
    assert not hasattr(state, "exit_status")


def test_reap_ends_leftover_processes_even_if_they_ignore_sigterm():
    import subprocess
    import sys

    import psutil

    from server.lifecycle import reap

    stubborn = subprocess.Popen([sys.executable, "-c",
                                 "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)"],
                                stdout=subprocess.PIPE)
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stubborn.stdout.readline()  # its SIGTERM handler is in place
    processes = [psutil.Process(stubborn.pid), psutil.Process(polite.pid)]
    assert reap(processes, grace_seconds=0.5) == 2
    stubborn.wait(5), polite.wait(5)  # both ended (reap them: a dead child stays a zombie until then)
    assert stubborn.returncode == -signal.SIGKILL
    assert reap(processes) == 0
