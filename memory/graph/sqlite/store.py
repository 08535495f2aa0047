"""The embedded graph store: SQLite from the standard library, no server (the default backend).

Durability: WAL with ``synchronous=FULL``, so a write acknowledged by :meth:`SqliteGraphStore.commit` survives kill -9
and power loss. Concurrency: two connections, each owned by its own worker thread — one for writes (``BEGIN
IMMEDIATE``: other processes on the same file wait up to the busy timeout), one for reads (a WAL snapshot per call) —
so the event loop never blocks and a long write (deleting a large user) does not stall reads. The schema and the
statements are in :mod:`memory.graph.sqlite.schema`, :mod:`~memory.graph.sqlite.reads` and
:mod:`~memory.graph.sqlite.writes`, a connection in :mod:`~memory.graph.sqlite.connection`; this module holds the two
connections and checks arguments (with :mod:`memory.graph.validation` and :mod:`memory.graph.paging`) before any I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from memory.graph.base import (
    NEIGHBOURS_LIMIT,
    EdgeType,
    FieldUpdate,
    GraphStore,
    GraphStoreError,
    MemoryUsage,
    StoreUnavailable,
    WriteBatch,
)
from memory.graph.operations.traversal import EdgeFilter
from memory.graph.paging import check_limit, decode_cursor, in_order_asked, newest_first_page, unique
from memory.graph.sqlite import reads, writes
from memory.graph.sqlite import schema as sql
from memory.graph.sqlite.config import SqliteGraphConfig
from memory.graph.sqlite.connection import Connection
from memory.graph.validation import check_batch, check_edge_type
from memory.models import Change, ChangeOp, Entity, GraphHit, Memory, Page, Relationship, Scope

R = TypeVar("R")


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
        self._writer: Connection | None = None
        self._reader: Connection | None = None

    @classmethod
    def from_config(cls, config: SqliteGraphConfig, data_dir: Path) -> SqliteGraphStore:
        return cls(config.file(data_dir))

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
        check_batch(batch)
        return await self._write(writes.commit, batch)

    async def upsert_memory(self, memory: Memory, embedding: np.ndarray | None = None) -> None:
        vector = None if embedding is None else writes.vector_bytes(embedding)
        await self._write(writes.upsert_memory, memory, vector)

    async def upsert_entity(self, entity: Entity) -> None:
        await self._write(writes.upsert_entity, entity)

    async def add_relationship(self, relationship: Relationship) -> None:
        check_edge_type(relationship.type)
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
        return in_order_asked(found, memory_ids, key=lambda memory: memory.id)

    async def list_memories(
        self, scope: Scope, *, limit: int = 100, cursor: str | None = None, include_inactive: bool = False
    ) -> Page[Memory]:
        check_limit(limit)
        after = None if cursor is None else decode_cursor(cursor)
        fetched = await self._read(reads.list_memories, scope, limit + 1, after, include_inactive)
        return newest_first_page(fetched, limit)

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
        follow = EdgeFilter.of(types)
        if max_hops < 1 or limit < 1 or not memory_ids or follow.follows_nothing:
            return {}
        statement = sql.neighbours_sql(max_hops, _edge_filter(follow), follow.shared_entity)
        params = {"seeds": json.dumps(list(memory_ids)), "types": _type_list(follow), "limit": limit}
        return dict(await self._read(reads.traverse, scope, statement, params))

    async def graph_search(
        self,
        scope: Scope,
        start_id: str,
        *,
        max_depth: int = 2,
        relationship_types: Collection[EdgeType] | None = None,
    ) -> list[GraphHit]:
        follow = EdgeFilter.of(relationship_types)
        if max_depth < 1 or follow.follows_nothing:
            return []
        statement = sql.graph_search_sql(max_depth, _edge_filter(follow), follow.shared_entity)
        params = {"seeds": json.dumps([start_id]), "types": _type_list(follow)}
        rows = await self._read(reads.graph_search, scope, statement, params)
        return [GraphHit(memory, depth, strength) for depth, strength, memory in rows]

    async def history(self, scope: Scope, memory_id: str) -> list[Memory]:
        return await self._read(reads.history, scope, memory_id)

    async def entities(self, scope: Scope) -> list[Entity]:
        return await self._read(reads.entities, scope)

    async def usage(self, scope: Scope, *, after: str = "", limit: int = 1000) -> list[MemoryUsage]:
        check_limit(limit)
        return await self._read(reads.usage, scope, after, limit)

    async def core_memories(self, scope: Scope) -> list[Memory]:
        return await self._read(reads.core_memories, scope)

    async def relationships(self, scope: Scope, memory_ids: Collection[str] | None = None) -> list[Relationship]:
        wanted = None if memory_ids is None else json.dumps(list(memory_ids))
        return await self._read(reads.relationships, scope, wanted)

    async def embeddings(self, scope: Scope, memory_ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
        wanted = None if memory_ids is None else unique(memory_ids)
        rows = await self._read(reads.embeddings, scope, None if wanted is None else json.dumps(wanted))
        if wanted is not None:
            rows = in_order_asked(rows, wanted, key=lambda row: row[0])
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

    def _connection(self, name: str, *, in_background: bool = False) -> Connection:
        return Connection(
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


# --- arguments, as the statements of memory.graph.sqlite.schema take them ------------------------------------------


def _edge_filter(follow: EdgeFilter) -> str | None:
    """``"all"`` (any type), ``"listed"`` (the types in ``:types``) or None (no memory-to-memory edges)."""
    if follow.types is None:
        return "all"
    return "listed" if follow.types else None


def _type_list(follow: EdgeFilter) -> str:
    return json.dumps(list(follow.types or ()))


def _matrix(rows: list[tuple[str, bytes]]) -> tuple[list[str], np.ndarray]:
    if not rows:
        return [], np.zeros((0, 0), dtype=np.float32)
    width = len(rows[0][1])
    if any(len(vector) != width for _, vector in rows):
        raise GraphStoreError("stored embeddings have different dimensions; re-embed before rebuilding the index")
    matrix = np.frombuffer(bytearray().join(vector for _, vector in rows), dtype=np.float32)
    return [memory_id for memory_id, _ in rows], matrix.reshape(len(rows), width // 4)
