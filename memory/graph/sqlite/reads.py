"""Reads of the embedded store (:mod:`memory.graph.sqlite.store`): functions of a connection, run in its worker thread
inside one read transaction, so each call sees one consistent snapshot."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from memory.graph.base import MemoryUsage
from memory.graph.export_format import UserGraph, edge_type
from memory.graph.sqlite import schema as sql
from memory.models import Entity, Memory, MemoryKind, Relationship, Scope

HISTORY_LIMIT = 10_000
"""Longest supersession chain followed (a guard against a cycle written by hand)."""


def find_scope(conn: sqlite3.Connection, scope: Scope) -> int | None:
    found = conn.execute("SELECT scope_id FROM scopes WHERE tenant = ? AND user = ?", (scope.tenant, scope.user))
    row = found.fetchone()
    return None if row is None else row[0]


def _memories(conn: sqlite3.Connection, scope: Scope, scope_id: int, rows: list[tuple[Any, ...]]) -> list[Memory]:
    """Rows of ``MEMORY_COLUMNS`` → memories, with the names of the entities each one mentions."""
    if not rows:
        return []
    names: dict[int, list[str]] = defaultdict(list)
    for mid, name in conn.execute(
        "SELECT mn.mid, e.name FROM mentions AS mn JOIN entities AS e ON e.eid = mn.eid "
        "WHERE mn.scope_id = ? AND mn.mid IN (SELECT value FROM json_each(?)) ORDER BY mn.mid, mn.position",
        (scope_id, json.dumps([row[0] for row in rows])),
    ):
        names[mid].append(name)
    return [_memory(scope, row, names.get(row[0], ())) for row in rows]


def _memory(scope: Scope, row: tuple[Any, ...], entities: Iterable[str]) -> Memory:
    (_, memory_id, text, kind, importance, created_at, event_time, last_used_at, use_count, expires_at, source_ids,
     superseded_by, metadata) = row  # fmt: skip
    return Memory(
        scope=scope,
        text=text,
        kind=MemoryKind(kind),
        importance=importance,
        id=memory_id,
        created_at=created_at,
        event_time=event_time,
        last_used_at=last_used_at,
        use_count=use_count,
        expires_at=expires_at,
        source_ids=tuple(json.loads(source_ids)),
        superseded_by=superseded_by,
        entities=tuple(entities),
        metadata=json.loads(metadata),
    )


def get_memories(conn: sqlite3.Connection, scope: Scope, ids: str) -> list[Memory]:
    scope_id = find_scope(conn, scope)
    if scope_id is None:
        return []
    rows = conn.execute(
        f"SELECT {sql.MEMORY_COLUMNS} FROM memories AS m "
        "WHERE m.scope_id = ? AND m.id IN (SELECT value FROM json_each(?))",
        (scope_id, ids),
    ).fetchall()
    return _memories(conn, scope, scope_id, rows)


def list_memories(
    conn: sqlite3.Connection, scope: Scope, limit: int, after: tuple[float, str] | None, include_inactive: bool
) -> list[Memory]:
    scope_id = find_scope(conn, scope)
    if scope_id is None:
        return []
    conditions = ["m.scope_id = :scope"]
    if not include_inactive:
        conditions.append(sql.ACTIVE)
    if after is not None:
        conditions.append("(m.created_at, m.id) < (:created_at, :id)")
    created_at, memory_id = after or (None, None)
    rows = conn.execute(
        f"SELECT {sql.MEMORY_COLUMNS} FROM memories AS m WHERE {' AND '.join(conditions)} "
        "ORDER BY m.created_at DESC, m.id DESC LIMIT :limit",
        {"scope": scope_id, "now": time.time(), "limit": limit, "created_at": created_at, "id": memory_id},
    ).fetchall()
    return _memories(conn, scope, scope_id, rows)


def count_memories(conn: sqlite3.Connection, scope: Scope, include_inactive: bool) -> int:
    scope_id = find_scope(conn, scope)
    if scope_id is None:
        return 0
    active = "" if include_inactive else f"AND {sql.ACTIVE}"
    statement = f"SELECT count(*) FROM memories AS m WHERE m.scope_id = :scope {active}"
    return conn.execute(statement, {"scope": scope_id, "now": time.time()}).fetchone()[0]


def traverse(conn: sqlite3.Connection, scope: Scope, statement: str, params: dict[str, Any]) -> list[tuple[str, float]]:
    scope_id = find_scope(conn, scope)
    if scope_id is None:
        return []
    return conn.execute(statement, {**params, "scope": scope_id, "now": time.time()}).fetchall()


def graph_search(
    conn: sqlite3.Connection, scope: Scope, statement: str, params: dict[str, Any]
) -> list[tuple[int, float, Memory]]:
    scope_id = find_scope(conn, scope)
    if scope_id is None:
        return []
    rows = conn.execute(statement, {**params, "scope": scope_id}).fetchall()
    memories = _memories(conn, scope, scope_id, [row[2:] for row in rows])
    return [(row[0], row[1], memory) for row, memory in zip(rows, memories, strict=True)]


def core_memories(conn: sqlite3.Connection, scope: Scope) -> list[Memory]:
    scope_id = find_scope(conn, scope)
    if scope_id is None:
        return []
    rows = conn.execute(sql.CORE_MEMORIES, {"scope": scope_id, "now": time.time()}).fetchall()
    return _memories(conn, scope, scope_id, rows)


def usage(conn: sqlite3.Connection, scope: Scope, after: str, limit: int) -> list[MemoryUsage]:
    scope_id = find_scope(conn, scope)
    if scope_id is None:
        return []
    rows = conn.execute(sql.USAGE, {"scope": scope_id, "after": after, "limit": limit, "now": time.time()})
    return [
        MemoryUsage(memory_id, importance, created_at, last_used_at, use_count, json.loads(metadata))
        for memory_id, importance, created_at, last_used_at, use_count, metadata in rows
    ]


def history(conn: sqlite3.Connection, scope: Scope, memory_id: str) -> list[Memory]:
    scope_id = find_scope(conn, scope)
    if scope_id is None:
        return []
    rows = conn.execute(sql.HISTORY, {"scope": scope_id, "id": memory_id, "limit": HISTORY_LIMIT}).fetchall()
    return _memories(conn, scope, scope_id, rows)


def entities(conn: sqlite3.Connection, scope: Scope) -> list[Entity]:
    rows = conn.execute(
        "SELECT e.name, e.type, e.display_name FROM entities AS e JOIN scopes AS s ON s.scope_id = e.scope_id "
        "WHERE s.tenant = ? AND s.user = ? ORDER BY e.name",
        (scope.tenant, scope.user),
    )
    return [Entity(scope, name, entity_type, display_name) for name, entity_type, display_name in rows]


def relationships(conn: sqlite3.Connection, scope: Scope, ids: str | None) -> list[Relationship]:
    scope_id = find_scope(conn, scope)
    if scope_id is None:
        return []
    if ids is None:
        edges = "SELECT src, type, dst, strength FROM edges WHERE scope_id = :scope"
    else:
        wanted = "SELECT mid FROM memories WHERE scope_id = :scope AND id IN (SELECT value FROM json_each(:ids))"
        edges = (
            f"SELECT src, type, dst, strength FROM edges WHERE scope_id = :scope AND src IN ({wanted}) UNION "
            f"SELECT src, type, dst, strength FROM edges WHERE scope_id = :scope AND dst IN ({wanted})"
        )
    rows = conn.execute(
        f"SELECT s.id, e.type, d.id, e.strength FROM ({edges}) AS e "
        "JOIN memories AS s ON s.mid = e.src JOIN memories AS d ON d.mid = e.dst ORDER BY s.id, e.type, d.id",
        {"scope": scope_id, "ids": ids},
    )
    return [Relationship(scope, source, target, edge_type(kind), strength) for source, kind, target, strength in rows]


def embeddings(conn: sqlite3.Connection, scope: Scope, ids: str | None) -> list[tuple[str, bytes]]:
    scope_id = find_scope(conn, scope)
    if scope_id is None:
        return []
    # Given ids: no ORDER BY (the caller orders), or the planner walks the whole scope in mid order to avoid a sort.
    wanted = "ORDER BY m.mid" if ids is None else "AND m.id IN (SELECT value FROM json_each(:ids))"
    return conn.execute(
        "SELECT m.id, v.vector FROM memories AS m JOIN embeddings AS v ON v.mid = m.mid "
        f"WHERE m.scope_id = :scope AND {sql.ACTIVE} {wanted}",
        {"scope": scope_id, "ids": ids, "now": time.time()},
    ).fetchall()


def export_user(conn: sqlite3.Connection, scope: Scope) -> dict[str, Any]:
    scope_id = find_scope(conn, scope)
    if scope_id is None:
        return UserGraph([], [], []).export()
    rows = conn.execute(
        f"SELECT {sql.MEMORY_COLUMNS} FROM memories AS m WHERE m.scope_id = ? ORDER BY m.created_at, m.id", (scope_id,)
    ).fetchall()
    memories = _memories(conn, scope, scope_id, rows)
    return UserGraph(memories, entities(conn, scope), relationships(conn, scope, None)).export()


def changes_since(conn: sqlite3.Connection, seq: int, limit: int) -> list[tuple[int, str, str, str, str]]:
    return conn.execute(
        "SELECT seq, tenant, user, memory_id, op FROM changes WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
    ).fetchall()


def last_seq(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0]


def scopes(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT tenant, user FROM scopes AS s WHERE EXISTS (SELECT 1 FROM memories AS m WHERE m.scope_id = s.scope_id) "
        "ORDER BY tenant, user"
    ).fetchall()
