"""The graph store contract, continued (see test_conformance.py): traversal (neighbours, graph search), deleting a
whole user, export / import between scopes, and the change log — run against every backend (see conftest.py)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from memory.graph.base import SHARED_ENTITY, GraphStore, WriteBatch
from memory.models import ChangeOp, Entity, MemoryKind, Relationship
from tests.memory.graph.builders import LEADS, RELATED, assert_same_memory, canonical, put, relate, remember
from tests.memory.graph.conftest import ScopeFactory

# --- traversal --------------------------------------------------------------------------------------------------


async def test_neighbours_hops_strengths_and_direction(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    a, b, c, d, e = await put(store, scope, "a", "b", "c", "d", "e")
    await relate(store, a, b, RELATED, 0.5)  # a - b - c - d, edges pointing both ways
    await relate(store, c, b, LEADS, 0.8)
    await relate(store, c, d, RELATED, 0.5)
    await relate(store, a, e, RELATED, 0.1)  # e: weak directly, strong through b
    await relate(store, b, e, LEADS, 1.0)

    assert await store.neighbours(scope, [b.id]) == {a.id: 0.5, c.id: 0.8, e.id: 1.0}
    two = await store.neighbours(scope, [a.id], max_hops=2)
    assert two == pytest.approx({b.id: 0.5, e.id: 0.5, c.id: 0.4})
    assert await store.neighbours(scope, [a.id], max_hops=3) == pytest.approx(
        {b.id: 0.5, e.id: 0.5, c.id: 0.4, d.id: 0.2}
    )
    assert await store.neighbours(scope, [b.id], types=[LEADS]) == {c.id: 0.8, e.id: 1.0}
    assert await store.neighbours(scope, [a.id], max_hops=2, types=[RELATED]) == pytest.approx({b.id: 0.5, e.id: 0.1})
    assert await store.neighbours(scope, [a.id, b.id]) == pytest.approx({c.id: 0.8, e.id: 1.0})
    assert await store.neighbours(scope, []) == {}
    assert await store.neighbours(scope, ["missing"]) == {}


async def test_neighbours_through_shared_entities_and_only_active(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    seed, sibling = await put(store, scope, "I drink green tea", "tea with Bob", entities=("tea",))
    [expired] = await put(store, scope, "tea expired", entities=("tea",), expires_at=time.time() - 60)
    [old] = await put(store, scope, "tea old", entities=("tea",))
    [new] = await put(store, scope, "coffee now", entities=("coffee",))
    assert await store.commit(WriteBatch("j", scope, [], supersessions=[(old.id, new.id)]))
    [linked] = await put(store, scope, "linked")
    await relate(store, seed, linked, RELATED, 0.4)

    assert await store.neighbours(scope, [seed.id]) == {sibling.id: 1.0, linked.id: 0.4}
    assert await store.neighbours(scope, [seed.id], types=[SHARED_ENTITY]) == {sibling.id: 1.0}
    assert await store.neighbours(scope, [seed.id], types=[RELATED]) == {linked.id: 0.4}
    # Through the superseded memory (old, not returned) to its successor: two hops.
    assert await store.neighbours(scope, [seed.id], max_hops=2) == {sibling.id: 1.0, linked.id: 0.4, new.id: 1.0}
    assert expired.id not in await store.neighbours(scope, [sibling.id], max_hops=3)


async def test_graph_search_breadth_first_order(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    start, near_weak, near_strong, far, farther = await put(store, scope, "start", "nw", "ns", "far", "farther")
    [gone] = await put(store, scope, "superseded neighbour")
    await relate(store, start, near_weak, RELATED, 0.2)
    await relate(store, near_strong, start, LEADS, 0.9)
    await relate(store, near_weak, far, RELATED, 1.0)
    await relate(store, near_strong, far, RELATED, 0.5)
    await relate(store, far, farther, RELATED, 1.0)
    await relate(store, far, near_weak, LEADS, 1.0)  # a second, longer way back to near_weak
    await relate(store, start, gone, RELATED, 0.6)
    assert await store.commit(WriteBatch("j", scope, [], supersessions=[(gone.id, near_weak.id)]))

    hits = await store.graph_search(scope, start.id, max_depth=2)
    assert [(h.memory.id, h.depth) for h in hits] == [
        (near_strong.id, 1),
        (gone.id, 1),
        (near_weak.id, 1),
        (far.id, 2),
    ]
    assert [h.strength for h in hits] == pytest.approx([0.9, 0.6, 0.2, 0.45])
    assert hits[1].memory.superseded_by == near_weak.id  # inactive memories are part of the graph view
    assert [h.memory.id for h in await store.graph_search(scope, start.id, max_depth=3)][-1] == farther.id
    only_leads = await store.graph_search(scope, start.id, max_depth=3, relationship_types=[LEADS])
    assert [(h.memory.id, h.depth) for h in only_leads] == [(near_strong.id, 1)]
    assert await store.graph_search(scope, "missing") == []


async def test_graph_search_follows_shared_entities(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    start, sibling = await put(store, scope, "Pochi barks", "Pochi sleeps", entities=("pochi",))
    hits = await store.graph_search(scope, start.id, max_depth=1)
    assert [(h.memory.id, h.depth, h.strength) for h in hits] == [(sibling.id, 1, 1.0)]
    assert await store.graph_search(scope, start.id, relationship_types=[RELATED]) == []


# --- users, export / import, change log ----------------------------------------------------------------------------


async def test_delete_user_removes_everything_of_that_scope_only(store: GraphStore, scopes: ScopeFactory) -> None:
    gone, kept, other_tenant = scopes("alice"), scopes("bob"), scopes("alice", tenant="globex")
    for scope in (gone, kept, other_tenant):
        a, b = await put(store, scope, "Alice likes tea", "tea again", entities=("tea",))
        await store.upsert_memory(a, np.ones(4, dtype=np.float32))
        await relate(store, a, b)
        assert await store.commit(WriteBatch("job-1", scope, [remember(scope, "committed")]))
    snapshot = {scope: canonical(await store.export_user(scope)) for scope in (kept, other_tenant)}
    ids = {m.id for m in (await store.list_memories(gone)).items}
    before = await store.last_seq()

    assert await store.delete_user(gone) == 3
    assert await store.count_memories(gone, include_inactive=True) == 0
    assert await store.entities(gone) == []
    assert await store.relationships(gone) == []
    assert (await store.embeddings(gone))[0] == []
    assert gone not in await store.scopes()
    deletes = [c for c in await store.changes_since(before) if c.scope == gone]
    assert sorted(c.memory_id for c in deletes) == sorted(ids) and {c.op for c in deletes} == {ChangeOp.DELETE}
    assert await store.commit(WriteBatch("job-1", gone, [remember(gone, "a new start")]))  # job ids went too
    for scope, exported in snapshot.items():
        assert canonical(await store.export_user(scope)) == exported
        assert scope in await store.scopes()


async def test_export_import_round_trip_into_another_scope(store: GraphStore, scopes: ScopeFactory) -> None:
    source, target = scopes("alice"), scopes("alice-copy", tenant="other")
    old, new = (remember(source, t, entities=("alice", "tokyo")) for t in ("lives in Tokyo", "moved to Sapporo"))
    note = remember(source, "has a dog", kind=MemoryKind.FACT, importance=0.7, event_time=1_690_000_000.123456,
                    source_ids=("s1:t2",), metadata={"category": "pets"}, entities=("pochi",))  # fmt: skip
    assert await store.commit(
        WriteBatch(
            "j1",
            source,
            [old, new, note],
            [np.ones(4, dtype=np.float32)] * 3,
            entities=[Entity(source, "pochi", "animal", "Pochi")],
            relationships=[Relationship(source, new.id, note.id, LEADS, 0.3)],
            supersessions=[(old.id, new.id)],
        )
    )
    await store.record_use(source, [note.id], 1_800_000_000.5)
    exported = await store.export_user(source)
    assert set(exported) == {"memories", "entities", "relationships"}
    data = json.loads(json.dumps(exported))

    assert await store.import_user(target, data) == 3
    originals = {m.id: m for m in await store.get_memories(source, [old.id, new.id, note.id])}
    for memory in await store.get_memories(target, list(originals)):
        assert_same_memory(memory, originals[memory.id], target)
    assert len(await store.get_memories(target, list(originals))) == 3
    assert {(e.name, e.type, e.display_name) for e in await store.entities(target)} == {
        (e.name, e.type, e.display_name) for e in await store.entities(source)
    }
    assert {(r.source_id, r.target_id, r.type, r.strength) for r in await store.relationships(target)} == {
        (r.source_id, r.target_id, r.type, r.strength) for r in await store.relationships(source)
    }
    assert [m.id for m in await store.history(target, note.id)] == [note.id]
    assert [m.id for m in await store.history(target, new.id)] == [old.id, new.id]
    assert (await store.embeddings(target))[0] == []  # an export carries no vectors
    assert await store.count_memories(source, include_inactive=True) == 3


async def test_changes_since_is_ordered_and_limited(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    before = await store.last_seq()
    a, b = await put(store, scope, "a", "b")
    c = remember(scope, "c")
    assert await store.commit(WriteBatch("j", scope, [c], supersessions=[(a.id, c.id)]))
    assert await store.delete_memory(scope, b.id)
    await store.upsert_memory(a.evolve(text="a, edited"))

    everything = await store.changes_since(before, limit=100_000)
    assert [x.seq for x in everything] == sorted({x.seq for x in everything}) and everything[0].seq > before
    assert await store.last_seq() >= everything[-1].seq
    mine = [(x.memory_id, x.op) for x in everything if x.scope == scope]
    assert mine[:2] == [(a.id, ChangeOp.UPSERT), (b.id, ChangeOp.UPSERT)]
    assert set(mine[2:4]) == {(c.id, ChangeOp.UPSERT), (a.id, ChangeOp.UPSERT)}
    assert mine[4:] == [(b.id, ChangeOp.DELETE), (a.id, ChangeOp.UPSERT)]

    assert await store.changes_since(before, limit=2) == everything[:2]
    assert await store.changes_since(everything[1].seq, limit=3) == everything[2:5]
    assert await store.changes_since(everything[-1].seq) == await store.changes_since(await store.last_seq())


async def test_scopes_lists_those_with_memories(store: GraphStore, scopes: ScopeFactory) -> None:
    alice, bob, entity_only = scopes("alice"), scopes("bob"), scopes("carol")
    await put(store, alice, "a")
    [gone] = await put(store, bob, "b")
    await store.upsert_entity(Entity(entity_only, "tea"))
    assert {s for s in await store.scopes() if scopes.owns(s)} == {alice, bob}
    await store.delete_memory(bob, gone.id)
    assert {s for s in await store.scopes() if scopes.owns(s)} == {alice}
