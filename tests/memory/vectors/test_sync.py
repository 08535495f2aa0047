"""Index ↔ graph store: following the change log, replaying it, rebuilding from stored embeddings.

Against the real embedded store (SqliteGraphStore) and the real FAISS index; ``exact_max`` is small so one scope
crosses into IVF. The check is always the same: for every scope, the index holds exactly the store's active
embedded memories, and searching a stored vector finds its memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from memory.graph.base import WriteBatch
from memory.graph.sqlite.store import SqliteGraphStore
from memory.models import Memory, Scope, now
from memory.vectors.faiss_index import FaissVectorIndex
from memory.vectors.sync import rebuild_index, sync_index

DIM = 16
SMALL = 100
ALICE, BOB, CAROL = Scope("acme", "alice"), Scope("acme", "bob"), Scope("globex", "carol")


def unit(seed: int) -> np.ndarray:
    row = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return row / np.linalg.norm(row)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteGraphStore]:
    graph = SqliteGraphStore(tmp_path / "graph.sqlite")
    await graph.open()
    yield graph
    await graph.close()


async def put(store: SqliteGraphStore, scope: Scope, memory_id: str, seed: int, **fields: object) -> None:
    await store.upsert_memory(Memory(scope, f"memory {memory_id}", id=memory_id, **fields), unit(seed))


async def assert_mirrors(index: FaissVectorIndex, store: SqliteGraphStore) -> None:
    for scope in (ALICE, BOB, CAROL):
        ids, vectors = await store.embeddings(scope)
        assert index.count(scope) == len(ids), scope
        for memory_id, vector in list(zip(ids, vectors, strict=True))[:: max(1, len(ids) // 10)]:
            assert (await index.search(scope, vector, 1))[0][0] == memory_id


async def history(store: SqliteGraphStore) -> None:
    """Writes of every kind: bulk, replace, supersede, expire, delete one, delete a user, re-create."""
    for i in range(SMALL + 30):
        await put(store, ALICE, f"a{i}", i)
    for i in range(5):
        await put(store, BOB, f"b{i}", 1000 + i)
    await put(store, ALICE, "a0", 5000)  # new text and vector for an existing memory
    await store.commit(
        WriteBatch("job-1", ALICE, memories=[Memory(ALICE, "a1, corrected", id="a1-new")], embeddings=[unit(5001)],
                   supersessions=[("a1", "a1-new")])
    )  # fmt: skip
    await put(store, BOB, "b-expired", 5002, expires_at=now() - 60)
    await store.delete_memory(ALICE, "a2")
    await put(store, CAROL, "c0", 6000)
    await store.delete_user(CAROL)
    await put(store, CAROL, "c1", 6001)


async def test_following_the_change_log_mirrors_the_store(store: SqliteGraphStore) -> None:
    index = FaissVectorIndex(DIM, exact_max=SMALL)
    try:
        await history(store)
        applied = await sync_index(index, store, batch=7)  # many small batches

        assert applied == len(await store.changes_since(0, limit=10_000))
        assert index.applied_seq == await store.last_seq()
        await assert_mirrors(index, store)
        hits = {hit_id for hit_id, _ in await index.search(ALICE, unit(1), 200)}
        assert "a1" not in hits and "a1-new" in hits and "a2" not in hits  # superseded and deleted are gone
        assert await sync_index(index, store) == 0
    finally:
        await index.close()


async def test_syncing_step_by_step_equals_a_rebuild(store: SqliteGraphStore) -> None:
    incremental = FaissVectorIndex(DIM, exact_max=SMALL)
    rebuilt = FaissVectorIndex(DIM, exact_max=SMALL)
    try:
        await put(store, ALICE, "early", 1)
        await sync_index(incremental, store)
        await history(store)
        await sync_index(incremental, store)
        await rebuild_index(rebuilt, store)

        assert rebuilt.applied_seq == incremental.applied_seq == await store.last_seq()
        for scope in (ALICE, BOB, CAROL):  # the same memories, each found by its own vector in both
            ids, vectors = await store.embeddings(scope)
            assert rebuilt.count(scope) == incremental.count(scope) == len(ids)
            for memory_id, vector in zip(ids, vectors, strict=True):
                assert (await rebuilt.search(scope, vector, 1))[0][0] == memory_id
                assert (await incremental.search(scope, vector, 1))[0][0] == memory_id
        await assert_mirrors(rebuilt, store)
    finally:
        await incremental.close()
        await rebuilt.close()


async def test_replaying_changes_already_applied_is_harmless(store: SqliteGraphStore) -> None:
    index = FaissVectorIndex(DIM, exact_max=SMALL)
    try:
        await history(store)
        await sync_index(index, store)
        index.applied_seq = 0
        await sync_index(index, store, batch=50)
        await assert_mirrors(index, store)
    finally:
        await index.close()


async def test_after_a_crash_the_saved_index_catches_up(store: SqliteGraphStore, tmp_path: Path) -> None:
    """Saved at some seq; later changes applied (partitions even evicted to disk) but never saved; then kill -9."""
    path = tmp_path / "vectors"
    index = FaissVectorIndex(DIM, path, exact_max=SMALL, resident_bytes=1)
    await put(store, ALICE, "a-before", 1)
    await put(store, BOB, "b-before", 2)
    await sync_index(index, store)
    await index.save()
    await history(store)
    await sync_index(index, store)  # evictions write partitions newer than the manifest
    await index.close()  # no save: the process dies here

    reopened = FaissVectorIndex(DIM, path, exact_max=SMALL)
    try:
        assert reopened.applied_seq < await store.last_seq()
        await sync_index(reopened, store)
        await assert_mirrors(reopened, store)
    finally:
        await reopened.close()


async def test_a_rebuild_forgets_scopes_the_store_no_longer_has(store: SqliteGraphStore) -> None:
    index = FaissVectorIndex(DIM, exact_max=SMALL)
    try:
        await index.add(Scope("gone", "user"), ["ghost"], unit(1)[None])
        await put(store, ALICE, "a0", 2)
        assert await rebuild_index(index, store) == 1
        assert index.count(Scope("gone", "user")) == 0 and index.count(ALICE) == 1
    finally:
        await index.close()
