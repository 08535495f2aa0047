"""Scope isolation, property-based: random interleavings of writes over several scopes, checked against a model.

The scopes share memory ids, entity names and job ids, and some differ only by tenant or would collide if tenant and
user were naively joined ("x" + "a/b" vs "x/a" + "b", "1:x" + "y" vs "1" + "x:y"). No read may ever return another
scope's object, ids of another scope behave as missing, and deleting one scope leaves the others as they were.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory.graph.base import GraphStore, NotFound, WriteBatch
from memory.models import ChangeOp, Entity, Memory, RelationType, Relationship, Scope

SHAPES = [("acme", "alice"), ("globex", "alice"), ("acme", "bob"), ("x", "a/b"), ("x/a", "b"), ("1:x", "y"),
          ("1", "x:y"), ("東京", "ユーザー")]  # fmt: skip
IDS = ["m0", "m1", "m2", "m3"]
NAMES = ["tea", "tokyo", "a/b", "1:x"]

scope_index = st.integers(0, len(SHAPES) - 1)
memory_id = st.sampled_from(IDS)
operation = st.one_of(
    st.tuples(st.just("put"), scope_index, memory_id, st.lists(st.sampled_from(NAMES), max_size=2, unique=True)),
    st.tuples(st.just("commit"), scope_index, memory_id, st.sampled_from(["job-0", "job-1", "job-2"])),
    st.tuples(st.just("relate"), scope_index, memory_id, memory_id),
    st.tuples(st.just("delete"), scope_index, memory_id),
    st.tuples(st.just("delete_user"), scope_index),
    st.tuples(st.just("use"), scope_index, memory_id),
    st.tuples(st.just("entity"), scope_index, st.sampled_from(NAMES)),
)


@dataclass
class ScopeModel:
    texts: dict[str, str] = field(default_factory=dict)
    edges: set[tuple[str, str]] = field(default_factory=set)
    entities: set[str] = field(default_factory=set)
    jobs: set[str] = field(default_factory=set)
    uses: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class Program:
    """Runs operations against the store and a model of what each scope must hold."""

    def __init__(self, store: GraphStore, scopes: list[Scope]) -> None:
        self.store = store
        self.scopes = scopes
        self.model = {scope: ScopeModel() for scope in scopes}
        self.step = 0

    async def run(self, op: tuple[object, ...]) -> None:
        self.step += 1
        kind, index, *args = op
        scope = self.scopes[index]  # type: ignore[index]
        model = self.model[scope]
        text = f"{scope.key} step {self.step}"  # names its scope: a leak shows in the text
        if kind == "put":
            key, names = args
            await self.store.upsert_memory(Memory(scope, text, id=key, entities=tuple(names)), np.ones(4, np.float32))
            model.texts[key], model.uses[key] = text, 0
            model.entities.update(names)
        elif kind == "commit":
            key, job = args
            applied = await self.store.commit(WriteBatch(job, scope, [Memory(scope, text, id=key)]))
            assert applied == (job not in model.jobs)
            if applied:
                model.texts[key], model.uses[key] = text, 0
                model.jobs.add(job)
        elif kind == "relate":
            source, target = args
            relationship = Relationship(scope, source, target, RelationType.RELATED_TO)
            if source in model.texts and target in model.texts:
                await self.store.add_relationship(relationship)
                model.edges.add((source, target))
            else:
                with pytest.raises(NotFound):
                    await self.store.add_relationship(relationship)
        elif kind == "delete":
            (key,) = args
            assert await self.store.delete_memory(scope, key) == (key in model.texts)
            model.texts.pop(key, None)
            model.edges = {edge for edge in model.edges if key not in edge}
        elif kind == "delete_user":
            assert await self.store.delete_user(scope) == len(model.texts)
            self.model[scope] = ScopeModel()
        elif kind == "use":
            (key,) = args
            await self.store.record_use(scope, [key], float(self.step))
            if key in model.texts:
                model.uses[key] += 1
        elif kind == "entity":
            (name,) = args
            await self.store.upsert_entity(Entity(scope, name))
            model.entities.add(name)

    async def check(self, since: int) -> None:
        for scope, model in self.model.items():
            await self.check_scope(scope, model)
        tenants = {scope.tenant for scope in self.scopes}
        listed = {scope for scope in await self.store.scopes() if scope.tenant in tenants}
        assert listed == {scope for scope, model in self.model.items() if model.texts}
        last: dict[tuple[Scope, str], ChangeOp] = {}
        for change in await self.store.changes_since(since, limit=100_000):
            last[(change.scope, change.memory_id)] = change.op
        for scope, model in self.model.items():
            for key in IDS:
                present = last.get((scope, key), ChangeOp.DELETE) == ChangeOp.UPSERT
                assert present == (key in model.texts), (scope, key)

    async def check_scope(self, scope: Scope, model: ScopeModel) -> None:
        store = self.store
        page = await store.list_memories(scope, limit=100, include_inactive=True)
        assert {m.id: m.text for m in page.items} == model.texts and all(m.scope == scope for m in page.items)
        assert await store.count_memories(scope, include_inactive=True) == len(model.texts)
        for key in IDS:
            memory = await store.get_memory(scope, key)
            assert (memory is None) == (key not in model.texts)
            if memory is not None:
                assert (memory.scope, memory.text, memory.use_count) == (scope, model.texts[key], model.uses[key])
        fetched = await store.get_memories(scope, IDS)
        assert [(m.scope, m.id) for m in fetched] == [(scope, key) for key in IDS if key in model.texts]
        edges = await store.relationships(scope)
        assert {(r.source_id, r.target_id) for r in edges} == model.edges and all(r.scope == scope for r in edges)
        entities = await store.entities(scope)
        assert {e.name for e in entities} == model.entities and all(e.scope == scope for e in entities)
        reached = await store.neighbours(scope, IDS, max_hops=2)
        assert set(reached) <= set(model.texts)
        for key in model.texts:
            hits = await store.graph_search(scope, key, max_depth=2)
            assert all(h.memory.scope == scope and h.memory.id in model.texts for h in hits)
            assert all(m.scope == scope for m in await store.history(scope, key))
        ids, _ = await store.embeddings(scope, IDS)
        assert set(ids) <= set(model.texts)
        exported = await store.export_user(scope)
        assert {m["id"]: m["text"] for m in exported["memories"]} == model.texts


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(operation, min_size=1, max_size=30))
async def test_no_read_ever_crosses_scopes(store: GraphStore, operations: list[tuple[object, ...]]) -> None:
    prefix = f"iso-{uuid.uuid4().hex[:8]}-"  # fresh scopes per example: the store fixture outlives examples
    scopes = [Scope(prefix + tenant, user) for tenant, user in SHAPES]
    program = Program(store, scopes)
    since = await store.last_seq()
    try:
        for op in operations:
            await program.run(op)
        await program.check(since)
    finally:
        for scope in scopes:
            await store.delete_user(scope)
