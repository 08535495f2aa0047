"""SQLite only: acknowledged writes survive kill -9; lock and closed-store failures are StoreUnavailable."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from memory.graph.base import GraphStoreError, StoreUnavailable, WriteBatch
from memory.graph.sqlite.store import SqliteGraphStore
from memory.models import Memory, Scope

SCOPE = Scope("crash", "user")
REPO = Path(__file__).resolve().parents[4]

WRITER = """
import asyncio, sys
from memory.graph.base import WriteBatch
from memory.graph.sqlite.store import SqliteGraphStore
from memory.models import Memory, Scope

async def main(path: str) -> None:
    store = SqliteGraphStore(path)
    await store.open()
    scope = Scope("crash", "user")
    for i in range(1_000_000):
        batch = WriteBatch(f"job-{i}", scope, [Memory(scope, f"note {i}", id=f"m{i}")])
        assert await store.commit(batch)
        print(i, flush=True)  # the ack: the commit returned

asyncio.run(main(sys.argv[1]))
"""


def batch(i: int) -> WriteBatch:
    return WriteBatch(f"job-{i}", SCOPE, [Memory(SCOPE, f"note {i}", id=f"m{i}")])


async def test_acknowledged_commits_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "graph.db"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    acked: list[int] = []
    try:
        for line in child.stdout:  # kill it while it is writing, after a fair number of acks
            acked.append(int(line))
            if len(acked) == 150:
                os.kill(child.pid, signal.SIGKILL)
                break
        remaining, errors = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    acked += [int(line) for line in remaining.split()]
    assert child.returncode == -signal.SIGKILL, errors
    assert len(acked) >= 150

    store = SqliteGraphStore(path)
    await store.open()
    try:
        present = {m.id for m in (await store.list_memories(SCOPE, limit=1_000_000)).items}
        assert {f"m{i}" for i in acked} <= present
        assert present == {f"m{i}" for i in range(len(present))}  # no holes: at most the unacked last one extra
        for i in (acked[0], acked[-1]):
            assert await store.commit(batch(i)) is False
        assert await store.commit(batch(len(present))) is True
    finally:
        await store.close()


async def test_a_locked_database_is_unavailable_and_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "graph.db"
    store = SqliteGraphStore(path, busy_timeout_s=0.05)
    await store.open()
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        with pytest.raises(StoreUnavailable) as failure:
            await store.commit(batch(1))
        assert isinstance(failure.value.__cause__, sqlite3.OperationalError)
        assert await store.count_memories(SCOPE) == 0  # reads go on under a writer (WAL)
        blocker.execute("ROLLBACK")
        assert await store.commit(batch(1)) is True
    finally:
        blocker.close()
        await store.close()


async def test_data_persists_across_reopen_and_closed_store_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "graph.db"
    store = SqliteGraphStore(path)
    await store.open()
    written = batch(1)
    assert await store.commit(written)
    await store.close()
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.get_memory(SCOPE, "m1")

    reopened = SqliteGraphStore(path)
    await reopened.open()
    try:
        assert await reopened.get_memory(SCOPE, "m1") == written.memories[0]
        assert await reopened.commit(batch(1)) is False
    finally:
        await reopened.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "graph.db"
    store = SqliteGraphStore(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = version + 1")
    conn.close()
    with pytest.raises(GraphStoreError, match="schema version"):
        await SqliteGraphStore(path).open()
