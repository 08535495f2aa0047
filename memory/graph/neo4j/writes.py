"""Write transaction functions of the Neo4j backend: a write job's commit, upserts, edges, deletes. Each runs inside
``execute_write`` and may be retried whole; each ends with its change-log entries (see :mod:`memory.graph.neo4j.cypher`
on the change counter's lock)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from neo4j import AsyncManagedTransaction

from memory.graph.base import NotFound, WriteBatch
from memory.graph.neo4j import cypher
from memory.graph.neo4j.records import DEFAULT_ENTITY_TYPE, entity_rows, memory_row, scoped
from memory.graph.neo4j.tx import append_changes, run_and_consume, single_value
from memory.models import ChangeOp, RelationType, Relationship, Scope, now

DELETE_BATCH = 5_000
"""Nodes removed per transaction by ``delete_user``."""


async def commit(tx: AsyncManagedTransaction, batch: WriteBatch, claim: str) -> bool:
    params = scoped(batch.scope, job_id=batch.job_id, now=now(), claim=claim)
    if not await single_value(tx, cypher.CLAIM_JOB, params):
        return False
    await apply(tx, batch)
    return True


async def apply(tx: AsyncManagedTransaction, batch: WriteBatch) -> None:
    """Everything of a batch but its job id, ending with its change-log entries."""
    scope = batch.scope
    if batch.entities:
        await run_and_consume(tx, cypher.UPSERT_ENTITIES, scoped(scope, entities=entity_rows(batch.entities)))
    changed: dict[str, None] = {}
    if batch.memories:
        embeddings = list(batch.embeddings) + [None] * (len(batch.memories) - len(batch.embeddings))
        rows = [memory_row(m, e) for m, e in zip(batch.memories, embeddings, strict=True)]
        ids = [m.id for m in batch.memories]
        mentions = [{"id": m.id, "name": name} for m in batch.memories for name in dict.fromkeys(m.entities)]
        await run_and_consume(tx, cypher.UPSERT_MEMORIES, scoped(scope, memories=rows))
        await run_and_consume(tx, cypher.CLEAR_MENTIONS, scoped(scope, ids=ids))
        if mentions:
            await run_and_consume(
                tx, cypher.ADD_MENTIONS, scoped(scope, mentions=mentions, default_type=DEFAULT_ENTITY_TYPE)
            )
        changed.update(dict.fromkeys(ids))
    if batch.relationships:
        await merge_edges(tx, scope, batch.relationships)
    if batch.supersessions:
        pairs = [{"old_id": old, "new_id": new} for old, new in batch.supersessions]
        if await single_value(tx, cypher.SUPERSEDE, scoped(scope, pairs=pairs)) < len(pairs):
            raise NotFound("a superseded or superseding memory does not exist in this scope")
        changed.update(dict.fromkeys(old for old, _ in batch.supersessions))
    await append_changes(tx, scope, ChangeOp.UPSERT, list(changed))


async def merge_edges(tx: AsyncManagedTransaction, scope: Scope, relationships: Sequence[Relationship]) -> None:
    by_type: dict[RelationType, list[dict[str, Any]]] = {}
    for r in relationships:
        row = {"source_id": r.source_id, "target_id": r.target_id, "strength": float(r.strength)}
        by_type.setdefault(RelationType(r.type), []).append(row)
    for rel_type, rows in by_type.items():
        if await single_value(tx, cypher.MERGE_EDGES[rel_type], scoped(scope, edges=rows)) < len(rows):
            raise NotFound(f"a {rel_type.value} edge names a memory that does not exist in this scope")


async def delete_memory(tx: AsyncManagedTransaction, scope: Scope, memory_id: str) -> bool:
    if not await single_value(tx, cypher.DELETE_MEMORY, scoped(scope, id=memory_id)):
        return False
    await append_changes(tx, scope, ChangeOp.DELETE, [memory_id])
    return True


async def delete_user_memories(tx: AsyncManagedTransaction, scope: Scope) -> int:
    """One batch of the scope's memories (at most :data:`DELETE_BATCH`); how many were removed."""
    ids = await single_value(tx, cypher.DELETE_USER_MEMORIES, scoped(scope, batch_size=DELETE_BATCH))
    await append_changes(tx, scope, ChangeOp.DELETE, ids)
    return len(ids)
