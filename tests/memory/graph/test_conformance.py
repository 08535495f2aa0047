"""The graph store contract (memory/graph/base.py), run against every backend (see conftest.py): lifecycle and
reads, commits, supersession, listing and embeddings. Traversal, users, export / import and the change log are in
test_conformance_graph.py; upkeep in test_conformance_maintenance.py.

Scope isolation under random interleavings is in test_scope_isolation.py; SQLite's own durability in
test_sqlite_durability.py.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import cast

import numpy as np
import pytest

from memory.graph.base import SHARED_ENTITY, GraphStore, NotFound, WriteBatch
from memory.graph.export_format import export_memory
from memory.models import ChangeOp, Entity, Memory, MemoryKind, RelationType, Relationship
from tests.memory.graph.builders import LEADS, RELATED, SUPERSEDES, put, relate, remember
from tests.memory.graph.conftest import ScopeFactory

# --- lifecycle, upserts, reads ---------------------------------------------------------------------------------


async def test_open_is_idempotent(store: GraphStore, scopes: ScopeFactory) -> None:
    await store.open()
    [memory] = await put(store, scopes(), "still here after a second open()")
    await store.open()
    assert await store.get_memory(memory.scope, memory.id) == memory


async def test_upsert_and_get_round_trip_every_field(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    memory = Memory(
        scope,
        "Alice moved to Sapporo with her dog Pochi",
        kind=MemoryKind.FACT,
        importance=0.8,
        created_at=1_700_000_000.25,
        event_time=1_699_000_000.5,
        last_used_at=1_700_000_100.0,
        use_count=3,
        expires_at=time.time() + 3600,
        source_ids=("conv-1:turn-4", "conv-1:turn-5"),
        entities=("sapporo", "alice", "pochi"),
        metadata={"category": "moves", "confidence": 0.9, "tags": ["city", "pet"], "nested": {"k": None}},
    )
    await store.upsert_memory(memory)
    assert await store.get_memory(scope, memory.id) == memory
    assert await store.get_memory(scope, "no-such-id") is None
    others = await put(store, scope, "second", "third")
    wanted = [others[1].id, "missing", memory.id, others[0].id]
    assert [m.id for m in await store.get_memories(scope, wanted)] == [others[1].id, memory.id, others[0].id]
    assert await store.get_memories(scope, []) == []


async def test_upsert_replaces_all_fields_and_the_mentions(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    first = remember(scope, "likes tea", entities=("tea", "alice"), metadata={"v": 1})
    await store.upsert_memory(first)
    [neighbour] = await put(store, scope, "tea shop downtown", entities=("tea",))
    assert await store.neighbours(scope, [first.id]) == {neighbour.id: 1.0}

    changed = first.evolve(text="likes coffee", importance=0.9, entities=("coffee",), metadata={"v": 2})
    await store.upsert_memory(changed)
    assert await store.get_memory(scope, first.id) == changed
    assert await store.count_memories(scope) == 2
    assert await store.neighbours(scope, [first.id]) == {}
    assert {entity.name for entity in await store.entities(scope)} >= {"tea", "alice", "coffee"}


async def test_upsert_entity_creates_and_updates(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    await put(store, scope, "met Bob at the station", entities=("bob",))
    assert await store.entities(scope) == [Entity(scope, "bob", "thing", None)]
    await store.upsert_entity(Entity(scope, "bob", "person", "Bob"))
    await store.upsert_entity(Entity(scope, "station", "place"))
    assert sorted(await store.entities(scope), key=lambda e: e.name) == [
        Entity(scope, "bob", "person", "Bob"),
        Entity(scope, "station", "place", None),
    ]


async def test_add_relationship_needs_both_memories_and_updates_strength(
    store: GraphStore, scopes: ScopeFactory
) -> None:
    scope, other = scopes(), scopes("bob")
    a, b = await put(store, scope, "a", "b")
    [foreign] = await put(store, other, "someone else's")
    with pytest.raises(NotFound):
        await store.add_relationship(Relationship(scope, a.id, "missing", RELATED))
    with pytest.raises(NotFound):
        await store.add_relationship(Relationship(scope, a.id, foreign.id, RELATED))
    with pytest.raises(NotFound):
        await store.add_relationship(Relationship(other, foreign.id, a.id, RELATED))

    await relate(store, a, b, RELATED, 0.3)
    await relate(store, a, b, RELATED, 0.7)
    await relate(store, a, b, LEADS, 0.5)
    assert sorted(await store.relationships(scope), key=lambda r: r.type) == [
        Relationship(scope, a.id, b.id, LEADS, 0.5),
        Relationship(scope, a.id, b.id, RELATED, 0.7),
    ]
    assert await store.relationships(other) == []


async def test_relationships_touching_given_memories(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    a, b, c, d = await put(store, scope, "a", "b", "c", "d")
    await relate(store, a, b)
    await relate(store, c, b)
    await relate(store, c, d)
    touching_b = await store.relationships(scope, [b.id])
    assert {(r.source_id, r.target_id) for r in touching_b} == {(a.id, b.id), (c.id, b.id)}
    assert {(r.source_id, r.target_id) for r in await store.relationships(scope, [a.id, d.id])} == {
        (a.id, b.id),
        (c.id, d.id),
    }
    assert await store.relationships(scope, []) == []


async def test_record_use_counts_and_stamps(store: GraphStore, scopes: ScopeFactory) -> None:
    scope, other = scopes(), scopes("bob")
    a, b = await put(store, scope, "a", "b")
    twin = Memory(other, "same id, other scope", id=a.id)
    await store.upsert_memory(twin)
    before = await store.last_seq()
    await store.record_use(scope, [a.id, "missing"], 1_800_000_000.0)
    await store.record_use(scope, [a.id, b.id], 1_800_000_050.0)
    used = {m.id: m for m in await store.get_memories(scope, [a.id, b.id])}
    assert (used[a.id].use_count, used[a.id].last_used_at) == (2, 1_800_000_050.0)
    assert (used[b.id].use_count, used[b.id].last_used_at) == (1, 1_800_000_050.0)
    assert await store.get_memory(other, a.id) == twin
    assert not [c for c in await store.changes_since(before) if scopes.owns(c.scope)]


async def test_delete_memory_removes_it_and_its_edges(store: GraphStore, scopes: ScopeFactory) -> None:
    scope, other = scopes(), scopes("bob")
    a, b, c = await put(store, scope, "a", "b", "c", entities=("tea",))
    await store.upsert_memory(a, np.ones(8, dtype=np.float32))
    twin = Memory(other, "same id, other scope", id=a.id)
    await store.upsert_memory(twin)
    await relate(store, a, b)
    await relate(store, c, a, LEADS)
    await relate(store, b, c)

    assert await store.delete_memory(other, "missing") is False
    assert await store.delete_memory(scope, a.id) is True
    assert await store.delete_memory(scope, a.id) is False
    assert await store.get_memory(scope, a.id) is None
    assert [(r.source_id, r.target_id) for r in await store.relationships(scope)] == [(b.id, c.id)]
    assert (await store.embeddings(scope))[0] == []
    assert await store.neighbours(scope, [b.id], types=[SHARED_ENTITY]) == {c.id: 1.0}
    assert await store.get_memory(other, a.id) == twin


# --- commit -----------------------------------------------------------------------------------------------------


async def test_commit_applies_everything_once(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    old = (await put(store, scope, "Alice lives in Tokyo", entities=("alice", "tokyo")))[0]
    new = remember(scope, "Alice lives in Sapporo", kind=MemoryKind.FACT, entities=("alice", "sapporo"))
    note = remember(scope, "Alice's dog is Pochi", entities=("alice", "pochi"))
    vectors = [np.linspace(0, 1, 16, dtype=np.float32), np.full(16, 0.25, dtype=np.float32)]
    batch = WriteBatch(
        job_id="job-1",
        scope=scope,
        memories=[new, note],
        embeddings=list(vectors),
        entities=[Entity(scope, "sapporo", "place", "Sapporo")],
        relationships=[Relationship(scope, new.id, note.id, RELATED, 0.6)],
        supersessions=[(old.id, new.id)],
    )
    before = await store.last_seq()
    assert await store.commit(batch) is True
    after_first = await store.last_seq()
    assert await store.commit(batch) is False
    assert await store.last_seq() == after_first

    assert await store.get_memory(scope, new.id) == new
    assert (await store.get_memory(scope, old.id)).superseded_by == new.id  # type: ignore[union-attr]
    assert Entity(scope, "sapporo", "place", "Sapporo") in await store.entities(scope)
    edges = {(r.source_id, r.target_id, r.type, r.strength) for r in await store.relationships(scope)}
    assert edges == {(new.id, note.id, RELATED, 0.6), (new.id, old.id, SUPERSEDES, 1.0)}
    ids, matrix = await store.embeddings(scope, [new.id, note.id])
    assert ids == [new.id, note.id] and np.array_equal(matrix, np.stack(vectors))
    mine = [c for c in await store.changes_since(before) if scopes.owns(c.scope)]
    assert {(c.memory_id, c.op) for c in mine} == {(m, ChangeOp.UPSERT) for m in (new.id, note.id, old.id)}
    assert len({c.seq for c in mine}) == len(mine)


async def test_failed_commit_changes_nothing_and_can_be_retried(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    memory = remember(scope, "would be written")
    broken = WriteBatch("job-x", scope, [memory], relationships=[Relationship(scope, memory.id, "missing", RELATED)])
    before = await store.last_seq()
    with pytest.raises(NotFound):
        await store.commit(broken)
    assert await store.get_memory(scope, memory.id) is None
    assert not [c for c in await store.changes_since(before) if scopes.owns(c.scope)]
    assert await store.commit(WriteBatch("job-x", scope, [memory])) is True


async def test_arguments_every_backend_refuses_before_writing(store: GraphStore, scopes: ScopeFactory) -> None:
    """The checks of memory/graph/validation.py and paging.py: a ValueError, and nothing written."""
    scope, other = scopes(), scopes("bob")
    a, b = remember(scope, "a"), remember(scope, "b")
    shared = Relationship(scope, a.id, b.id, cast(RelationType, SHARED_ENTITY))  # what a caller may send all the same
    export = {
        "memories": [export_memory(a), export_memory(b)],
        "relationships": [{"source_id": a.id, "target_id": b.id, "type": SHARED_ENTITY}],
    }
    refused: list[Callable[[], Awaitable[object]]] = [
        lambda: store.commit(WriteBatch("j1", scope, [a, b], embeddings=[None])),
        lambda: store.commit(WriteBatch("j2", scope, [a, remember(other, "someone else's")])),
        lambda: store.commit(WriteBatch("j3", scope, [a, b], relationships=[shared])),
        lambda: store.upsert_memory(a, np.ones((2, 2), dtype=np.float32)),
        lambda: store.add_relationship(shared),
        lambda: store.import_user(scope, export),
        lambda: store.list_memories(scope, limit=0),
        lambda: store.list_memories(scope, cursor="not a cursor"),
        lambda: store.usage(scope, limit=0),
    ]
    before = await store.last_seq()
    for call in refused:
        with pytest.raises(ValueError):
            await call()
    assert await store.count_memories(scope, include_inactive=True) == 0
    assert not [c for c in await store.changes_since(before) if scopes.owns(c.scope)]
    assert await store.commit(WriteBatch("j1", scope, [a, b])) is True


async def test_commit_embedding_none_keeps_the_stored_one(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    memory = remember(scope, "embedded once")
    vector = np.arange(12, dtype=np.float32) / 7
    assert await store.commit(WriteBatch("j1", scope, [memory], [vector]))
    assert await store.commit(WriteBatch("j2", scope, [memory.evolve(importance=0.9)], [None]))
    assert await store.commit(WriteBatch("j3", scope, [memory.evolve(importance=0.8)]))
    ids, matrix = await store.embeddings(scope)
    assert ids == [memory.id] and np.array_equal(matrix[0], vector)
    assert (await store.get_memory(scope, memory.id)).importance == 0.8  # type: ignore[union-attr]


async def test_job_ids_are_per_scope(store: GraphStore, scopes: ScopeFactory) -> None:
    alice, bob = scopes("alice"), scopes("bob")
    assert await store.commit(WriteBatch("same-job", alice, [remember(alice, "alice's")]))
    assert await store.commit(WriteBatch("same-job", bob, [remember(bob, "bob's")]))
    assert await store.commit(WriteBatch("same-job", alice, [remember(alice, "replayed")])) is False


# --- supersession and history -----------------------------------------------------------------------------------


async def test_supersession_chain_and_history(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    v1, v2, v3 = (remember(scope, f"Alice lives in city {n}", created_at=1_700_000_000.0 + n) for n in (1, 2, 3))
    [lone] = await put(store, scope, "unrelated")
    assert await store.commit(WriteBatch("j1", scope, [v1]))
    assert await store.commit(WriteBatch("j2", scope, [v2], supersessions=[(v1.id, v2.id)]))
    assert await store.commit(WriteBatch("j3", scope, [v3], supersessions=[(v2.id, v3.id)]))

    chain = [v1.id, v2.id, v3.id]
    for member in chain:
        assert [m.id for m in await store.history(scope, member)] == chain
    assert [m.superseded_by for m in await store.history(scope, v1.id)] == [v2.id, v3.id, None]
    assert await store.history(scope, lone.id) == [lone]
    assert await store.history(scope, "missing") == []
    assert await store.count_memories(scope) == 2
    assert await store.count_memories(scope, include_inactive=True) == 4
    assert {m.id for m in (await store.list_memories(scope)).items} == {v3.id, lone.id}
    supersedes = [r for r in await store.relationships(scope) if r.type == SUPERSEDES]
    assert {(r.source_id, r.target_id) for r in supersedes} == {(v2.id, v1.id), (v3.id, v2.id)}


async def test_supersession_of_a_missing_memory_is_refused(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    new = remember(scope, "new")
    with pytest.raises(NotFound):
        await store.commit(WriteBatch("j1", scope, [new], supersessions=[("missing", new.id)]))
    assert await store.get_memory(scope, new.id) is None


# --- listing ----------------------------------------------------------------------------------------------------


async def test_pagination_newest_first_without_gaps_or_duplicates(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    base = 1_700_000_000.0
    memories = [remember(scope, f"memory {i}", id=f"m{i:03d}", created_at=base + i // 3) for i in range(250)]
    inactive = {m.id for m in memories[::10]}
    for memory in memories:
        await store.upsert_memory(memory.evolve(superseded_by="m000") if memory.id in inactive else memory)
    newest_first = sorted(memories, key=lambda m: (m.created_at, m.id), reverse=True)

    for include_inactive, limit in ((True, 40), (False, 33), (True, 250), (True, 1000)):
        seen: list[str] = []
        cursor = None
        while True:
            page = await store.list_memories(scope, limit=limit, cursor=cursor, include_inactive=include_inactive)
            assert len(page.items) <= limit
            seen += [m.id for m in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == [m.id for m in newest_first if include_inactive or m.id not in inactive]
    assert await store.count_memories(scope) == 225
    assert await store.count_memories(scope, include_inactive=True) == 250


async def test_empty_scope_reads_are_empty(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes("nobody")
    page = await store.list_memories(scope)
    assert (page.items, page.next_cursor) == ([], None)
    assert await store.count_memories(scope) == 0
    assert await store.entities(scope) == []
    assert await store.relationships(scope) == []
    assert (await store.embeddings(scope))[0] == []
    assert await store.export_user(scope) == {"memories": [], "entities": [], "relationships": []}
    assert await store.delete_user(scope) == 0
    assert scope not in await store.scopes()


# --- embeddings -------------------------------------------------------------------------------------------------


async def test_embeddings_round_trip_exactly(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((5, 384)).astype(np.float32)
    vectors[0, :4] = [np.float32(1e-38), np.float32(-0.0), np.finfo(np.float32).max, np.float32(1 / 3)]
    memories = [remember(scope, f"m{i}") for i in range(5)]
    for memory, vector in zip(memories, vectors, strict=True):
        await store.upsert_memory(memory, vector)
    [bare] = await put(store, scope, "no vector")
    await store.upsert_memory(memories[4].evolve(expires_at=time.time() - 1))

    ids, matrix = await store.embeddings(scope)
    assert matrix.dtype == np.float32 and matrix.shape == (4, 384)
    stored = {memory_id: row.tobytes() for memory_id, row in zip(ids, matrix, strict=True)}
    assert stored == {memory.id: vector.tobytes() for memory, vector in zip(memories[:4], vectors, strict=False)}
    ids, matrix = await store.embeddings(scope, [memories[3].id, bare.id, memories[4].id, memories[0].id])
    assert ids == [memories[3].id, memories[0].id]
    assert matrix.tobytes() == np.stack([vectors[3], vectors[0]]).tobytes()
