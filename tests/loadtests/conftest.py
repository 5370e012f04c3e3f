from __future__ import annotations

from collections.abc import Iterator

import pytest
from loadtest_fake_server import FakeOpenAIServer


@pytest.fixture(scope="session")
def fake_server_session() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer.start()
    yield server
    server.stop()


@pytest.fixture()
def fake_server(fake_server_session: FakeOpenAIServer) -> FakeOpenAIServer:
    fake_server_session.reset()
    return fake_server_session
