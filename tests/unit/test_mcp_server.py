"""The MCP server at ``/mcp``, through the SDK's own client (``ClientSession`` over streamable HTTP) against a real
uvicorn serving the real app and memory engine; only the model server is scripted. The memory API's keys and scope
rules, its answers as the tools' results and its errors as tool errors, the profile resource, and memory shared both
ways with the user's chats."""

# ruff: noqa: F811 - the shared fixtures are imported from tests.support.memory_api, then requested by name
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import httpx2
import pytest
import pytest_asyncio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from memory import MemoryEngine
from proxy.settings import Settings
from tests.support.chat_memory import prompt_text
from tests.support.mcp_client import Served, call, chat, mcp_session, read_json, serve, settle, tool_error
from tests.support.memory_api import build_app, empty_engine, engine, settings  # noqa: F401 - fixtures

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parents[2]
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@pytest_asyncio.fixture(loop_scope="module")
async def served(empty_engine: MemoryEngine, settings: Settings) -> AsyncIterator[Served]:
    async with serve(settings, empty_engine) as served:
        yield served


# --- keys ---------------------------------------------------------------------------------------------------------


async def test_no_key_or_an_unknown_key_is_a_401_before_mcp(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url, headers=MCP_HEADERS) as client:
        for headers, code in (({}, "missing_api_key"), ({"authorization": "Bearer sk-nope"}, "invalid_api_key")):
            response = await client.post("/mcp", json=INITIALIZE, headers=headers)
            assert response.status_code == 401, response.text
            assert response.headers["www-authenticate"] == "Bearer"
            error = response.json()["error"]  # the OpenAI shape, from proxy/errors.py
            assert set(error) == {"message", "type", "param", "code"} and error["message"]
            assert (error["type"], error["code"]) == ("invalid_request_error", code)
        response = await client.post("/mcp", json=INITIALIZE, headers={"authorization": "Bearer acme-alice"})
        assert response.status_code == 200, response.text
        assert response.json()["result"]["serverInfo"]["name"] == "memproxy"

    with pytest.raises(BaseExceptionGroup) as raised:  # the SDK's client does not get past the handshake either
        async with mcp_session(served.url, "sk-nope"):
            pass
    assert raised.group_contains(MCPError, match="Server returned an error response")


async def test_before_the_app_starts_mcp_answers_503(empty_engine: MemoryEngine, settings: Settings) -> None:
    app = build_app(settings, empty_engine)  # no lifespan: the session manager is not running
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as client:
        response = await client.post(
            "/mcp", json=INITIALIZE, headers=MCP_HEADERS | {"authorization": "Bearer acme-bob"}
        )
    assert response.status_code == 503 and response.json()["error"]["code"] == "service_unavailable"


async def test_building_the_app_leaves_the_root_logger_alone(settings: Settings) -> None:
    """The SDK's MCPServer calls logging.basicConfig; the proxy's logging is its own (proxy.observability)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers[:] = []
    try:
        build_app(settings, None)
        assert root.handlers == [] and root.level == level
    finally:
        root.handlers[:] = handlers


# --- the tools and the profile ----------------------------------------------------------------------------------


async def test_the_tools_and_the_profile_are_listed_with_their_schemas(served: Served) -> None:
    async with mcp_session(served.url, "acme-alice") as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        resources = [str(r.uri) for r in (await session.list_resources()).resources]
        templates = [t.uri_template for t in (await session.list_resource_templates()).resource_templates]
    assert set(tools) == {
        "search_memories", "add_memory", "list_memories", "update_memory", "forget_memory", "memory_history",
    }  # fmt: skip
    assert tools["search_memories"].input_schema["required"] == ["query"]
    assert tools["search_memories"].output_schema["properties"]["data"]["type"] == "array"
    assert tools["forget_memory"].annotations.destructive_hint is True
    assert tools["list_memories"].annotations.read_only_hint is True
    assert resources == ["memory://profile"] and templates == ["memory://profile/{user}"]


async def test_each_tool_answers_with_the_memory_apis_json(served: Served) -> None:
    async with mcp_session(served.url, "acme-alice") as session:
        cat = await call(session, "add_memory", text="My cat is called Tama", metadata={"category": "pets"})
        assert cat["object"] == "memory" and cat["user"] == "alice" and cat["text"] == "My cat is called Tama"
        assert cat["metadata"] == {"category": "pets"} and cat["active"] and not cat["core"]
        await call(session, "add_memory", text="I work as a nurse in Kobe")

        found = await call(session, "search_memories", query="What is my cat's name?", top_k=1)
        assert [hit["id"] for hit in found["data"]] == [cat["id"]] and found["data"][0]["score"] > 0

        page = await call(session, "list_memories", limit=1)
        rest = await call(session, "list_memories", limit=1, cursor=page["next_cursor"])
        assert {page["data"][0]["text"], rest["data"][0]["text"]} == {
            "My cat is called Tama",
            "I work as a nurse in Kobe",
        }

        renamed = await call(session, "update_memory", memory_id=cat["id"], text="My cat is called Mike")
        assert renamed["id"] != cat["id"] and renamed["text"] == "My cat is called Mike"
        tagged = await call(session, "update_memory", memory_id=renamed["id"], metadata={"category": None, "age": 3})
        assert tagged["id"] == renamed["id"] and tagged["metadata"] == {"age": 3}
        history = await call(session, "memory_history", memory_id=renamed["id"])
        assert [m["id"] for m in history["data"]] == [cat["id"], renamed["id"]]
        assert history["data"][0]["superseded_by"] == renamed["id"]

        assert await call(session, "forget_memory", memory_id=renamed["id"]) == {
            "id": renamed["id"], "object": "memory.deleted", "deleted": True,
        }  # fmt: skip
        found = await call(session, "search_memories", query="What is my cat's name?")
        assert all("Mike" not in hit["text"] for hit in found["data"])


async def test_the_memory_apis_errors_are_tool_errors_with_its_message(served: Served) -> None:
    async with mcp_session(served.url, "acme-alice") as session:
        memory = await call(session, "add_memory", text="I am allergic to peanuts")
        assert "Send at least one field to change." in await tool_error(
            session, "update_memory", memory_id=memory["id"]
        )
        assert "Invalid value for 'query': Value error, must not be blank." in await tool_error(
            session, "search_memories", query="   "
        )
        assert "Metadata key 'slot' is the engine's own" in await tool_error(
            session, "add_memory", text="I like tea", metadata={"slot": "x"}
        )
        assert "The cursor is not valid." in await tool_error(session, "list_memories", cursor="garbage")
        assert "No memory 'nope'." in await tool_error(session, "forget_memory", memory_id="nope")
        # What the SDK checks against the input schema is a tool error too, never a crash.
        assert "top_k" in await tool_error(session, "search_memories", query="peanuts", top_k=0)
        assert (await call(session, "search_memories", query="What am I allergic to?"))["data"]  # still serving


async def test_the_profile_is_the_users_core_memory(served: Served) -> None:
    async with mcp_session(served.url, "acme-alice") as session:
        assert (await read_json(session, "memory://profile")) == {"object": "list", "data": [], "next_cursor": None}
        home = await call(session, "add_memory", text="I live in Sapporo")
        await call(session, "add_memory", text="I had ramen for lunch")
        pinned = await call(session, "update_memory", memory_id=home["id"], pinned=True)
        assert pinned["pinned"] and pinned["core"]
        profile = await read_json(session, "memory://profile")
    assert [(m["id"], m["text"], m["core"]) for m in profile["data"]] == [(home["id"], "I live in Sapporo", True)]

    async with mcp_session(served.url, "acme-svc") as session:  # trusted: any user of its tenant
        assert (await read_json(session, "memory://profile/alice"))["data"] == profile["data"]
        assert (await read_json(session, "memory://profile"))["data"] == []  # its own user's
    async with mcp_session(served.url, "acme-bob") as session:
        assert (await read_json(session, "memory://profile"))["data"] == []
        with pytest.raises(MCPError, match="may only access its own memories"):
            await session.read_resource("memory://profile/alice")


# --- isolation ----------------------------------------------------------------------------------------------------


async def test_a_key_reaches_no_other_users_memories(served: Served) -> None:
    async with mcp_session(served.url, "acme-alice") as alice:
        secret = await call(alice, "add_memory", text="My bank PIN is hidden under the blue vase")
    for key in ("acme-bob", "globex-alice", "acme-svc"):  # another user; another tenant's alice; a trusted key's own
        async with mcp_session(served.url, key) as other:
            hits = await call(other, "search_memories", query="Where is my bank PIN hidden?")
            assert all(hit["id"] != secret["id"] for hit in hits["data"]), key
            assert (await call(other, "list_memories"))["data"] == [], key
            for tool, extra in (("update_memory", {"text": "gone"}), ("forget_memory", {}), ("memory_history", {})):
                # The same 404 as an id that does not exist: no oracle for other people's ids.
                unknown = await tool_error(other, tool, memory_id="no-such-id", **extra)
                theirs = await tool_error(other, tool, memory_id=secret["id"], **extra)
                assert theirs == unknown.replace("no-such-id", secret["id"]), (key, tool)
                assert f"No memory '{secret['id']}'." in theirs
    async with mcp_session(served.url, "acme-bob") as bob:  # an untrusted key may not name a user
        message = await tool_error(bob, "search_memories", query="bank PIN", user="alice")
        assert "This API key may only access its own memories" in message
        assert "may only access its own memories" in await tool_error(bob, "add_memory", text="x", user="alice")
    async with mcp_session(served.url, "acme-svc") as service:  # a trusted key names users of its own tenant
        assert (await call(service, "memory_history", memory_id=secret["id"], user="alice"))["data"][0]["text"] == (
            "My bank PIN is hidden under the blue vase"
        )
    async with mcp_session(served.url, "acme-alice") as alice:  # untouched by all of the above
        assert [m["id"] for m in (await call(alice, "list_memories"))["data"]] == [secret["id"]]


async def test_concurrent_calls_of_two_keys_each_act_as_their_own_key(served: Served) -> None:
    """Every message is its own HTTP request's caller, however calls of different keys interleave."""
    async with mcp_session(served.url, "acme-alice") as alice, mcp_session(served.url, "acme-bob") as bob:
        added = await asyncio.gather(
            *(
                call(who, "add_memory", text=f"Note {n} of {name}")
                for n in range(8)
                for name, who in (("alice", alice), ("bob", bob))
            )
        )
        assert {(m["user"], m["text"].split(" of ")[1]) for m in added} == {("alice", "alice"), ("bob", "bob")}
        for name, who in (("alice", alice), ("bob", bob)):
            texts = [m["text"] for m in (await call(who, "list_memories"))["data"]]
            assert len(texts) == 8 and all(text.endswith(f"of {name}") for text in texts), texts


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_both_protocol_eras_act_as_the_key_of_their_request(served: Served, mode: str) -> None:
    """The SDK's Client: ``auto`` speaks the 2026-07-28 protocol (no handshake), ``legacy`` the initialize one."""
    async with (
        httpx2.AsyncClient(headers={"authorization": "Bearer acme-bob"}) as http,
        Client(streamable_http_client(f"{served.url}/mcp", http_client=http), mode=mode) as client,
    ):
        added = await client.call_tool("add_memory", {"text": f"I speak the {mode} protocol"})
        assert not added.is_error and added.structured_content["user"] == "bob"
        assert (
            "may only access its own memories"
            in (await client.call_tool("list_memories", {"user": "x"})).content[0].text
        )
        profile = await client.read_resource("memory://profile")
        assert json.loads(profile.contents[0].text)["object"] == "list"


# --- shared with the chats ----------------------------------------------------------------------------------------


async def test_a_memory_an_agent_adds_is_recalled_in_the_users_next_chat(served: Served, empty_engine) -> None:
    async with mcp_session(served.url, "acme-alice") as session:
        await call(session, "add_memory", text="My cat is called Tama and she sleeps on the piano")
    response = await chat(served.url, "acme-alice", "What is my cat called?")
    assert response.status_code == 200 and response.headers["x-memproxy-memory"] == "ok"
    assert "Tama" in prompt_text(served.upstream.last_json)
    await chat(served.url, "acme-bob", "What is my cat called?")
    assert "Tama" not in prompt_text(served.upstream.last_json)
    await settle(served, empty_engine)


async def test_a_fact_told_in_a_chat_is_found_by_an_agents_search(served: Served, empty_engine) -> None:
    response = await chat(served.url, "acme-alice", "My dog is called Pochi and I live in Sapporo")
    assert response.status_code == 200
    await settle(served, empty_engine)
    async with mcp_session(served.url, "acme-alice") as session:
        hits = await call(session, "search_memories", query="What is my dog called?", top_k=3)
    assert any("Pochi" in hit["text"] for hit in hits["data"]), hits
    async with mcp_session(served.url, "acme-bob") as session:
        hits = await call(session, "search_memories", query="What is my dog called?", top_k=3)
    assert all("Pochi" not in hit["text"] for hit in hits["data"])


# --- the README ---------------------------------------------------------------------------------------------------


def readme_snippet() -> str:
    """The Python snippet of the README's MCP section, as written."""
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Connecting an agent or desktop assistant over MCP\n")
    section = text[start : text.index("\n## ", start + 1)]
    found = re.search(r"<!-- snippet: mcp-python -->\n```python\n(?P<code>.*?)\n```", section, re.DOTALL)
    assert found, "the README's MCP section lost its Python snippet"
    return found["code"] + "\n"


async def test_the_readmes_python_snippet_runs_as_written(served: Served, tmp_path: Path) -> None:
    script = tmp_path / "readme_mcp.py"
    script.write_text(readme_snippet())
    env = {**os.environ, "MEMPROXY_MCP_URL": f"{served.url}/mcp", "MEMPROXY_API_KEY": "acme-alice"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    out = stdout.decode()
    assert process.returncode == 0, f"{out}\n{stderr.decode()}"
    assert re.search(r"^remembered: \S+$", out, re.MULTILINE), out
    assert re.search(r"^\d\.\d{3}  I am training for the Tokyo marathon", out, re.MULTILINE), out
    profile = json.loads(out.split("profile: ", 1)[1])
    assert profile["object"] == "list", out
