"""``Neo4jGraphStore``: the graph store on Neo4j 5+ through the official async driver.

Storage code only. Every statement lives in :mod:`memory.graph.neo4j.cypher` (the graph model and the change log's
concurrency design are described there); this module binds parameters, runs each operation in one explicit
transaction (``execute_read`` / ``execute_write``, which retry transient failures), and turns records into models.
The transaction functions are in :mod:`~memory.graph.neo4j.writes`, :mod:`~memory.graph.neo4j.traversal` and
:mod:`~memory.graph.neo4j.maintenance`. Each session shares one bookmark manager, so a read sees every write this
store made before it, on a cluster too.

Driver failures surface as the interface's errors, with ``raise … from``: unreachable, expired, read-only or
not-the-leader → :class:`StoreUnavailable` (retry later); anything else from the driver → :class:`GraphStoreError`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from neo4j import AsyncDriver, AsyncGraphDatabase, AsyncSession
from neo4j import exceptions as neo4j_errors

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
from memory.graph.export_format import UserGraph
from memory.graph.neo4j import cypher, maintenance, traversal, writes
from memory.graph.neo4j.config import Neo4jGraphConfig
from memory.graph.neo4j.records import DEFAULT_ENTITY_TYPE, entity_rows, relationship_from_row, scoped
from memory.graph.neo4j.traversal import MEMORY_EDGE_TYPES, Walk
from memory.graph.neo4j.tx import fetch_rows, read_memories, run, run_and_consume, single_value
from memory.graph.paging import check_limit, decode_cursor, in_order_asked, newest_first_page, unique
from memory.graph.validation import check_batch, check_edge_type, check_relationships
from memory.models import Change, ChangeOp, Entity, GraphHit, Memory, Page, Relationship, Scope, now

T = TypeVar("T")

IMPORT_BATCH = 1_000
"""Memories written per transaction by :meth:`Neo4jGraphStore.import_user`."""

_UNAVAILABLE = (
    neo4j_errors.ServiceUnavailable,  # includes IncompleteCommit: a replayed commit is a no-op thanks to the job id
    neo4j_errors.SessionExpired,
    neo4j_errors.ConnectionAcquisitionTimeoutError,
    neo4j_errors.ForbiddenOnReadOnlyDatabase,
    neo4j_errors.Forbidden,  # e.g. writes not allowed for this user (a read-only role)
    neo4j_errors.NotALeader,
    neo4j_errors.TransientError,  # still failing after the driver's own retries
)


class Neo4jGraphStore(GraphStore):
    def __init__(self, uri: str, user: str, password: str, *, database: str = "neo4j") -> None:
        self._uri = uri
        self._auth = (user, password)
        self._database = database
        self._driver: AsyncDriver | None = None
        self._bookmarks = AsyncGraphDatabase.bookmark_manager()

    @classmethod
    def from_config(cls, config: Neo4jGraphConfig, data_dir: Path) -> Neo4jGraphStore:
        """``data_dir`` is not used: everything lives on the server."""
        password = config.password.get_secret_value() if config.password else ""
        return cls(config.uri, config.user, password, database=config.database)

    # --- lifecycle -------------------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._driver is None:
            self._driver = AsyncGraphDatabase.driver(self._uri, auth=self._auth, user_agent="memproxy")
        async with self._session() as session:
            for statement in cypher.SCHEMA:  # schema commands run in their own auto-commit transactions
                await (await run(session, statement)).consume()
            await session.execute_write(run_and_consume, cypher.ENSURE_SEQUENCE)

    async def close(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            await driver.close()

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        if self._driver is None:
            raise RuntimeError("Neo4jGraphStore.open() has not been called")
        try:
            async with self._driver.session(database=self._database, bookmark_manager=self._bookmarks) as session:
                yield session
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"Neo4j at {self._uri} is unavailable: {type(exc).__name__}") from exc
        except (neo4j_errors.Neo4jError, neo4j_errors.DriverError) as exc:
            raise GraphStoreError(f"Neo4j failed: {type(exc).__name__}: {exc}") from exc

    async def _read(self, work: Callable[..., Awaitable[T]], *args: Any) -> T:
        async with self._session() as session:
            return await session.execute_read(work, *args)

    async def _write(self, work: Callable[..., Awaitable[T]], *args: Any) -> T:
        async with self._session() as session:
            return await session.execute_write(work, *args)

    # --- writes ----------------------------------------------------------------------------------------------

    async def commit(self, batch: WriteBatch) -> bool:
        check_batch(batch)
        return await self._write(writes.commit, batch, uuid.uuid4().hex)

    async def upsert_memory(self, memory: Memory, embedding: np.ndarray | None = None) -> None:
        batch = WriteBatch(job_id="", scope=memory.scope, memories=[memory], embeddings=[embedding])
        await self._write(writes.apply, batch)

    async def upsert_entity(self, entity: Entity) -> None:
        await self._write(run_and_consume, cypher.UPSERT_ENTITIES, scoped(entity.scope, entities=entity_rows([entity])))

    async def add_relationship(self, relationship: Relationship) -> None:
        check_edge_type(relationship.type)
        await self._write(writes.merge_edges, relationship.scope, [relationship])

    async def record_use(self, scope: Scope, memory_ids: Sequence[str], at: float) -> None:
        ids = unique(memory_ids)
        if ids:
            await self._write(run_and_consume, cypher.RECORD_USE, scoped(scope, ids=ids, at=at))

    async def update_memories(
        self, scope: Scope, updates: Sequence[FieldUpdate], *, log_changes: bool = True
    ) -> list[str]:
        if not updates:
            return []
        return await self._write(maintenance.update_memories, scope, list(updates), log_changes)

    async def log_expired(self, until: float) -> int:
        return await self._write(maintenance.log_expired, until)

    async def delete_memory(self, scope: Scope, memory_id: str) -> bool:
        return await self._write(writes.delete_memory, scope, memory_id)

    async def delete_user(self, scope: Scope) -> int:
        removed = 0
        while batch := await self._write(writes.delete_user_memories, scope):
            removed += batch
        for statement in (cypher.DELETE_USER_ENTITIES, cypher.DELETE_USER_JOBS):
            while await self._write(single_value, statement, scoped(scope, batch_size=writes.DELETE_BATCH)):
                pass
        return removed

    # --- reads -----------------------------------------------------------------------------------------------

    async def get_memory(self, scope: Scope, memory_id: str) -> Memory | None:
        found = await self.get_memories(scope, [memory_id])
        return found[0] if found else None

    async def get_memories(self, scope: Scope, memory_ids: Sequence[str]) -> list[Memory]:
        if not memory_ids:
            return []
        found = await self._read(read_memories, scope, cypher.GET_MEMORIES, {"ids": list(memory_ids)})
        return in_order_asked(found, memory_ids, key=lambda memory: memory.id)

    async def list_memories(
        self, scope: Scope, *, limit: int = 100, cursor: str | None = None, include_inactive: bool = False
    ) -> Page[Memory]:
        check_limit(limit)
        if cursor is None:
            first = {"include_inactive": include_inactive, "now": now(), "limit": limit + 1}
            fetched = await self._read(read_memories, scope, cypher.LIST_MEMORIES, first)
        else:
            created_at, last_id = decode_cursor(cursor)
            after = {
                "include_inactive": include_inactive,
                "now": now(),
                "limit": limit + 1,
                "created_at": created_at,
                "id": last_id,
            }
            fetched = await self._read(read_memories, scope, cypher.LIST_MEMORIES_AFTER, after)
        return newest_first_page(fetched, limit)

    async def count_memories(self, scope: Scope, *, include_inactive: bool = False) -> int:
        params = scoped(scope, include_inactive=include_inactive, now=now())
        return await self._read(single_value, cypher.COUNT_MEMORIES, params)

    async def neighbours(
        self,
        scope: Scope,
        memory_ids: Collection[str],
        *,
        max_hops: int = 1,
        types: Collection[EdgeType] | None = None,
        limit: int = NEIGHBOURS_LIMIT,
    ) -> dict[str, float]:
        seeds = set(memory_ids)
        if not seeds or max_hops < 1 or limit < 1:
            return {}
        return await self._read(traversal.neighbours, Walk.over(scope, types), seeds, max_hops, limit)

    async def graph_search(
        self,
        scope: Scope,
        start_id: str,
        *,
        max_depth: int = 2,
        relationship_types: Collection[EdgeType] | None = None,
    ) -> list[GraphHit]:
        if max_depth < 1:
            return []
        return await self._read(traversal.graph_search, Walk.over(scope, relationship_types), start_id, max_depth)

    async def history(self, scope: Scope, memory_id: str) -> list[Memory]:
        return await self._read(traversal.history, scope, memory_id)

    async def entities(self, scope: Scope) -> list[Entity]:
        rows = await self._read(fetch_rows, cypher.ENTITIES, scoped(scope))
        return [Entity(scope, r["name"], r["type"] or DEFAULT_ENTITY_TYPE, r["display_name"]) for r in rows]

    async def usage(self, scope: Scope, *, after: str = "", limit: int = 1000) -> list[MemoryUsage]:
        check_limit(limit)
        return await self._read(maintenance.usage, scope, after, limit)

    async def core_memories(self, scope: Scope) -> list[Memory]:
        return await self._read(read_memories, scope, cypher.CORE_MEMORIES, {"now": now()})

    async def relationships(self, scope: Scope, memory_ids: Collection[str] | None = None) -> list[Relationship]:
        if memory_ids is None:
            rows = await self._read(fetch_rows, cypher.RELATIONSHIPS, scoped(scope, types=list(MEMORY_EDGE_TYPES)))
        elif not memory_ids:
            return []
        else:
            params = scoped(scope, ids=unique(memory_ids), types=list(MEMORY_EDGE_TYPES))
            rows = await self._read(fetch_rows, cypher.RELATIONSHIPS_TOUCHING, params)
        return [relationship_from_row(scope, row) for row in rows]

    async def embeddings(self, scope: Scope, memory_ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
        if memory_ids is None:
            rows = await self._read(fetch_rows, cypher.EMBEDDINGS, scoped(scope, now=now()))
        else:
            wanted = unique(memory_ids)
            found = await self._read(fetch_rows, cypher.EMBEDDINGS_OF, scoped(scope, ids=wanted, now=now()))
            rows = in_order_asked(found, wanted, key=lambda row: row["id"])
        if not rows:
            return [], np.empty((0, 0), dtype=np.float32)
        return [row["id"] for row in rows], np.asarray([row["embedding"] for row in rows], dtype=np.float32)

    # --- portability and followers ---------------------------------------------------------------------------

    async def export_user(self, scope: Scope) -> dict[str, Any]:
        memories = await self._read(read_memories, scope, cypher.EXPORT_MEMORIES, {})
        return UserGraph(memories, await self.entities(scope), await self.relationships(scope)).export()

    async def import_user(self, scope: Scope, data: dict[str, Any]) -> int:
        graph = UserGraph.parse(scope, data)
        check_relationships(graph.relationships)
        memories, relationships = graph.memories, graph.relationships
        for start in range(0, max(len(memories), 1), IMPORT_BATCH):
            chunk = memories[start : start + IMPORT_BATCH]
            await self._write(writes.apply, WriteBatch("", scope, chunk, entities=graph.entities if start == 0 else []))
        for start in range(0, len(relationships), IMPORT_BATCH):
            await self._write(writes.merge_edges, scope, relationships[start : start + IMPORT_BATCH])
        return len(memories)

    async def changes_since(self, seq: int, *, limit: int = 1000) -> list[Change]:
        rows = await self._read(fetch_rows, cypher.CHANGES_SINCE, {"seq": seq, "limit": limit})
        return [Change(r["seq"], Scope(r["tenant"], r["user"]), r["memory_id"], ChangeOp(r["op"])) for r in rows]

    async def last_seq(self) -> int:
        return await self._read(single_value, cypher.LAST_SEQ, {})

    async def scopes(self) -> list[Scope]:
        return [Scope(r["tenant"], r["user"]) for r in await self._read(fetch_rows, cypher.SCOPES, {})]
