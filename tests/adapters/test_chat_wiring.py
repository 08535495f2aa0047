"""The chat path with adapters on: the app routes a user with a ready adapter to it, others to the base model, and
retries once after vLLM lost the adapter. The upstream is an ``httpx.MockTransport`` here (exact control of the
404); the same against the real vLLM is tests/integration/test_adapters.py."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from adapters.registry import AdapterRegistry
from adapters.routing import ADAPTER_HEADER
from memory import Scope
from proxy.app import create_app
from proxy.settings import Settings

BASE = "base-model"


class Upstream:
    def __init__(self) -> None:
        self.chat_models: list[str] = []
        self.loads: list[dict[str, object]] = []
        self.lost_once = False

    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == "/v1/load_lora_adapter":
            self.loads.append(body)
            return httpx.Response(200, text="Success")
        model = body["model"]
        self.chat_models.append(model)
        if self.lost_once and model != BASE:
            self.lost_once = False
            error = {"message": f"The model `{model}` does not exist.", "type": "NotFoundError", "code": 404}
            return httpx.Response(404, json={"error": error})
        answer = {"id": "c1", "choices": [{"index": 0, "message": {"role": "assistant", "content": model}}]}
        return httpx.Response(200, json=answer)


async def test_chats_are_routed_to_the_users_adapter(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "adapters" / "registry.sqlite3")
    version = await registry.begin_version(Scope("default", "alice"), BASE, tmp_path / "adapters")
    version.path.mkdir()
    await registry.publish(version, {})
    upstream = Upstream()
    settings = Settings(
        upstream_url="http://upstream.test/v1", default_model=BASE, data_dir=tmp_path, memory_enabled=False,
        adapters_enabled=True, adapters_dir=tmp_path / "adapters", api_keys=["k"],
    )
    app = create_app(settings, http_client=httpx.AsyncClient(transport=httpx.MockTransport(upstream.handle)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as client:

        async def ask(user: str) -> httpx.Response:
            body = {"model": BASE, "user": user, "messages": [{"role": "user", "content": "hi"}]}
            return await client.post("/v1/chat/completions", json=body, headers={"authorization": "Bearer k"})

        alice = await ask("alice")
        bob = await ask("bob")
        upstream.lost_once = True  # vLLM restarted: it answers 404 for the adapter once
        again = await ask("alice")
    assert alice.status_code == 200 and alice.headers[ADAPTER_HEADER] == f"{version.name} v1"
    assert alice.json()["choices"][0]["message"]["content"] == version.name
    assert bob.json()["choices"][0]["message"]["content"] == BASE and ADAPTER_HEADER not in bob.headers
    assert again.status_code == 200 and again.json()["choices"][0]["message"]["content"] == version.name
    assert len(upstream.loads) == 2  # loaded, then loaded again after the 404
    assert upstream.chat_models == [version.name, BASE, version.name, version.name]
