from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from proxy.app import create_app
from proxy.settings import Settings
from tests.support.chat_memory import keys_file, proxy  # noqa: F401 - fixtures of the chat-memory tests
from tests.support.upstreams import RecordingUpstream

ClientFactory = Callable[..., httpx.AsyncClient]


@pytest.fixture
def upstream() -> RecordingUpstream:
    return RecordingUpstream()


@pytest.fixture
async def make_client(upstream: RecordingUpstream, tmp_path) -> AsyncIterator[ClientFactory]:
    """Build the real app around a MockTransport upstream; talk to it in-process through ASGITransport. Memory is
    off unless a test turns it on (nothing opens an engine here: the app's start-up does not run)."""
    opened: list[httpx.AsyncClient] = []

    def factory(**settings: object) -> httpx.AsyncClient:
        settings.setdefault("data_dir", tmp_path / "data")
        settings.setdefault("memory_enabled", False)
        config = Settings(upstream_url="http://upstream.test/v1", default_model="default-model", **settings)
        app = create_app(config, http_client=httpx.AsyncClient(transport=upstream.transport()))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://proxy.test")
        opened.append(client)
        return client

    yield factory
    for client in opened:
        await client.aclose()


@pytest.fixture
def client(make_client: ClientFactory) -> httpx.AsyncClient:
    return make_client()
