"""``Neo4jGraphStore``: the graph store on Neo4j 5+ through the official async driver.

Storage code only. Every statement lives in :mod:`memory.graph.cypher` (the graph model and the change log's
concurrency design are described there); this module binds parameters, runs each operation in one explicit
transaction (``execute_read`` / ``execute_write``, which retry transient failures), and turns records into models.
Each session shares one bookmark manager, so a read sees every write this store made before it, on a cluster too.

Driver failures surface as the interface's errors, with ``raise … from``: unreachable, expired, read-only or
not-the-leader → :class:`StoreUnavailable` (retry later); anything else from the driver → :class:`GraphStoreError`.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, LiteralString, TypeVar

import numpy as np
from neo4j import AsyncDriver, AsyncGraphDatabase, AsyncManagedTransaction, AsyncResult, AsyncSession
from neo4j import exceptions as neo4j_errors

from memory.graph import cypher, export_format
from memory.graph.base import (
    SHARED_ENTITY,
    EdgeType,
    GraphStore,
    GraphStoreError,
    NotFound,
    StoreUnavailable,
    WriteBatch,
)
from memory.models import (
    Change,
    ChangeOp,
    Entity,
    GraphHit,
    Memory,
    MemoryKind,
    Page,
    RelationType,
    Relationship,
    Scope,
    now,
)

T = TypeVar("T")

DELETE_BATCH = 5_000
"""Nodes removed per transaction by :meth:`Neo4jGraphStore.delete_user`."""
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
_MEMORY_EDGE_TYPES = tuple(t.value for t in RelationType)
_DEFAULT_ENTITY_TYPE = Entity.__dataclass_fields__["type"].default


class Neo4jGraphStore(GraphStore):
    def __init__(self, uri: str, user: str, password: str, *, database: str = "neo4j") -> None:
        self._uri = uri
        self._auth = (user, password)
        self._database = database
        self._driver: AsyncDriver | None = None
        self._bookmarks = AsyncGraphDatabase.bookmark_manager()

    # --- lifecycle -------------------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._driver is None:
            self._driver = AsyncGraphDatabase.driver(self._uri, auth=self._auth, user_agent="memproxy")
        async with self._session() as session:
            for statement in cypher.SCHEMA:  # schema commands run in their own auto-commit transactions
                await (await _run(session, statement)).consume()
            await session.execute_write(_run_and_consume, cypher.ENSURE_SEQUENCE)

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
        if batch.embeddings and len(batch.embeddings) != len(batch.memories):
            raise ValueError(f"{len(batch.embeddings)} embeddings for {len(batch.memories)} memories")
        _check_scope(batch.scope, batch.memories, batch.entities, batch.relationships)
        return await self._write(_commit, batch, uuid.uuid4().hex)

    async def upsert_memory(self, memory: Memory, embedding: np.ndarray | None = None) -> None:
        batch = WriteBatch(job_id="", scope=memory.scope, memories=[memory], embeddings=[embedding])
        await self._write(_apply, batch)

    async def upsert_entity(self, entity: Entity) -> None:
        await self._write(
            _run_and_consume, cypher.UPSERT_ENTITIES, _scoped(entity.scope, entities=_entity_rows([entity]))
        )

    async def add_relationship(self, relationship: Relationship) -> None:
        await self._write(_merge_edges, relationship.scope, [relationship])

    async def record_use(self, scope: Scope, memory_ids: Sequence[str], at: float) -> None:
        ids = list(dict.fromkeys(memory_ids))
        if ids:
            await self._write(_run_and_consume, cypher.RECORD_USE, _scoped(scope, ids=ids, at=at))

    async def delete_memory(self, scope: Scope, memory_id: str) -> bool:
        return await self._write(_delete_memory, scope, memory_id)

    async def delete_user(self, scope: Scope) -> int:
        removed = 0
        while batch := await self._write(_delete_user_memories, scope):
            removed += batch
        for statement in (cypher.DELETE_USER_ENTITIES, cypher.DELETE_USER_JOBS):
            while await self._write(_single_value, statement, _scoped(scope, batch_size=DELETE_BATCH)):
                pass
        return removed

    # --- reads -----------------------------------------------------------------------------------------------

    async def get_memory(self, scope: Scope, memory_id: str) -> Memory | None:
        found = await self.get_memories(scope, [memory_id])
        return found[0] if found else None

    async def get_memories(self, scope: Scope, memory_ids: Sequence[str]) -> list[Memory]:
        if not memory_ids:
            return []
        by_id = {m.id: m for m in await self._read(_memories, scope, cypher.GET_MEMORIES, {"ids": list(memory_ids)})}
        return [by_id[i] for i in memory_ids if i in by_id]

    async def list_memories(
        self, scope: Scope, *, limit: int = 100, cursor: str | None = None, include_inactive: bool = False
    ) -> Page[Memory]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if cursor is None:
            first = {"include_inactive": include_inactive, "now": now(), "limit": limit + 1}
            items = await self._read(_memories, scope, cypher.LIST_MEMORIES, first)
        else:
            created_at, last_id = _decode_cursor(cursor)
            after = {
                "include_inactive": include_inactive,
                "now": now(),
                "limit": limit + 1,
                "created_at": created_at,
                "id": last_id,
            }
            items = await self._read(_memories, scope, cypher.LIST_MEMORIES_AFTER, after)
        if len(items) <= limit:
            return Page(items, None)
        items = items[:limit]
        return Page(items, _encode_cursor(items[-1]))

    async def count_memories(self, scope: Scope, *, include_inactive: bool = False) -> int:
        params = _scoped(scope, include_inactive=include_inactive, now=now())
        return await self._read(_single_value, cypher.COUNT_MEMORIES, params)

    async def neighbours(
        self,
        scope: Scope,
        memory_ids: Collection[str],
        *,
        max_hops: int = 1,
        types: Collection[EdgeType] | None = None,
    ) -> dict[str, float]:
        seeds = set(memory_ids)
        if not seeds or max_hops < 1:
            return {}
        return await self._read(_neighbours, _Walk.over(scope, types), seeds, max_hops)

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
        return await self._read(_graph_search, _Walk.over(scope, relationship_types), start_id, max_depth)

    async def history(self, scope: Scope, memory_id: str) -> list[Memory]:
        return await self._read(_history, scope, memory_id)

    async def entities(self, scope: Scope) -> list[Entity]:
        rows = await self._read(_rows, cypher.ENTITIES, _scoped(scope))
        return [Entity(scope, r["name"], r["type"] or _DEFAULT_ENTITY_TYPE, r["display_name"]) for r in rows]

    async def relationships(self, scope: Scope, memory_ids: Collection[str] | None = None) -> list[Relationship]:
        if memory_ids is None:
            rows = await self._read(_rows, cypher.RELATIONSHIPS, _scoped(scope, types=list(_MEMORY_EDGE_TYPES)))
        elif not memory_ids:
            return []
        else:
            params = _scoped(scope, ids=list(dict.fromkeys(memory_ids)), types=list(_MEMORY_EDGE_TYPES))
            rows = await self._read(_rows, cypher.RELATIONSHIPS_TOUCHING, params)
        return [_relationship(scope, row) for row in rows]

    async def embeddings(self, scope: Scope, memory_ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
        if memory_ids is None:
            rows = await self._read(_rows, cypher.EMBEDDINGS, _scoped(scope, now=now()))
        else:
            wanted = list(dict.fromkeys(memory_ids))
            found = await self._read(_rows, cypher.EMBEDDINGS_OF, _scoped(scope, ids=wanted, now=now()))
            by_id = {row["id"]: row for row in found}
            rows = [by_id[i] for i in wanted if i in by_id]
        if not rows:
            return [], np.empty((0, 0), dtype=np.float32)
        return [row["id"] for row in rows], np.asarray([row["embedding"] for row in rows], dtype=np.float32)

    # --- portability and followers ---------------------------------------------------------------------------

    async def export_user(self, scope: Scope) -> dict[str, Any]:
        memories = await self._read(_memories, scope, cypher.EXPORT_MEMORIES, {})
        return {
            "memories": [export_format.export_memory(m) for m in memories],
            "entities": [export_format.export_entity(e) for e in await self.entities(scope)],
            "relationships": [export_format.export_relationship(r) for r in await self.relationships(scope)],
        }

    async def import_user(self, scope: Scope, data: dict[str, Any]) -> int:
        memories = [export_format.import_memory(scope, item) for item in data.get("memories", [])]
        entities = [export_format.import_entity(scope, item) for item in data.get("entities", [])]
        relationships = [export_format.import_relationship(scope, item) for item in data.get("relationships", [])]
        for start in range(0, max(len(memories), 1), IMPORT_BATCH):
            chunk = memories[start : start + IMPORT_BATCH]
            await self._write(_apply, WriteBatch("", scope, chunk, entities=entities if start == 0 else []))
        for start in range(0, len(relationships), IMPORT_BATCH):
            await self._write(_merge_edges, scope, relationships[start : start + IMPORT_BATCH])
        return len(memories)

    async def changes_since(self, seq: int, *, limit: int = 1000) -> list[Change]:
        rows = await self._read(_rows, cypher.CHANGES_SINCE, {"seq": seq, "limit": limit})
        return [Change(r["seq"], Scope(r["tenant"], r["user"]), r["memory_id"], ChangeOp(r["op"])) for r in rows]

    async def last_seq(self) -> int:
        return await self._read(_single_value, cypher.LAST_SEQ, {})

    async def scopes(self) -> list[Scope]:
        return [Scope(r["tenant"], r["user"]) for r in await self._read(_rows, cypher.SCOPES, {})]


# --- transaction functions (each runs inside execute_read / execute_write, and may be retried whole) ---------------


async def _run(
    tx: AsyncManagedTransaction | AsyncSession, statement: LiteralString, parameters: dict[str, Any] | None = None
) -> AsyncResult:
    """The one place a statement is sent; ``statement`` is always a constant of :mod:`memory.graph.cypher`."""
    return await tx.run(statement, parameters or {})


async def _run_and_consume(
    tx: AsyncManagedTransaction, statement: LiteralString, parameters: dict[str, Any] | None = None
) -> None:
    await (await _run(tx, statement, parameters)).consume()


async def _rows(
    tx: AsyncManagedTransaction, statement: LiteralString, parameters: dict[str, Any]
) -> list[dict[str, Any]]:
    return await (await _run(tx, statement, parameters)).data()


async def _single_value(tx: AsyncManagedTransaction, statement: LiteralString, parameters: dict[str, Any]) -> Any:
    record = await (await _run(tx, statement, parameters)).single(strict=True)
    return record[0]


async def _memories(
    tx: AsyncManagedTransaction, scope: Scope, statement: LiteralString, extra: dict[str, Any]
) -> list[Memory]:
    """Rows of ``RETURN m {…} AS memory`` as models; ``extra`` is every parameter but the scope's."""
    return [_memory(scope, row["memory"]) for row in await _rows(tx, statement, _scoped(scope, **extra))]


async def _commit(tx: AsyncManagedTransaction, batch: WriteBatch, claim: str) -> bool:
    params = _scoped(batch.scope, job_id=batch.job_id, now=now(), claim=claim)
    if not await _single_value(tx, cypher.CLAIM_JOB, params):
        return False
    await _apply(tx, batch)
    return True


async def _apply(tx: AsyncManagedTransaction, batch: WriteBatch) -> None:
    """Everything of a batch but its job id, ending with its change-log entries."""
    scope = batch.scope
    if batch.entities:
        await _run_and_consume(tx, cypher.UPSERT_ENTITIES, _scoped(scope, entities=_entity_rows(batch.entities)))
    changed: dict[str, None] = {}
    if batch.memories:
        embeddings = list(batch.embeddings) + [None] * (len(batch.memories) - len(batch.embeddings))
        rows = [_memory_row(m, e) for m, e in zip(batch.memories, embeddings, strict=True)]
        ids = [m.id for m in batch.memories]
        mentions = [{"id": m.id, "name": name} for m in batch.memories for name in dict.fromkeys(m.entities)]
        await _run_and_consume(tx, cypher.UPSERT_MEMORIES, _scoped(scope, memories=rows))
        await _run_and_consume(tx, cypher.CLEAR_MENTIONS, _scoped(scope, ids=ids))
        if mentions:
            await _run_and_consume(
                tx, cypher.ADD_MENTIONS, _scoped(scope, mentions=mentions, default_type=_DEFAULT_ENTITY_TYPE)
            )
        changed.update(dict.fromkeys(ids))
    if batch.relationships:
        await _merge_edges(tx, scope, batch.relationships)
    if batch.supersessions:
        pairs = [{"old_id": old, "new_id": new} for old, new in batch.supersessions]
        if await _single_value(tx, cypher.SUPERSEDE, _scoped(scope, pairs=pairs)) < len(pairs):
            raise NotFound("a superseded or superseding memory does not exist in this scope")
        changed.update(dict.fromkeys(old for old, _ in batch.supersessions))
    await _append_changes(tx, scope, ChangeOp.UPSERT, list(changed))


async def _merge_edges(tx: AsyncManagedTransaction, scope: Scope, relationships: Sequence[Relationship]) -> None:
    by_type: dict[RelationType, list[dict[str, Any]]] = {}
    for r in relationships:
        row = {"source_id": r.source_id, "target_id": r.target_id, "strength": float(r.strength)}
        by_type.setdefault(RelationType(r.type), []).append(row)
    for rel_type, rows in by_type.items():
        if await _single_value(tx, cypher.MERGE_EDGES[rel_type], _scoped(scope, edges=rows)) < len(rows):
            raise NotFound(f"a {rel_type.value} edge names a memory that does not exist in this scope")


async def _append_changes(tx: AsyncManagedTransaction, scope: Scope, op: ChangeOp, memory_ids: list[str]) -> None:
    if memory_ids:
        changes = [{"id": memory_id, "op": op.value} for memory_id in memory_ids]
        await _run_and_consume(tx, cypher.APPEND_CHANGES, _scoped(scope, changes=changes, now=now()))


async def _delete_memory(tx: AsyncManagedTransaction, scope: Scope, memory_id: str) -> bool:
    if not await _single_value(tx, cypher.DELETE_MEMORY, _scoped(scope, id=memory_id)):
        return False
    await _append_changes(tx, scope, ChangeOp.DELETE, [memory_id])
    return True


async def _delete_user_memories(tx: AsyncManagedTransaction, scope: Scope) -> int:
    ids = await _single_value(tx, cypher.DELETE_USER_MEMORIES, _scoped(scope, batch_size=DELETE_BATCH))
    await _append_changes(tx, scope, ChangeOp.DELETE, ids)
    return len(ids)


@dataclass(frozen=True, slots=True)
class _Walk:
    """What a traversal follows: memory-to-memory edges of ``edge_types``, shared entities if ``shared``."""

    scope: Scope
    edge_types: list[str]
    shared: bool
    at: float
    """The moment that tells active memories from superseded or expired ones."""

    @classmethod
    def over(cls, scope: Scope, types: Collection[EdgeType] | None) -> _Walk:
        """``None`` is every type and SHARED_ENTITY; a name no edge has matches nothing (as a filter should)."""
        if types is None:
            return cls(scope, list(_MEMORY_EDGE_TYPES), True, now())
        names = {str(t) for t in types}
        return cls(scope, sorted(names - {SHARED_ENTITY}), SHARED_ENTITY in names, now())


async def _expand(
    tx: AsyncManagedTransaction, walk: _Walk, frontier: dict[str, float]
) -> dict[str, tuple[float, bool]]:
    """One hop from ``frontier`` (id → strength so far): reached id → (best strength, active)."""
    rows: list[dict[str, Any]] = []
    start = [{"id": memory_id, "strength": strength} for memory_id, strength in frontier.items()]
    if walk.edge_types:
        params = _scoped(walk.scope, frontier=start, types=walk.edge_types, now=walk.at)
        rows += await _rows(tx, cypher.EXPAND_EDGES, params)
    if walk.shared:
        rows += await _rows(tx, cypher.EXPAND_SHARED_ENTITIES, _scoped(walk.scope, frontier=start, now=walk.at))
    reached: dict[str, tuple[float, bool]] = {}
    for row in rows:
        best = reached.get(row["id"])
        if best is None or row["strength"] > best[0]:
            reached[row["id"]] = (float(row["strength"]), bool(row["active"]))
    return reached


async def _neighbours(tx: AsyncManagedTransaction, walk: _Walk, seeds: set[str], max_hops: int) -> dict[str, float]:
    """Best product of strengths over paths of at most ``max_hops`` (Bellman-Ford limited to that many rounds);
    paths may pass through inactive memories, only active ones are returned."""
    best: dict[str, tuple[float, bool]] = {}
    frontier = dict.fromkeys(seeds, 1.0)
    for _ in range(max_hops):
        improved: dict[str, float] = {}
        for memory_id, (strength, active) in (await _expand(tx, walk, frontier)).items():
            if memory_id not in seeds and (memory_id not in best or strength > best[memory_id][0]):
                best[memory_id] = (strength, active)
                improved[memory_id] = strength
        if not improved:
            break
        frontier = improved
    return {memory_id: strength for memory_id, (strength, active) in best.items() if active}


async def _graph_search(tx: AsyncManagedTransaction, walk: _Walk, start_id: str, max_depth: int) -> list[GraphHit]:
    """Breadth-first: each memory once, at its smallest depth, with the best strength among those shortest paths."""
    found: dict[str, tuple[int, float]] = {}
    frontier = {start_id: 1.0}
    for depth in range(1, max_depth + 1):
        reached = await _expand(tx, walk, frontier)
        frontier = {i: s for i, (s, _) in reached.items() if i != start_id and i not in found}
        if not frontier:
            break
        found.update((i, (depth, s)) for i, s in frontier.items())
    if not found:
        return []
    memories = await _memories(tx, walk.scope, cypher.GET_MEMORIES, {"ids": list(found)})
    hits = [GraphHit(m, *found[m.id]) for m in memories]
    return sorted(hits, key=lambda hit: (hit.depth, -hit.strength, hit.memory.id))


async def _history(tx: AsyncManagedTransaction, scope: Scope, memory_id: str) -> list[Memory]:
    current = await _memories(tx, scope, cypher.GET_MEMORIES, {"ids": [memory_id]})
    if not current:
        return []
    older = await _memories(tx, scope, cypher.HISTORY_OLDER, {"id": memory_id})
    newer = await _memories(tx, scope, cypher.HISTORY_NEWER, {"id": memory_id})
    return [*older, *current, *newer]


# --- parameters and records -------------------------------------------------------------------------------------------


def _scoped(scope: Scope, **parameters: Any) -> dict[str, Any]:
    return {"tenant": scope.tenant, "user": scope.user, **parameters}


def _check_scope(scope: Scope, *groups: Sequence[Memory | Entity | Relationship]) -> None:
    for group in groups:
        for item in group:
            if item.scope != scope:
                raise ValueError(f"a WriteBatch for {scope} holds an item of another scope")


def _memory_row(memory: Memory, embedding: np.ndarray | None) -> dict[str, Any]:
    vector = None
    if embedding is not None:
        array = np.asarray(embedding, dtype=np.float32)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"an embedding must be a non-empty vector, got shape {array.shape}")
        vector = array.tolist()
    properties = {
        "text": memory.text,
        "kind": memory.kind.value,
        "importance": float(memory.importance),
        "created_at": float(memory.created_at),
        "event_time": memory.event_time,
        "last_used_at": memory.last_used_at,
        "use_count": int(memory.use_count),
        "expires_at": memory.expires_at,
        "source_ids": list(memory.source_ids) or None,  # absent when empty; read back as ()
        "superseded_by": memory.superseded_by,
        "entities": list(memory.entities) or None,
        "metadata": json.dumps(memory.metadata, ensure_ascii=False),
    }
    return {"id": memory.id, "properties": properties, "embedding": vector}


def _memory(scope: Scope, row: dict[str, Any]) -> Memory:
    return Memory(
        scope=scope,
        id=row["id"],
        text=row["text"],
        kind=MemoryKind(row["kind"]),
        importance=row["importance"],
        created_at=row["created_at"],
        event_time=row["event_time"],
        last_used_at=row["last_used_at"],
        use_count=row["use_count"] or 0,
        expires_at=row["expires_at"],
        source_ids=tuple(row["source_ids"] or ()),
        superseded_by=row["superseded_by"],
        entities=tuple(row["entities"] or ()),
        metadata=json.loads(row["metadata"]) if row["metadata"] else {},
    )


def _entity_rows(entities: Sequence[Entity]) -> list[dict[str, Any]]:
    return [{"name": e.name, "type": e.type, "display_name": e.display_name} for e in entities]


def _relationship(scope: Scope, row: dict[str, Any]) -> Relationship:
    strength = 1.0 if row["strength"] is None else float(row["strength"])
    return Relationship(scope, row["source_id"], row["target_id"], RelationType(row["type"]), strength)


def _encode_cursor(last: Memory) -> str:
    return base64.urlsafe_b64encode(json.dumps([last.created_at, last.id]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        created_at, memory_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return float(created_at), str(memory_id)
    except (ValueError, TypeError) as exc:
        raise ValueError("invalid page cursor") from exc
