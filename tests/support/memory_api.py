"""The memory API tests' shared pieces: keys, the app over the real engine (opened once per test module and
emptied before each test), a client per key, and small helpers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from memory import MemoryConfig, MemoryEngine
from proxy.app import create_app
from proxy.auth import hash_key
from proxy.settings import Settings

KEYS = {
    "acme-svc": {"tenant": "acme", "user": "acme-svc", "trusted": True},
    "acme-alice": {"tenant": "acme", "user": "alice"},
    "acme-bob": {"tenant": "acme", "user": "bob"},
    "globex-alice": {"tenant": "globex", "user": "alice"},
    "ops-admin": {"tenant": "ops", "user": "ops", "admin": True},
}
Api = Callable[[str], httpx.AsyncClient]


def no_upstream(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"the memory API called the upstream: {request.url}")


def build_app(settings: Settings, engine: MemoryEngine | None) -> FastAPI:
    upstream = httpx.AsyncClient(transport=httpx.MockTransport(no_upstream))
    return create_app(settings, http_client=upstream, memory=engine)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MemoryEngine]:
    engine = await MemoryEngine.open(MemoryConfig(data_dir=tmp_path_factory.mktemp("memory-api") / "mem"))
    try:
        yield engine
    finally:
        await engine.close()


@pytest_asyncio.fixture(loop_scope="module")
async def empty_engine(engine: MemoryEngine) -> MemoryEngine:
    for scope in await engine.users():
        await engine.forget_user(scope.user, tenant=scope.tenant)
    return engine


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps([{"sha256": hash_key(k), "name": k, **v} for k, v in KEYS.items()]))
    return Settings(upstream_url="http://upstream.test/v1", keys_file=keys_file, data_dir=tmp_path, cache_salt=False)


@pytest_asyncio.fixture(loop_scope="module")
async def api(empty_engine: MemoryEngine, settings: Settings) -> AsyncIterator[Api]:
    """``api("acme-alice")``: a client of the real app that sends that key."""
    app = build_app(settings, empty_engine)
    transport = httpx.ASGITransport(app=app)
    opened: list[httpx.AsyncClient] = []

    def client(key: str) -> httpx.AsyncClient:
        opened.append(
            httpx.AsyncClient(
                transport=transport, base_url="http://proxy.test", headers={"authorization": f"Bearer {key}"}
            )
        )
        return opened[-1]

    yield client
    for each in opened:
        await each.aclose()


async def add(client: httpx.AsyncClient, content: str, **fields: Any) -> dict[str, Any]:
    response = await client.post("/v1/memories", json={"content": content, **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def state(engine: MemoryEngine) -> tuple[int, int, dict[str, Any]]:
    """Everything a request could have changed: the change log, the queue, every scope's export."""
    exports = {s.key: await engine.export(s.user, tenant=s.tenant) for s in await engine.users()}
    return await engine.last_change(), (await engine.write_queue_stats()).depth, exports


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if code is not None:
        assert error["code"] == code
    return error
