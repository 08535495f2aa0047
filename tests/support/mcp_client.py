"""The MCP tests' shared pieces: the real app (real engine, scripted upstream) served by a real uvicorn with its
lifespan on (which runs the MCP session manager), and the SDK's own client (``ClientSession`` over streamable HTTP)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import uvicorn
from fastapi import FastAPI
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from memory import MemoryEngine
from proxy.app import create_app
from proxy.settings import Settings
from tests.support.upstreams import RecordingUpstream

START_TIMEOUT_S = 30.0


@dataclass
class Served:
    url: str
    app: FastAPI
    upstream: RecordingUpstream


@asynccontextmanager
async def serve(settings: Settings, engine: MemoryEngine) -> AsyncIterator[Served]:
    """The app on a free 127.0.0.1 port, in this test's loop (where the engine lives), lifespan and all."""
    upstream = RecordingUpstream()
    app = create_app(settings, http_client=httpx.AsyncClient(transport=upstream.transport()), memory=engine)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(START_TIMEOUT_S):
        while not server.started:
            assert not task.done(), "uvicorn stopped before it started (see the log above)"
            await asyncio.sleep(0.01)
    try:
        yield Served(f"http://127.0.0.1:{sock.getsockname()[1]}", app, upstream)
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def mcp_session(url: str, key: str | None) -> AsyncIterator[ClientSession]:
    """An initialised MCP session of the SDK's client, sending ``key`` as its Bearer key."""
    headers = {"authorization": f"Bearer {key}"} if key is not None else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """A tool's structured result; fails on a tool error."""
    result = await session.call_tool(tool, arguments)
    assert isinstance(result, CallToolResult)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def tool_error(session: ClientSession, tool: str, **arguments: Any) -> str:
    """The text of a tool error (the call must fail as a tool, not as the protocol)."""
    result = await session.call_tool(tool, arguments)
    assert isinstance(result, CallToolResult) and result.is_error, result
    (content,) = result.content
    assert content.type == "text"
    return content.text


async def read_json(session: ClientSession, uri: str) -> dict[str, Any]:
    result = await session.read_resource(uri)
    (content,) = result.contents
    assert content.mime_type == "application/json"
    return json.loads(content.text)  # type: ignore[union-attr]


async def chat(url: str, key: str, text: str) -> httpx.Response:
    """One chat through ``/v1/chat/completions`` of the same server."""
    async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {key}"}) as client:
        body = {"model": "m", "messages": [{"role": "user", "content": text}]}
        return await client.post("/v1/chat/completions", json=body)


async def settle(served: Served, engine: MemoryEngine) -> None:
    """The last answer's background work done: its next-turn prefill, and its write queued, then applied."""
    await served.app.state.chat_service.prefill.runner.drain()
    await served.app.state.chat_memory.drain()
    await engine.flush()
