"""Faults, each with the chat's outcome and what was lost: the real app and engine in this process, the upstream a
stub server process that misbehaves on purpose (or a port nobody listens on), the data dir's files damaged between
two runs.

- ``upstream_dies_mid_stream``: the upstream (the stub, a real process) sends two tokens and drops the connection;
- ``upstream_refuses``: nothing listens at the upstream's address;
- ``upstream_too_slow``: the upstream answers after the proxy's read timeout;
- ``index_deleted`` / ``index_corrupted``: the vector index folder is removed, or each of its files overwritten
  with junk, while the proxy is down; after the restart recall must still find the user's memories;
- ``store_locked`` / ``store_raises`` / ``store_read_only`` / ``disk_full``: see :mod:`.store_faults`;
- ``clock_backwards``: a proxy two hours ahead queues a write and dies; the real clock must not hold it, see
  :mod:`.clock_fault`;
- ``killed_during_import`` / ``_delete_user`` / ``_index_save`` / ``_adapter_publish``: kill -9 inside the
  operation, see :mod:`.crash_ops` (no chat involved: ``"chat": "none"``; ``lost`` counts whatever was broken).

"lost": memories the user had before the fault and cannot recall (or no longer has) after it."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from memory import MemoryConfig, MemoryEngine
from proxy.app import create_app
from proxy.bench.processes import ServerProcess, free_port, python_module
from proxy.bench.reliability import clock_fault, crash_ops, store_faults
from proxy.bench.reliability.store_faults import engine_with_facts, lost_facts
from proxy.settings import Settings

USER = store_faults.USER


def run(seeds: int = 2) -> dict[str, dict[str, Any]]:
    """Every fault once; the kills inside long operations ``seeds`` times each."""
    with tempfile.TemporaryDirectory(prefix="memproxy-faults-") as tmp:
        results = asyncio.run(_run(Path(tmp)))
        results["clock_backwards"] = clock_fault.clock_backwards(Path(tmp))
        for op, totals in crash_ops.run(Path(tmp) / "killed", seeds).items():
            results[f"killed_during_{op}"] = {"chat": "none", "lost": totals["broken"]} | totals
        return results


async def _run(tmp: Path) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    upstreams = {
        "upstream_dies_mid_stream": (["--die-after-words", "2"], True),
        "upstream_refuses": (None, False),
        "upstream_too_slow": (["--answer-delay-ms", "3000"], False),
    }
    for name, (flags, stream) in upstreams.items():
        if flags is None:
            results[name] = await _upstream_fault(tmp / name, f"http://127.0.0.1:{free_port()}/v1", stream)
            continue
        with _stub(flags) as stub:
            results[name] = await _upstream_fault(tmp / name, stub.ready_url.removesuffix("/models"), stream)
    for name, damage in {"index_deleted": _delete_index, "index_corrupted": _corrupt_index}.items():
        results[name] = await _index_fault(tmp / name, damage)
    store = (store_faults.store_locked, store_faults.store_raises, store_faults.store_read_only, store_faults.disk_full)
    for fault in store:
        results[fault.__name__] = await fault(tmp / fault.__name__)
    return results


def _stub(flags: list[str]) -> ServerProcess:
    port = free_port()
    argv = python_module("proxy.bench.stub_upstream", "--port", str(port), *flags)
    return ServerProcess(argv, f"http://127.0.0.1:{port}/v1/models")


async def _upstream_fault(data_dir: Path, url: str, stream: bool) -> dict[str, Any]:
    """One chat through a real stub process (or a closed port): what the client got, and what memory lost."""
    engine = await engine_with_facts(data_dir / "mem")
    settings = Settings(upstream_url=url, default_model="stub-model", data_dir=data_dir / "proxy", api_keys="",
                        read_timeout_s=1.0, connect_timeout_s=1.0, cache_salt=False)  # fmt: skip
    app = create_app(settings, memory=engine)  # its own upstream client, with these timeouts
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as proxy:
            body = {"user": USER, "stream": stream, "messages": [{"role": "user", "content": "Tell me a story."}]}
            response = await proxy.post("/v1/chat/completions", json=body, timeout=30)
            outcome = _outcome(response, stream)
        await app.state.chat_memory.drain()
        await engine.flush()
        lost = await lost_facts(engine)
    finally:
        await engine.close()
    return {"chat": outcome, "status": response.status_code, "lost": lost}


def _outcome(response: httpx.Response, stream: bool) -> str:
    if response.status_code != 200:
        return "error"
    if stream:
        text = response.text
        return "error" if '"error"' in text or "data: [DONE]" not in text else "answered"
    return "answered"


async def _index_fault(data_dir: Path, damage: Callable[[MemoryConfig], Awaitable[None]]) -> dict[str, Any]:
    engine = await engine_with_facts(data_dir / "mem")
    config = engine.config
    await engine.close()
    await damage(config)
    engine = await MemoryEngine.open(config)
    try:
        lost = await lost_facts(engine)
    finally:
        await engine.close()
    return {"chat": "answered", "lost": lost}


async def _delete_index(config: MemoryConfig) -> None:
    shutil.rmtree(config.index_dir)


async def _corrupt_index(config: MemoryConfig) -> None:
    for path in config.index_dir.rglob("*"):
        if path.is_file():
            path.write_bytes(b"\x00junk" * 64)
