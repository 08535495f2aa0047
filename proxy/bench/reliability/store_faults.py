"""Faults of the store and its disk, each while a chat is answered: the chat must answer, its exchange wait
(durably queued, or held by the proxy when the queue itself cannot write) and land once the fault goes, and the
user's earlier memories stay.

- ``store_locked``: another connection holds the graph store's write lock (``BEGIN EXCLUSIVE``) for a few seconds,
  less than the store's busy timeout: the write waits for it;
- ``store_raises``: the same lock held past the busy timeout, so the store's writes really fail (SQLite's "database
  is locked", the store's ``StoreUnavailable``) and are retried;
- ``store_read_only``: the proxy starts on a graph file it can only read (a read-only bind mount as root, file
  mode 0444 otherwise), which becomes writable again a few seconds later;
- ``disk_full``: the data dir is a small tmpfs filled to the last byte (``ENOSPC`` for the store, the write queue
  and the index alike), freed a few seconds later. Mounting needs root; without it the fault is reported skipped.

Everything is real: SQLite, the engine, the app; only the upstream is the in-process stub."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

from memory import MemoryConfig, MemoryEngine
from proxy.app import create_app
from proxy.bench.stub_upstream import StubUpstream
from proxy.chat.memory import ChatMemory
from proxy.settings import Settings

FACTS = ["My sister Aiko lives in Sapporo.", "I am allergic to peanuts.", "My bicycle is a green Brompton."]
QUESTIONS = {"Where does my sister live?": "Sapporo", "What am I allergic to?": "peanuts",
             "What bicycle do I ride?": "Brompton"}  # fmt: skip
USER = "fault-user"
NEW_FACT, NEW_WORD = "My kayak is called Driftwood.", "Driftwood"
BUSY_TIMEOUT_S = 5.0
"""The SQLite store's busy timeout (``SqliteGraphStore``'s default): a lock held shorter is waited out."""
FAULT_HELD_S = 3.0
FLUSH_TIMEOUT_S = 120.0
TMPFS_MB = 64


async def engine_with_facts(data_dir: Path) -> MemoryEngine:
    engine = await MemoryEngine.open(MemoryConfig(data_dir=data_dir))
    for fact in FACTS:
        await engine.remember(fact, USER)
    return engine


async def lost_facts(engine: MemoryEngine) -> int:
    """Facts the user no longer has, or that recall no longer finds for their question."""
    texts = {m["text"] for m in (await engine.export(USER))["memories"]}
    missing = sum(fact not in texts for fact in FACTS)
    for question, word in QUESTIONS.items():
        hits = await engine.recall(question, USER, top_k=3)
        missing += not any(word in hit.memory.text for hit in hits)
    return missing


async def store_locked(work: Path) -> dict[str, Any]:
    return await _chat_through(work, _lock_held_for(FAULT_HELD_S))


async def store_raises(work: Path) -> dict[str, Any]:
    return await _chat_through(work, _lock_held_for(BUSY_TIMEOUT_S + 2 * FAULT_HELD_S))


async def store_read_only(work: Path) -> dict[str, Any]:
    return await _chat_through(work, _read_only, reopen=True)


async def disk_full(work: Path) -> dict[str, Any]:
    if os.geteuid() != 0:
        return {"chat": "skipped", "lost": 0, "skipped": "mounting a small tmpfs needs root"}
    mount = work / "tmpfs"
    mount.mkdir(parents=True)
    await _command("mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "tmpfs", str(mount))
    try:
        return await _chat_through(mount, _filled)
    finally:
        await _command("umount", "--lazy", str(mount), check=False)


Fault = Callable[[MemoryEngine], Any]
"""Given the open engine (and its files), an async context manager: the fault is on inside it, gone after."""


async def _chat_through(work: Path, fault: Fault, *, reopen: bool = False) -> dict[str, Any]:
    """The user's facts written first; then, with the fault on, one chat that states a new fact; the fault lifted
    after ``FAULT_HELD_S``; then every write flushed. ``reopen``: the fault is applied while the engine is closed,
    and the engine (the proxy) starts on it."""
    engine = await engine_with_facts(work / "mem")
    store_errors = _StoreErrors()
    logging.getLogger("memory.writes.pipeline").addHandler(store_errors)
    try:
        if reopen:
            await engine.close()
        async with fault(engine) as lift:
            if reopen:
                engine = await MemoryEngine.open(engine.config)
            status, outcome, waiting, chat_memory = await _chat(engine, work / "proxy")
            await asyncio.sleep(FAULT_HELD_S)
            await lift()
        await chat_memory.drain(timeout_s=FLUSH_TIMEOUT_S)  # what the proxy held goes to the queue now
        await engine.flush(timeout_s=FLUSH_TIMEOUT_S)
        texts = [m["text"] for m in (await engine.export(USER))["memories"]]
        lost = await lost_facts(engine) + (not any(NEW_WORD in text for text in texts))
    finally:
        logging.getLogger("memory.writes.pipeline").removeHandler(store_errors)
        await engine.close()
    return {"chat": outcome, "status": status, "writes_waiting_during_fault": waiting,
            "store_errors": store_errors.count, "lost": lost}  # fmt: skip


async def _chat(engine: MemoryEngine, proxy_dir: Path) -> tuple[int, str, int, ChatMemory]:
    """One chat through the real app (the stub upstream in process): its status, outcome, and how many writes
    waited during the fault (in the durable queue, or held by the proxy when the queue could not take them)."""
    settings = Settings(upstream_url="http://stub.test/v1", default_model="stub-model", data_dir=proxy_dir,
                        api_keys="", cache_salt=False)  # fmt: skip
    upstream = httpx.AsyncClient(transport=httpx.ASGITransport(app=StubUpstream()), base_url="http://stub.test")
    app = create_app(settings, http_client=upstream, memory=engine)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as proxy:
            body = {"user": USER, "messages": [{"role": "user", "content": NEW_FACT}]}
            response = await proxy.post("/v1/chat/completions", json=body, timeout=30)
        held = app.state.chat_memory.stats.waiting_writes
        with suppress(Exception):  # the queue itself may be unwritable (a full disk)
            held += (await engine.write_queue_stats()).depth
    finally:
        await upstream.aclose()
    outcome = "answered" if response.status_code == 200 else "error"
    return response.status_code, outcome, held, app.state.chat_memory


@asynccontextmanager
async def _lock_held(seconds: float, engine: MemoryEngine) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    holder = sqlite3.connect(_graph_file(engine), isolation_level=None, timeout=10)
    holder.execute("BEGIN EXCLUSIVE")

    async def lift() -> None:
        await asyncio.sleep(max(seconds - FAULT_HELD_S, 0.0))
        holder.execute("COMMIT")

    try:
        yield lift
    finally:
        if holder.in_transaction:
            holder.execute("COMMIT")
        holder.close()


def _lock_held_for(seconds: float) -> Fault:
    return lambda engine: _lock_held(seconds, engine)


@asynccontextmanager
async def _read_only(engine: MemoryEngine) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    path = _graph_file(engine)
    as_root = os.geteuid() == 0
    if as_root:  # root writes through file modes; a read-only bind mount stops it
        await _command("mount", "--bind", str(path), str(path))
        await _command("mount", "-o", "remount,ro,bind", str(path))
    else:
        path.chmod(0o444)
    lifted = False

    async def lift() -> None:
        nonlocal lifted
        if not lifted:
            if as_root:  # lazily: the engine's reader still has the file open through the mount
                await _command("umount", "--lazy", str(path))
            else:
                path.chmod(0o644)
            lifted = True

    try:
        yield lift
    finally:
        await lift()


@asynccontextmanager
async def _filled(engine: MemoryEngine) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    filler = engine.config.data_dir.parent / "filler"
    for chunk in (2**20, 4096, 512):  # to the last byte: ENOSPC ends each
        with suppress(OSError), filler.open("ab", buffering=0) as handle:
            while True:
                handle.write(b"\0" * chunk)

    async def lift() -> None:
        filler.unlink(missing_ok=True)

    try:
        yield lift
    finally:
        await lift()


async def _command(*argv: str, check: bool = True) -> None:
    process = await asyncio.create_subprocess_exec(*argv, stderr=asyncio.subprocess.PIPE)
    _, errors = await process.communicate()
    if check and process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {errors.decode(errors='replace').strip()}")


def _graph_file(engine: MemoryEngine) -> Path:
    return engine.config.graph.file(engine.config.data_dir)  # type: ignore[union-attr]


class _StoreErrors(logging.Handler):
    """Counts the write pipeline's "graph store unavailable" warnings: proof the fault made the store fail."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += record.getMessage().startswith("graph store unavailable")
