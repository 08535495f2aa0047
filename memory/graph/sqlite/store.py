"""The embedded graph store: SQLite from the standard library, no server (the default backend).

Durability: WAL with ``synchronous=FULL``, so a write acknowledged by :meth:`SqliteGraphStore.commit` survives kill -9
and power loss. Concurrency: two connections, each owned by its own worker thread — one for writes (``BEGIN
IMMEDIATE``: other processes on the same file wait up to the busy timeout), one for reads (a WAL snapshot per call) —
so the event loop never blocks and a long write (deleting a large user) does not stall reads. The schema and the
statements are in :mod:`memory.graph.sqlite.schema`, :mod:`~memory.graph.sqlite.reads` and
:mod:`~memory.graph.sqlite.writes`; this module holds the connections and checks arguments before any I/O.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import sqlite3
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from memory.graph.sqlite import reads
from memory.graph.sqlite import schema as sql
from memory.graph.sqlite import writes
from memory.graph.base import (
    NEIGHBOURS_LIMIT,
    SHARED_ENTITY,
    EdgeType,
    FieldUpdate,
    GraphStore,
    GraphStoreError,
    MemoryUsage,
    StoreUnavailable,
    WriteBatch,
)
from memory.models import Change, ChangeOp, Entity, GraphHit, Memory, Page, Relationship, Scope
from memory.threads import background

R = TypeVar("R")

_CACHE_KIB = 32 * 1024
_WAL_KEEP_BYTES = 64 * 1024 * 1024
"""After a checkpoint the WAL file is cut back to this (a big delete_user would otherwise leave it huge)."""
_UNAVAILABLE = {
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL,
    sqlite3.SQLITE_NOMEM,
}


class _Connection:
    """One SQLite connection owned by one worker thread; every call runs there, one at a time."""

    def __init__(
        self, path: Path, name: str, *, synchronous_full: bool, busy_timeout_s: float, in_background: bool = False
    ) -> None:
        """``in_background``: the thread runs at a lower CPU priority than the chat path (see memory.threads)."""
        self._path = path
        self._synchronous = "FULL" if synchronous_full else "NORMAL"
        self._busy_timeout_s = busy_timeout_s
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=name, initializer=background() if in_background else None
        )
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self._call(self._connect)

    async def close(self) -> None:
        await self._call(self._disconnect)
        self._executor.shutdown(wait=False)

    async def read(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(conn, *args)`` in one read transaction (one consistent snapshot)."""
        return await self._call(self._transaction, "BEGIN", fn, args)

    async def write(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(conn, *args)`` in one write transaction: all of it is durable when this returns, or none of it."""
        return await self._call(self._transaction, "BEGIN IMMEDIATE", fn, args)

    async def _call(self, fn: Callable[..., R], *args: Any) -> R:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            if exc.sqlite_errorcode & 0xFF in _UNAVAILABLE:
                raise StoreUnavailable(f"SQLite graph store: {exc}") from exc
            raise GraphStoreError(f"SQLite graph store: {exc}") from exc

    def _connect(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=self._busy_timeout_s, cached_statements=512)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute(f"PRAGMA journal_size_limit = {_WAL_KEEP_BYTES}")
            # Never ANALYZE / PRAGMA optimize here: see memory.graph.sqlite.schema.
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _transaction(self, begin: str, fn: Callable[..., R], args: tuple[Any, ...]) -> R:
        conn = self._conn
        if conn is None:
            raise StoreUnavailable("the SQLite graph store is closed")
        conn.execute(begin)
        try:
            result = fn(conn, *args)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the original error says more; SQLite rolls back a failed transaction itself
            raise
        return result


class SqliteGraphStore(GraphStore):
    """:class:`GraphStore` on one SQLite file (created with its schema on :meth:`open`).

    ``synchronous_full=False`` (``synchronous=NORMAL``) still survives a crash of the process but may lose the last
    commits on power loss. ``busy_timeout_s``: how long a write waits for another process's write lock before
    :class:`StoreUnavailable`.
    """

    def __init__(self, path: str | Path, *, synchronous_full: bool = True, busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self._synchronous_full = synchronous_full
        self._busy_timeout_s = busy_timeout_s
        self._writer: _Connection | None = None
        self._reader: _Connection | None = None

    # --- lifecycle -------------------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Writes (the write pipeline, use counts) are background work; reads are on the chat path (recall).
        writer = self._connection("graph-store-writer", in_background=True)
        reader = self._connection("graph-store-reader")
        try:
            await writer.open()
            await writer.write(writes.create_schema)
            await reader.open()
        except BaseException:
            await writer.close()
            await reader.close()
            raise
        self._writer, self._reader = writer, reader

    async def close(self) -> None:
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        for connection in (writer, reader):
            if connection is not None:
                await connection.close()

    # --- writes ----------------------------------------------------------------------------------------------

    async def commit(self, batch: WriteBatch) -> bool:
        _check_batch(batch)
        return await self._write(writes.commit, batch)

    async def upsert_memory(self, memory: Memory, embedding: np.ndarray | None = None) -> None:
        vector = None if embedding is None else writes.vector_bytes(embedding)
        await self._write(writes.upsert_memory, memory, vector)

    async def upsert_entity(self, entity: Entity) -> None:
        await self._write(writes.upsert_entity, entity)

    async def add_relationship(self, relationship: Relationship) -> None:
        writes.check_edge_type(relationship.type)
        await self._write(writes.add_relationship, relationship)

    async def record_use(self, scope: Scope, memory_ids: Sequence[str], at: float) -> None:
        if memory_ids:
            await self._write(writes.record_use, scope, json.dumps(list(memory_ids)), at)

    async def update_memories(
        self, scope: Scope, updates: Sequence[FieldUpdate], *, log_changes: bool = True
    ) -> list[str]:
        if not updates:
            return []
        return await self._write(writes.update_memories, scope, list(updates), log_changes)

    async def log_expired(self, until: float) -> int:
        return await self._write(writes.log_expired, until)

    async def delete_memory(self, scope: Scope, memory_id: str) -> bool:
        return await self._write(writes.delete_memory, scope, memory_id)

    async def delete_user(self, scope: Scope) -> int:
        return await self._write(writes.delete_user, scope)

    # --- reads -----------------------------------------------------------------------------------------------

    async def get_memory(self, scope: Scope, memory_id: str) -> Memory | None:
        found = await self.get_memories(scope, [memory_id])
        return found[0] if found else None

    async def get_memories(self, scope: Scope, memory_ids: Sequence[str]) -> list[Memory]:
        if not memory_ids:
            return []
        found = await self._read(reads.get_memories, scope, json.dumps(list(memory_ids)))
        by_id = {memory.id: memory for memory in found}
        return [by_id[memory_id] for memory_id in memory_ids if memory_id in by_id]

    async def list_memories(
        self, scope: Scope, *, limit: int = 100, cursor: str | None = None, include_inactive: bool = False
    ) -> Page[Memory]:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        after = None if cursor is None else _decode_cursor(cursor)
        memories = await self._read(reads.list_memories, scope, limit + 1, after, include_inactive)
        if len(memories) <= limit:
            return Page(memories, None)
        last = memories[limit - 1]
        return Page(memories[:limit], _encode_cursor(last.created_at, last.id))

    async def count_memories(self, scope: Scope, *, include_inactive: bool = False) -> int:
        return await self._read(reads.count_memories, scope, include_inactive)

    async def neighbours(
        self,
        scope: Scope,
        memory_ids: Collection[str],
        *,
        max_hops: int = 1,
        types: Collection[EdgeType] | None = None,
        limit: int = NEIGHBOURS_LIMIT,
    ) -> dict[str, float]:
        edge_filter, shared_entity, type_list = _traversal(types)
        if max_hops < 1 or limit < 1 or not memory_ids or (edge_filter is None and not shared_entity):
            return {}
        statement = sql.neighbours_sql(max_hops, edge_filter, shared_entity)
        params = {"seeds": json.dumps(list(memory_ids)), "types": type_list, "limit": limit}
        return dict(await self._read(reads.traverse, scope, statement, params))

    async def graph_search(
        self,
        scope: Scope,
        start_id: str,
        *,
        max_depth: int = 2,
        relationship_types: Collection[EdgeType] | None = None,
    ) -> list[GraphHit]:
        edge_filter, shared_entity, type_list = _traversal(relationship_types)
        if max_depth < 1 or (edge_filter is None and not shared_entity):
            return []
        statement = sql.graph_search_sql(max_depth, edge_filter, shared_entity)
        params = {"seeds": json.dumps([start_id]), "types": type_list}
        rows = await self._read(reads.graph_search, scope, statement, params)
        return [GraphHit(memory, depth, strength) for depth, strength, memory in rows]

    async def history(self, scope: Scope, memory_id: str) -> list[Memory]:
        return await self._read(reads.history, scope, memory_id)

    async def entities(self, scope: Scope) -> list[Entity]:
        return await self._read(reads.entities, scope)

    async def usage(self, scope: Scope, *, after: str = "", limit: int = 1000) -> list[MemoryUsage]:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        return await self._read(reads.usage, scope, after, limit)

    async def core_memories(self, scope: Scope) -> list[Memory]:
        return await self._read(reads.core_memories, scope)

    async def relationships(self, scope: Scope, memory_ids: Collection[str] | None = None) -> list[Relationship]:
        wanted = None if memory_ids is None else json.dumps(list(memory_ids))
        return await self._read(reads.relationships, scope, wanted)

    async def embeddings(self, scope: Scope, memory_ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
        wanted = None if memory_ids is None else list(dict.fromkeys(memory_ids))
        rows = await self._read(reads.embeddings, scope, None if wanted is None else json.dumps(wanted))
        if wanted is not None:
            by_id = dict(rows)
            rows = [(memory_id, by_id[memory_id]) for memory_id in wanted if memory_id in by_id]
        return _matrix(rows)

    # --- portability and followers ---------------------------------------------------------------------------

    async def export_user(self, scope: Scope) -> dict[str, Any]:
        return await self._read(reads.export_user, scope)

    async def import_user(self, scope: Scope, data: dict[str, Any]) -> int:
        return await self._write(writes.import_user, scope, data)

    async def changes_since(self, seq: int, *, limit: int = 1000) -> list[Change]:
        rows = await self._read(reads.changes_since, seq, limit)
        return [Change(seq, Scope(tenant, user), memory_id, ChangeOp(op)) for seq, tenant, user, memory_id, op in rows]

    async def last_seq(self) -> int:
        return await self._read(reads.last_seq)

    async def scopes(self) -> list[Scope]:
        return [Scope(tenant, user) for tenant, user in await self._read(reads.scopes)]

    # --- plumbing --------------------------------------------------------------------------------------------

    def _connection(self, name: str, *, in_background: bool = False) -> _Connection:
        return _Connection(
            self.path,
            name,
            synchronous_full=self._synchronous_full,
            busy_timeout_s=self._busy_timeout_s,
            in_background=in_background,
        )

    async def _write(self, fn: Callable[..., R], *args: Any) -> R:
        if self._writer is None:
            raise StoreUnavailable("the SQLite graph store is not open")
        return await self._writer.write(fn, *args)

    async def _read(self, fn: Callable[..., R], *args: Any) -> R:
        if self._reader is None:
            raise StoreUnavailable("the SQLite graph store is not open")
        return await self._reader.read(fn, *args)


# --- argument checks (on the event loop, before any I/O) ---------------------------------------------------------


def _check_batch(batch: WriteBatch) -> None:
    if batch.embeddings and len(batch.embeddings) != len(batch.memories):
        raise ValueError(f"{len(batch.embeddings)} embeddings for {len(batch.memories)} memories")
    scoped: Iterable[Memory | Entity | Relationship] = (*batch.memories, *batch.entities, *batch.relationships)
    for item in scoped:
        if item.scope != batch.scope:
            raise ValueError(f"batch {batch.job_id} for {batch.scope} holds an object of {item.scope}")
    for relationship in batch.relationships:
        writes.check_edge_type(relationship.type)


def _traversal(types: Collection[EdgeType] | None) -> tuple[str | None, bool, str]:
    """(edge filter for :mod:`sqlite_schema`, whether SHARED_ENTITY hops count, the listed types as JSON)."""
    if types is None:
        return "all", True, "[]"
    names = {str(edge_type) for edge_type in types}
    shared_entity = SHARED_ENTITY in names
    names.discard(SHARED_ENTITY)
    return ("listed" if names else None), shared_entity, json.dumps(sorted(names))


def _matrix(rows: list[tuple[str, bytes]]) -> tuple[list[str], np.ndarray]:
    if not rows:
        return [], np.zeros((0, 0), dtype=np.float32)
    width = len(rows[0][1])
    if any(len(vector) != width for _, vector in rows):
        raise GraphStoreError("stored embeddings have different dimensions; re-embed before rebuilding the index")
    matrix = np.frombuffer(bytearray().join(vector for _, vector in rows), dtype=np.float32)
    return [memory_id for memory_id, _ in rows], matrix.reshape(len(rows), width // 4)


def _encode_cursor(created_at: float, memory_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at, memory_id]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        created_at, memory_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return float(created_at), str(memory_id)
    except (binascii.Error, UnicodeError, TypeError, ValueError) as exc:
        raise ValueError("invalid pagination cursor") from exc
