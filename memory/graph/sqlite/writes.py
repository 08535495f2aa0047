"""Writes of the embedded store (:mod:`memory.graph.sqlite.store`): functions of a connection, run in its worker
thread inside one ``BEGIN IMMEDIATE`` transaction — all of a call is applied, or none of it."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from memory.graph.base import UNCHANGED, FieldUpdate, GraphStoreError, NotFound, WriteBatch, merge_patch
from memory.graph.export_format import UserGraph
from memory.graph.sqlite import schema as sql
from memory.graph.sqlite.reads import find_scope
from memory.graph.validation import check_relationships, embedding_vector
from memory.models import ChangeOp, Entity, Memory, RelationType, Relationship, Scope


def create_schema(conn: sqlite3.Connection) -> None:
    for statement in sql.SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    if row[0] is None:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (sql.SCHEMA_VERSION,))
    elif row[0] > sql.SCHEMA_VERSION:
        raise GraphStoreError(f"the database has schema version {row[0]}; this code knows up to {sql.SCHEMA_VERSION}")


def _ensure_scope(conn: sqlite3.Connection, scope: Scope) -> int:
    conn.execute("INSERT INTO scopes (tenant, user) VALUES (?, ?) ON CONFLICT DO NOTHING", (scope.tenant, scope.user))
    scope_id = find_scope(conn, scope)
    assert scope_id is not None
    return scope_id


def _mid(conn: sqlite3.Connection, scope_id: int, memory_id: str) -> int:
    row = conn.execute("SELECT mid FROM memories WHERE scope_id = ? AND id = ?", (scope_id, memory_id)).fetchone()
    if row is None:
        raise NotFound(f"no memory {memory_id!r} in this scope")
    return row[0]


def _log(conn: sqlite3.Connection, scope: Scope, memory_id: str, op: ChangeOp) -> None:
    conn.execute(sql.LOG_CHANGE, (scope.tenant, scope.user, memory_id, op.value))


def commit(conn: sqlite3.Connection, batch: WriteBatch) -> bool:
    scope_id = _ensure_scope(conn, batch.scope)
    claimed = conn.execute(
        "INSERT INTO applied_jobs (scope_id, job_id) VALUES (?, ?) ON CONFLICT DO NOTHING", (scope_id, batch.job_id)
    )
    if claimed.rowcount == 0:
        return False
    for entity in batch.entities:
        _upsert_entity_in(conn, scope_id, entity)
    embeddings = batch.embeddings or [None] * len(batch.memories)
    for memory, embedding in zip(batch.memories, embeddings, strict=True):
        vector = None if embedding is None else vector_bytes(embedding)
        _upsert_memory_in(conn, scope_id, memory, vector)
        _log(conn, batch.scope, memory.id, ChangeOp.UPSERT)
    for relationship in batch.relationships:
        _add_relationship_in(conn, scope_id, relationship)
    for old_id, new_id in batch.supersessions:
        old, new = _mid(conn, scope_id, old_id), _mid(conn, scope_id, new_id)
        conn.execute("UPDATE memories SET superseded_by = ? WHERE mid = ?", (new_id, old))
        conn.execute(sql.UPSERT_EDGE, (scope_id, new, RelationType.SUPERSEDES.value, old, 1.0))
        _log(conn, batch.scope, old_id, ChangeOp.UPSERT)
    return True


def upsert_memory(conn: sqlite3.Connection, memory: Memory, vector: bytes | None) -> None:
    _upsert_memory_in(conn, _ensure_scope(conn, memory.scope), memory, vector)
    _log(conn, memory.scope, memory.id, ChangeOp.UPSERT)


def _upsert_memory_in(conn: sqlite3.Connection, scope_id: int, memory: Memory, vector: bytes | None) -> None:
    (mid,) = conn.execute(
        sql.UPSERT_MEMORY,
        (
            scope_id,
            memory.id,
            memory.text,
            memory.kind.value,
            memory.importance,
            memory.created_at,
            memory.event_time,
            memory.last_used_at,
            memory.use_count,
            memory.expires_at,
            json.dumps(list(memory.source_ids)),
            memory.superseded_by,
            json.dumps(memory.metadata),
        ),
    ).fetchone()
    conn.execute("DELETE FROM mentions WHERE scope_id = ? AND mid = ?", (scope_id, mid))
    if memory.entities:
        names = json.dumps(list(memory.entities))
        conn.execute(sql.ADD_MISSING_ENTITIES, (scope_id, names))
        conn.execute(sql.ADD_MENTIONS, (mid, names, scope_id))
    if vector is not None:
        conn.execute(sql.UPSERT_EMBEDDING, (mid, scope_id, vector))


def upsert_entity(conn: sqlite3.Connection, entity: Entity) -> None:
    _upsert_entity_in(conn, _ensure_scope(conn, entity.scope), entity)


def _upsert_entity_in(conn: sqlite3.Connection, scope_id: int, entity: Entity) -> None:
    conn.execute(sql.UPSERT_ENTITY, (scope_id, entity.name, entity.type, entity.display_name))


def add_relationship(conn: sqlite3.Connection, relationship: Relationship) -> None:
    scope_id = find_scope(conn, relationship.scope)
    if scope_id is None:
        raise NotFound(f"no memory {relationship.source_id!r} in this scope")
    _add_relationship_in(conn, scope_id, relationship)


def _add_relationship_in(conn: sqlite3.Connection, scope_id: int, relationship: Relationship) -> None:
    src, dst = _mid(conn, scope_id, relationship.source_id), _mid(conn, scope_id, relationship.target_id)
    conn.execute(sql.UPSERT_EDGE, (scope_id, src, str(relationship.type), dst, relationship.strength))


def record_use(conn: sqlite3.Connection, scope: Scope, ids: str, at: float) -> None:
    conn.execute(
        "UPDATE memories SET use_count = use_count + 1, last_used_at = ? "
        "WHERE scope_id = (SELECT scope_id FROM scopes WHERE tenant = ? AND user = ?) "
        "AND id IN (SELECT value FROM json_each(?))",
        (at, scope.tenant, scope.user, ids),
    )


def update_memories(conn: sqlite3.Connection, scope: Scope, updates: Sequence[FieldUpdate], log: bool) -> list[str]:
    scope_id = find_scope(conn, scope)
    if scope_id is None:
        return []
    updated = []
    for update in updates:
        row = conn.execute(
            "SELECT mid, metadata FROM memories WHERE scope_id = ? AND id = ?", (scope_id, update.memory_id)
        ).fetchone()
        if row is None:
            continue
        fields: dict[str, Any] = {}
        if update.importance is not UNCHANGED:
            fields["importance"] = update.importance
        if update.expires_at is not UNCHANGED:
            fields["expires_at"] = update.expires_at
        if update.metadata is not None:
            fields["metadata"] = json.dumps(merge_patch(json.loads(row[1]), update.metadata))
        if fields:
            assignments = ", ".join(f"{name} = :{name}" for name in fields)  # names from the fixed set above
            conn.execute(f"UPDATE memories SET {assignments} WHERE mid = :mid", {**fields, "mid": row[0]})
        if log:
            _log(conn, scope, update.memory_id, ChangeOp.UPSERT)
        updated.append(update.memory_id)
    return updated


def log_expired(conn: sqlite3.Connection, until: float) -> int:
    until = min(until, time.time())
    row = conn.execute("SELECT value FROM watermarks WHERE name = 'expiry'").fetchone()
    since = 0.0 if row is None else row[0]
    if until <= since:
        return 0
    logged = conn.execute(sql.LOG_EXPIRED, {"since": since, "until": until}).rowcount
    conn.execute(
        "INSERT INTO watermarks (name, value) VALUES ('expiry', ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (until,),
    )
    return logged


def delete_memory(conn: sqlite3.Connection, scope: Scope, memory_id: str) -> bool:
    scope_id = find_scope(conn, scope)
    if scope_id is None:
        return False
    # Edges, mentions and the embedding go with it (ON DELETE CASCADE).
    deleted = conn.execute("DELETE FROM memories WHERE scope_id = ? AND id = ?", (scope_id, memory_id)).rowcount
    if deleted:
        _log(conn, scope, memory_id, ChangeOp.DELETE)
    return bool(deleted)


def delete_user(conn: sqlite3.Connection, scope: Scope) -> int:
    scope_id = find_scope(conn, scope)
    if scope_id is None:
        return 0
    conn.execute(
        "INSERT INTO changes (tenant, user, memory_id, op) SELECT ?, ?, id, ? FROM memories WHERE scope_id = ?",
        (scope.tenant, scope.user, ChangeOp.DELETE.value, scope_id),
    )
    # Children first, set-based: the cascades then find nothing left to do.
    for table in ("edges", "mentions", "embeddings"):
        conn.execute(f"DELETE FROM {table} WHERE scope_id = ?", (scope_id,))
    removed = conn.execute("DELETE FROM memories WHERE scope_id = ?", (scope_id,)).rowcount
    for table in ("entities", "applied_jobs", "scopes"):
        conn.execute(f"DELETE FROM {table} WHERE scope_id = ?", (scope_id,))
    return removed


def import_user(conn: sqlite3.Connection, scope: Scope, data: dict[str, Any]) -> int:
    graph = UserGraph.parse(scope, data)  # here, in the writer's thread: a large export is parsed off the event loop
    check_relationships(graph.relationships)
    scope_id = _ensure_scope(conn, scope)
    for entity in graph.entities:
        _upsert_entity_in(conn, scope_id, entity)
    for memory in graph.memories:
        _upsert_memory_in(conn, scope_id, memory, None)
        _log(conn, scope, memory.id, ChangeOp.UPSERT)
    for relationship in graph.relationships:
        _add_relationship_in(conn, scope_id, relationship)
    return len(graph.memories)


def vector_bytes(embedding: np.ndarray) -> bytes:
    return embedding_vector(embedding).tobytes()
