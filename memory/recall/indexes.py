"""The derived indexes recall reads — vectors (FAISS) and lexical (BM25) — kept in step with the graph store by
following its change log. The store is the system of record; these can always be rebuilt from it."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from memory.graph.base import GraphStore
from memory.models import ChangeOp, Scope, now
from memory.recall.lexical import LexicalIndex
from memory.vectors.base import VectorIndex

logger = logging.getLogger(__name__)

FOLLOW_BATCH = 1000
LIST_PAGE = 1000


class DerivedIndexes:
    def __init__(self, store: GraphStore, vectors: VectorIndex, lexical: LexicalIndex) -> None:
        self._store = store
        self._vectors = vectors
        self._lexical = lexical
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Lexical postings are rebuilt from the store; the vector index resumes from the seq it saved."""
        async with self._lock:
            for scope in await self._store.scopes():
                cursor = None
                while True:
                    page = await self._store.list_memories(scope, limit=LIST_PAGE, cursor=cursor)
                    self._lexical.add_many(scope, ((m.id, m.text) for m in page.items if m.active))
                    if page.next_cursor is None:
                        break
                    cursor = page.next_cursor
        applied = await self.follow()
        logger.info("derived indexes ready (%d changes applied since the vector index was saved)", applied)

    async def follow(self) -> int:
        """Apply every change since the last one applied; returns how many were applied."""
        applied = 0
        async with self._lock:
            while True:
                changes = await self._store.changes_since(self._vectors.applied_seq, limit=FOLLOW_BATCH)
                if not changes:
                    return applied
                upserts: dict[Scope, set[str]] = defaultdict(set)
                deletes: dict[Scope, set[str]] = defaultdict(set)
                for change in changes:
                    if change.op == ChangeOp.DELETE:
                        deletes[change.scope].add(change.memory_id)
                        upserts[change.scope].discard(change.memory_id)
                    else:
                        upserts[change.scope].add(change.memory_id)
                        deletes[change.scope].discard(change.memory_id)
                for scope, ids in deletes.items():
                    if ids:
                        await self._vectors.remove(scope, list(ids))
                        self._lexical.remove(scope, list(ids))
                for scope, ids in upserts.items():
                    if ids:
                        await self._apply_upserts(scope, ids)
                self._vectors.applied_seq = changes[-1].seq
                applied += len(changes)

    async def _apply_upserts(self, scope: Scope, ids: set[str]) -> None:
        at = now()
        memories = await self._store.get_memories(scope, list(ids))
        active = [m for m in memories if m.superseded_by is None and (m.expires_at is None or m.expires_at > at)]
        gone = ids - {m.id for m in active}
        if gone:
            await self._vectors.remove(scope, list(gone))
            self._lexical.remove(scope, list(gone))
        if not active:
            return
        embedded_ids, matrix = await self._store.embeddings(scope, [m.id for m in active])
        if embedded_ids:
            await self._vectors.add(scope, embedded_ids, matrix)
        self._lexical.add_many(scope, ((m.id, m.text) for m in active))

    async def drop_scope(self, scope: Scope) -> None:
        async with self._lock:
            await self._vectors.drop_scope(scope)
            self._lexical.drop_scope(scope)
