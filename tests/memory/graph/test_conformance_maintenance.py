"""The graph store contract for upkeep (memory/graph/base.py): partial updates, the usage scan, core memory, the
expiry sweep and the cap on neighbours — run against every backend (see conftest.py), like test_conformance.py."""

from __future__ import annotations

import asyncio
import time

import pytest

from memory.graph.base import CORE_SINCE, NEIGHBOURS_LIMIT, SHARED_ENTITY, FieldUpdate, GraphStore, merge_patch
from memory.models import ChangeOp, Memory, RelationType, Relationship, Scope
from tests.memory.graph.conftest import ScopeFactory


async def put(store: GraphStore, scope: Scope, *texts: str, **fields: object) -> list[Memory]:
    memories = [Memory(scope, text, **fields) for text in texts]  # type: ignore[arg-type]
    for memory in memories:
        await store.upsert_memory(memory)
    return memories


async def logged(store: GraphStore, since: int) -> list[tuple[Scope, str, ChangeOp]]:
    return [(c.scope, c.memory_id, c.op) for c in await store.changes_since(since, limit=100_000)]


# --- update_memories -----------------------------------------------------------------------------------------------


async def test_update_changes_only_the_given_fields(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    [memory] = await put(
        store, scope, "Pochi is my dog", importance=0.4, entities=("pochi",), use_count=3,
        metadata={"category": "pets", "decay": {"base": 0.4, "since": 1.0}},
    )  # fmt: skip
    patch = {"decay": {"since": 2.0}, "category": None, "core": "pinned"}
    assert await store.update_memories(scope, [FieldUpdate(memory.id, importance=0.9, metadata=patch)]) == [memory.id]
    [updated] = await store.get_memories(scope, [memory.id])
    assert updated.importance == 0.9
    assert updated.metadata == {"decay": {"base": 0.4, "since": 2.0}, "core": "pinned"}
    assert updated.evolve(importance=0.4, metadata=memory.metadata) == memory

    expiry = time.time() + 3600
    await store.update_memories(scope, [FieldUpdate(memory.id, expires_at=expiry)])
    assert (await store.get_memory(scope, memory.id)).expires_at == pytest.approx(expiry)  # type: ignore[union-attr]
    await store.update_memories(scope, [FieldUpdate(memory.id, expires_at=None)])
    final = await store.get_memory(scope, memory.id)
    assert final is not None and final.expires_at is None and final.importance == 0.9


async def test_update_skips_missing_ids_and_other_scopes(store: GraphStore, scopes: ScopeFactory) -> None:
    mine, theirs = scopes("alice"), scopes("bob")
    [a] = await put(store, mine, "alice's")
    [b] = await put(store, theirs, "bob's", importance=0.3)
    updates = [FieldUpdate("missing", importance=1.0), FieldUpdate(b.id, importance=1.0), FieldUpdate(a.id)]
    assert await store.update_memories(mine, updates) == [a.id]
    assert (await store.get_memory(theirs, b.id)).importance == 0.3  # type: ignore[union-attr]
    assert await store.update_memories(scopes("nobody"), [FieldUpdate(a.id, importance=1.0)]) == []


async def test_update_logs_a_change_unless_told_not_to(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    [memory] = await put(store, scope, "a fact")
    seq = await store.last_seq()
    await store.update_memories(scope, [FieldUpdate(memory.id, importance=0.2)], log_changes=False)
    assert [entry for entry in await logged(store, seq) if entry[0] == scope] == []
    await store.update_memories(scope, [FieldUpdate(memory.id, importance=0.3)])
    assert [entry for entry in await logged(store, seq) if entry[0] == scope] == [(scope, memory.id, ChangeOp.UPSERT)]


def test_field_update_checks_importance_and_merge_patch_follows_rfc_7396() -> None:
    with pytest.raises(ValueError, match="importance"):
        FieldUpdate("m", importance=1.5)
    target = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1]}
    patched = merge_patch(target, {"a": None, "b": {"c": None, "x": 4}, "e": {"f": 1}})
    assert patched == {"b": {"d": 3, "x": 4}, "e": {"f": 1}}
    assert target == {"a": 1, "b": {"c": 2, "d": 3}, "e": [1]}


# --- usage ---------------------------------------------------------------------------------------------------------


async def test_usage_pages_active_memories_in_id_order(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    memories = [Memory(scope, f"memory {i}", id=f"m{i:02d}", importance=i / 20, use_count=i) for i in range(12)]
    for memory in memories:
        await store.upsert_memory(memory)
    await put(store, scope, "expired", id="m99", expires_at=time.time() - 5)
    await put(store, scopes("bob"), "bob's", id="m50")
    await store.record_use(scope, ["m03"], 1234.5)
    first = await store.usage(scope, limit=5)
    assert [row.id for row in first] == [f"m{i:02d}" for i in range(5)]
    rest = await store.usage(scope, after=first[-1].id, limit=100)
    assert [row.id for row in rest] == [f"m{i:02d}" for i in range(5, 12)]
    row = first[3]
    assert (row.importance, row.use_count, row.last_used_at, row.metadata) == (0.15, 4, 1234.5, {})
    assert row.created_at == pytest.approx(memories[3].created_at)
    assert await store.usage(scopes("nobody")) == []


# --- core memory ---------------------------------------------------------------------------------------------------


async def test_core_memories_in_order_of_joining_then_id(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    late, early_b, early_a, plain = await put(store, scope, "late", "early b", "early a", "not core")
    await store.update_memories(scope, [FieldUpdate(late.id, metadata={CORE_SINCE: 300.0})])
    await store.update_memories(scope, [FieldUpdate(early_b.id, metadata={CORE_SINCE: 100.0})])
    await store.update_memories(scope, [FieldUpdate(early_a.id, metadata={CORE_SINCE: 100.0})])
    first_two = sorted([early_a.id, early_b.id])
    assert [m.id for m in await store.core_memories(scope)] == [*first_two, late.id]
    assert [m.id for m in await store.core_memories(scope)] == [*first_two, late.id]  # stable across calls

    [inserted] = await put(store, scope, "core from the start", metadata={CORE_SINCE: 200.0, "core": "pinned"})
    [expired] = await put(store, scope, "gone", metadata={CORE_SINCE: 50.0}, expires_at=time.time() - 1)
    await put(store, scopes("bob"), "bob's core", metadata={CORE_SINCE: 1.0})
    core = await store.core_memories(scope)
    assert [m.id for m in core] == [*first_two, inserted.id, late.id]
    assert core[2].metadata == {CORE_SINCE: 200.0, "core": "pinned"} and core[2].text == "core from the start"

    await store.update_memories(scope, [FieldUpdate(early_b.id, metadata={CORE_SINCE: None})])
    assert early_b.id not in [m.id for m in await store.core_memories(scope)]
    await store.upsert_memory(late.evolve(metadata={}))  # a full upsert rewrites the flag too
    assert [m.id for m in await store.core_memories(scope)] == [early_a.id, inserted.id]
    assert {expired.id, plain.id}.isdisjoint(m.id for m in await store.core_memories(scope))
    assert await store.core_memories(scopes("nobody")) == []


# --- expiry sweep --------------------------------------------------------------------------------------------------


async def test_log_expired_tells_followers_once_when_a_memory_runs_out(store: GraphStore, scopes: ScopeFactory) -> None:
    scope, other = scopes("alice"), scopes("bob")
    soon = time.time() + 0.3
    [fleeting, lasting] = await put(store, scope, "fleeting", "lasting")
    await store.update_memories(scope, [FieldUpdate(fleeting.id, expires_at=soon)])
    await store.update_memories(scope, [FieldUpdate(lasting.id, expires_at=time.time() + 3600)])
    [bobs] = await put(store, other, "bob's fleeting", expires_at=soon)
    [old, new] = await put(store, scope, "old", "new", expires_at=soon)
    await store.upsert_memory(old.evolve(superseded_by=new.id))
    seq = await store.last_seq()

    await store.log_expired(time.time() + 3600)  # never beyond the store's clock: nothing has run out yet
    assert [e for e in await logged(store, seq) if e[0] in (scope, other)] == []
    await asyncio.sleep(max(0.0, soon - time.time()) + 0.05)
    await store.log_expired(time.time())
    await store.log_expired(time.time())  # a second sweep logs nothing again
    entries = [e for e in await logged(store, seq) if e[0] in (scope, other)]
    assert sorted(entries, key=str) == sorted(
        [(scope, fleeting.id, ChangeOp.UPSERT), (scope, new.id, ChangeOp.UPSERT), (other, bobs.id, ChangeOp.UPSERT)],
        key=str,
    )


# --- neighbours ----------------------------------------------------------------------------------------------------


async def test_neighbours_keeps_the_strongest_up_to_the_limit(store: GraphStore, scopes: ScopeFactory) -> None:
    scope = scopes()
    [seed] = await put(store, scope, "seed mentions the hub", entities=("hub",))
    hub = [Memory(scope, f"hub {i}", id=f"h{i:03d}", entities=("hub",)) for i in range(NEIGHBOURS_LIMIT + 10)]
    for memory in hub:
        await store.upsert_memory(memory)
    weak, strong = await put(store, scope, "weak", "strong")
    await store.add_relationship(Relationship(scope, seed.id, weak.id, RelationType.RELATED_TO, 0.2))
    await store.add_relationship(Relationship(scope, strong.id, seed.id, RelationType.LEADS_TO, 1.0))

    capped = await store.neighbours(scope, [seed.id])
    assert len(capped) == NEIGHBOURS_LIMIT and weak.id not in capped
    three = await store.neighbours(scope, [seed.id], limit=3)
    assert three == dict.fromkeys(sorted([strong.id, *(m.id for m in hub)])[:3], 1.0)  # ties broken by id
    edges_only = await store.neighbours(scope, [seed.id], types=[RelationType.RELATED_TO, RelationType.LEADS_TO])
    assert edges_only == {strong.id: 1.0, weak.id: 0.2}
    assert await store.neighbours(scope, [seed.id], types=[RelationType.RELATED_TO, "LEADS_TO"], limit=1) == {
        strong.id: 1.0
    }
    assert len(await store.neighbours(scope, [seed.id], types=[SHARED_ENTITY], limit=NEIGHBOURS_LIMIT + 50)) == len(hub)
    assert await store.neighbours(scope, [seed.id], limit=0) == {}
