"""The chat-memory test harness: the real app and memory engine (SQLite, FAISS, BM25, ONNX MiniLM, durable queue)
in front of a scripted upstream (httpx.MockTransport), keys for two tenants, and small helpers to chat and settle."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from memory import MemoryEngine
from proxy.app import create_app
from proxy.auth import hash_key
from proxy.settings import Settings

KEYS = {
    "acme-svc": {"tenant": "acme", "trusted": True},
    "acme-bob": {"tenant": "acme", "user": "bob"},
    "globex-svc": {"tenant": "globex", "trusted": True},
    "acme-per-user": {"tenant": "acme", "trusted": True, "cache_salt": "user"},
}


def auth(key: str, **headers: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", **headers}


def prompt_text(body: dict[str, Any]) -> str:
    return json.dumps(body["messages"], ensure_ascii=False)


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([{"sha256": hash_key(k), "name": k, **v} for k, v in KEYS.items()]))
    return path


@pytest.fixture
async def proxy(engine, keys_file, tmp_path, upstream) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    apps = []

    def build(**settings: Any) -> httpx.AsyncClient:
        config = Settings(
            upstream_url="http://upstream.test/v1",
            default_model="m",
            keys_file=keys_file,
            data_dir=tmp_path / "proxy",
            **settings,
        )
        app = create_app(config, http_client=httpx.AsyncClient(transport=upstream.transport()), memory=engine)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test")
        apps.append((app, client))
        return client

    yield build
    for app, client in apps:
        await app.state.chat_service.prefill.runner.drain()
        await app.state.chat_memory.drain()
        await client.aclose()


def app_of(client: httpx.AsyncClient) -> Any:
    return client._transport.app  # type: ignore[attr-defined]


async def settle(client: httpx.AsyncClient, engine: MemoryEngine) -> None:
    """Wait until the background work after the last answer is done: its next-turn prefill, and its write queued,
    then applied."""
    await app_of(client).state.chat_service.prefill.runner.drain()
    await app_of(client).state.chat_memory.drain()
    await engine.flush()


async def chat(client: httpx.AsyncClient, key: str, text: str, *, user: str | None = None, **extra: Any) -> httpx.Response:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": text}], **extra}
    if user is not None:
        body["user"] = user
    headers = extra.pop("headers", None) or {}
    body.pop("headers", None)
    return await client.post("/v1/chat/completions", json=body, headers=auth(key, **headers))
