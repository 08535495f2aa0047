"""Transaction functions of the Neo4j backend for upkeep: partial updates (importance, retention, core flags), the
scan the scheduler weighs, core memory, and the expiry sweep that tells followers which memories ran out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from neo4j import AsyncManagedTransaction

from memory.graph.base import UNCHANGED, FieldUpdate, MemoryUsage, core_since, merge_patch
from memory.graph.neo4j import cypher
from memory.graph.neo4j.records import metadata_from_text, metadata_text, scoped
from memory.graph.neo4j.tx import append_changes, fetch_rows, run_and_consume, single_value
from memory.models import ChangeOp, Scope, now


async def update_memories(
    tx: AsyncManagedTransaction, scope: Scope, updates: Sequence[FieldUpdate], log_changes: bool
) -> list[str]:
    """Merge patches are applied here, to the metadata read in the same transaction."""
    ids = list(dict.fromkeys(update.memory_id for update in updates))
    found = await fetch_rows(tx, cypher.METADATA_OF, scoped(scope, ids=ids))
    stored = {row["id"]: metadata_from_text(row["metadata"]) for row in found}
    rows: list[dict[str, Any]] = []
    for update in updates:
        if update.memory_id not in stored:
            continue
        properties: dict[str, Any] = {}
        if update.importance is not UNCHANGED:
            properties["importance"] = float(update.importance)
        if update.expires_at is not UNCHANGED:
            properties["expires_at"] = update.expires_at
        if update.metadata is not None:
            merged = stored[update.memory_id] = merge_patch(stored[update.memory_id], update.metadata)
            properties["metadata"] = metadata_text(merged)
            properties["core_since"] = core_since(merged)
        rows.append({"id": update.memory_id, "properties": properties})
    if rows:
        await run_and_consume(tx, cypher.UPDATE_MEMORIES, scoped(scope, updates=rows))
    updated = [row["id"] for row in rows]
    if log_changes:
        await append_changes(tx, scope, ChangeOp.UPSERT, list(dict.fromkeys(updated)))
    return updated


async def usage(tx: AsyncManagedTransaction, scope: Scope, after: str, limit: int) -> list[MemoryUsage]:
    found = await fetch_rows(tx, cypher.USAGE, scoped(scope, after=after, limit=limit, now=now()))
    return [
        MemoryUsage(
            row["id"],
            row["importance"],
            row["created_at"],
            row["last_used_at"],
            row["use_count"] or 0,
            metadata_from_text(row["metadata"]),
        )
        for row in found
    ]


async def log_expired(tx: AsyncManagedTransaction, until: float) -> int:
    """Across scopes, by contract: the watermark first, the change counter last (see the cypher module)."""
    until = min(until, now())
    since = await single_value(tx, cypher.ADVANCE_EXPIRY_WATERMARK, {"until": until})
    if until <= since:
        return 0
    expired = await fetch_rows(tx, cypher.EXPIRED_BETWEEN, {"since": since, "until": until})
    if expired:
        changes = [
            {"tenant": row["tenant"], "user": row["user"], "id": row["id"], "op": ChangeOp.UPSERT.value}
            for row in expired
        ]
        await run_and_consume(tx, cypher.APPEND_CHANGES_ACROSS_SCOPES, {"changes": changes, "now": now()})
    return len(expired)
