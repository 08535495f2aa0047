"""``memproxy memories …`` over HTTP against a real uvicorn serving the real app and engine."""

# ruff: noqa: F811 - the shared fixtures are imported from tests.support.memory_api, then requested by name
from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import uvicorn

from memory import MemoryEngine
from proxy.cli import main as cli_main
from proxy.settings import Settings
from tests.support.memory_api import (  # noqa: F401 - fixtures
    KEYS,
    Api,
    add,
    api,
    assert_error,
    build_app,
    empty_engine,
    engine,
    settings,
    state,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


# --- the CLI against a real server -------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="module")
async def server_url(empty_engine: MemoryEngine, settings: Settings) -> AsyncIterator[str]:
    """A real uvicorn on a free 127.0.0.1 port, in this test's loop (where the engine lives)."""
    app = build_app(settings, empty_engine)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_cli_over_http(server_url: str, capsys: pytest.CaptureFixture[str], monkeypatch, tmp_path: Path) -> None:
    async def cli(*argv: str) -> tuple[int, Any]:
        code = await asyncio.to_thread(cli_main, ["memories", *argv])
        out, err = capsys.readouterr()
        return code, json.loads(out or err or "null")

    base = ("--url", server_url, "--api-key", "acme-svc", "--user", "dave")
    code, created = await cli("add", "My cat is called Tama", "--importance", "0.9", "--category", "pets", *base)
    assert code == 0 and created["user"] == "dave" and created["importance"] == 0.9
    await cli("add", "I live in Nagoya", *base)
    code, listed = await cli("list", "--limit", "1", "--all", *base)
    assert code == 0 and [m["text"] for m in listed["data"]] == ["I live in Nagoya", "My cat is called Tama"]
    code, hits = await cli("search", "What is my cat's name?", "--top-k", "1", *base)
    assert hits["data"][0]["id"] == created["id"]
    code, updated = await cli(
        "update", created["id"], "--text", "My cat is called Mike", "--pin", "--retention", "long_term", *base
    )
    assert code == 0 and updated["pinned"] and updated["text"] == "My cat is called Mike"
    code, history = await cli("history", updated["id"], *base)
    assert [m["id"] for m in history["data"]] == [created["id"], updated["id"]]
    code, graph = await cli("graph", *base)
    assert code == 0 and any(e["type"] == "SUPERSEDES" for e in graph["edges"])
    export_file = tmp_path / "dave.json"
    code, _ = await cli("export", "-o", str(export_file), *base)
    assert code == 0 and len(json.loads(export_file.read_text())["memories"]) == 3
    code, imported = await cli("import", str(export_file), *base[:4], "--user", "erin")
    assert code == 0 and imported["imported"] == 3

    # The key from the settings (MEMPROXY_CLI_API_KEY) when --api-key is not given; errors go to stderr, exit 1.
    monkeypatch.setenv("MEMPROXY_CLI_API_KEY", "acme-alice")
    code, error = await cli("list", "--url", server_url, "--user", "dave")
    assert code == 1 and error["error"]["code"] == "permission_denied"
    code, mine = await cli("list", "--url", server_url)
    assert code == 0 and mine["data"] == []
    code, error = await cli("get", "no-such-id", *base)
    assert code == 1 and error["error"]["code"] == "not_found"
    code, gone = await cli("delete", updated["id"], *base)
    assert code == 0 and gone["deleted"]
    code, wiped = await cli("delete-user", "--yes", *base)
    assert code == 0 and wiped["deleted"] >= 1
    code, empty = await cli("list", "--include-inactive", *base)
    assert empty["data"] == []
