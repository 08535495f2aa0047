"""The derived indexes recall reads — vectors (FAISS) and lexical (BM25) — kept in step with the graph store by
following its change log. The store is the system of record; these can always be rebuilt from it."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from memory.graph.base import GraphStore
from memory.graph.paging import every_page
from memory.models import Change, ChangeOp, Memory, Scope, now
from memory.recall.lexical import LexicalIndex, LexicalItem
from memory.recall.multilingual import MultilingualLane
from memory.recall.slot_questions import slot_tags
from memory.recall.sources import kind_of
from memory.vectors.base import VectorIndex
from memory.vectors.sync import apply_changes
from memory.writes.extraction import REPLIED_TO
from memory.writes.slots import slot_of

logger = logging.getLogger(__name__)

FOLLOW_BATCH = 1000
LIST_PAGE = 1000


class DerivedIndexes:
    def __init__(
        self, store: GraphStore, vectors: VectorIndex, lexical: LexicalIndex, lane: MultilingualLane | None = None
    ) -> None:
        self._store = store
        self._vectors = vectors
        self._lexical = lexical
        self._lane = lane
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Lexical postings are rebuilt from the store; the vector index resumes from the seq it saved."""
        async with self._lock:
            for scope in await self._store.scopes():
                async for page in every_page(self._store, scope, limit=LIST_PAGE):
                    self._lexical.add_many(scope, (_lexical_item(m) for m in page if m.active))
        applied = await self.follow()
        logger.info("derived indexes ready (%d changes applied since the vector index was saved)", applied)

    async def follow(self) -> int:
        """Apply every change since the last one applied to both indexes (and the multilingual lane, from its own
        position); returns how many were applied to the first two."""
        applied = 0
        async with self._lock:
            while True:
                changes = await self._store.changes_since(self._vectors.applied_seq, limit=FOLLOW_BATCH)
                if not changes:
                    break
                await apply_changes(self._vectors, self._store, changes)
                await self._apply_lexical(changes)
                self._vectors.applied_seq = changes[-1].seq
                applied += len(changes)
            if self._lane is not None:
                await self._lane.follow()
        return applied

    async def _apply_lexical(self, changes: list[Change]) -> None:
        latest: dict[Scope, dict[str, ChangeOp]] = defaultdict(dict)
        for change in changes:
            latest[change.scope][change.memory_id] = change.op
        at = now()
        for scope, ops in latest.items():
            upserted = [memory_id for memory_id, op in ops.items() if op is ChangeOp.UPSERT]
            memories = await self._store.get_memories(scope, upserted) if upserted else []
            active = [m for m in memories if m.superseded_by is None and (m.expires_at is None or m.expires_at > at)]
            self._lexical.add_many(scope, (_lexical_item(m) for m in active))
            gone = set(ops) - {m.id for m in active}
            if gone:
                self._lexical.remove(scope, list(gone))

    async def drop_scope(self, scope: Scope) -> None:
        async with self._lock:
            await self._vectors.drop_scope(scope)
            self._lexical.drop_scope(scope)
            if self._lane is not None:
                await self._lane.drop_scope(scope)


def _lexical_item(memory: Memory) -> LexicalItem:
    """What the lexical index keeps of a memory: its text, what it replied to as context, its time for recall's
    episode signal and whose words it holds."""
    replied_to = memory.metadata.get(REPLIED_TO)
    slot = slot_of(memory.metadata)
    return LexicalItem(
        memory.id,
        memory.text,
        memory.event_time if memory.event_time is not None else memory.created_at,
        context=replied_to if isinstance(replied_to, str) else "",
        kind=kind_of(memory),
        tags=slot_tags(slot.key) if slot is not None else (),
    )
