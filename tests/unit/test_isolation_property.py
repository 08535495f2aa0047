"""Property: whatever a request sends (body ``user``, user headers, another tenant's cache salt), and however
requests of many users and tenants interleave, the prompt that reaches the upstream holds memories of the request's
own scope only — checked over the real memory engine, with adversarial queries that name every other scope's secrets.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory import MemoryConfig, MemoryEngine
from proxy.app import create_app
from proxy.auth import hash_key
from proxy.settings import Settings
from tests.support.upstreams import RecordingUpstream

KEYS = {
    "t1-svc": {"tenant": "t1", "trusted": True},
    "t1-own": {"tenant": "t1", "user": "t1-own"},
    "t2-svc": {"tenant": "t2", "trusted": True},
    "t2-own": {"tenant": "t2", "user": "t2-own"},
}
USERS = ("ann", "ben", "cy")
SECRET = re.compile(r"zq[a-z]{6}\d+")

request_strategy = st.tuples(
    st.sampled_from(sorted(KEYS)),
    st.sampled_from(USERS),
    st.sampled_from(("body", "header", "none")),
    st.booleans(),  # True: tell a secret; False: ask (naming every secret seen so far)
)


class Harness:
    """One engine and one app for the whole property run; each example is one interleaving."""

    def __init__(self, tmp: Path) -> None:
        self.runner = asyncio.Runner()
        self.upstream = RecordingUpstream()
        self.owner: dict[str, tuple[str, str]] = {}
        self.counter = itertools.count()
        keys_file = tmp / "keys.json"
        keys_file.write_text(json.dumps([{"sha256": hash_key(k), **v} for k, v in KEYS.items()]))
        self.engine = self.runner.run(MemoryEngine.open(MemoryConfig(data_dir=tmp / "mem")))
        config = Settings(upstream_url="http://upstream.test/v1", keys_file=keys_file, data_dir=tmp / "proxy")
        self.app = create_app(config, http_client=httpx.AsyncClient(transport=self.upstream.transport()), memory=self.engine)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://proxy.test")

    def close(self) -> None:
        self.runner.run(self.client.aclose())
        self.runner.run(self.engine.close())
        self.runner.close()

    async def send(self, key: str, user: str, how: str, tell: bool) -> tuple[str, str]:
        own_user = KEYS[key].get("user", f"key-{hash_key(key)[:12]}")
        asserted = KEYS[key].get("trusted") and how != "none"
        expected_scope = (KEYS[key]["tenant"], user if asserted else own_user)
        body: dict[str, Any] = {}
        headers = {"authorization": f"Bearer {key}"}
        if how == "body":
            body["user"] = user
        elif how == "header":
            headers["x-openwebui-user-id"] = user
        if tell:
            secret = f"zq{'abcdefghij'[next(self.counter) % 10] * 6}{next(self.counter)}"
            self.owner[secret] = expected_scope
            text = f"Remember that my code word is {secret}"
        else:
            text = "What are my code words? " + " ".join(sorted(self.owner))
            body["memproxy"] = {"write": False}  # the question names every secret: it must not become a memory
        body["messages"] = [{"role": "user", "content": text}]
        response = await self.client.post("/v1/chat/completions", json=body, headers=headers)
        assert response.status_code == 200, response.text
        await self.app.state.chat_memory.drain()
        await self.engine.flush()
        return expected_scope, text


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    harness = Harness(tmp_path_factory.mktemp("isolation"))
    yield harness
    harness.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=st.lists(request_strategy, min_size=2, max_size=8))
def test_prompts_only_ever_carry_the_requests_own_scope(harness: Harness, requests: list[tuple[str, str, str, bool]]) -> None:
    for key, user, how, tell in requests:
        scope, own_text = harness.runner.run(harness.send(key, user, how, tell))
        sent = json.loads(harness.upstream.chats[-1].content)
        injected = json.dumps(sent["messages"]).replace(json.dumps(own_text)[1:-1], "")
        for secret in SECRET.findall(injected):
            assert harness.owner[secret] == scope, f"{secret} of {harness.owner[secret]} reached {scope}"
