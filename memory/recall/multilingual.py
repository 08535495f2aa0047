"""The multilingual lane: a second vector space, the Universal Sentence Encoder's (``memory.embedding.universal``),
for the users who write Chinese, Japanese or Korean. The bundled MiniLM reads English only and sees those scripts as
noise; USE reads 16 languages into one space, so a Japanese question finds a Japanese memory and an English question
finds it too.

Which memories it holds: every active memory of a user who has written CJK text, and none of anyone else's. The
user's first CJK memory brings all of their memories in (a one-off backfill, any script, so that a Japanese question
also finds what they said in English); from then on each of their writes joins. Users who write only English cost
nothing here — no vectors, no embedding, no RAM.

How it keeps up: like the main vector index it follows the store's change log from its own ``applied_seq`` (saved
with its FAISS files), embedding the texts itself — the store keeps one embedding per memory, the primary model's.
A lane that is new on an existing store starts from seq 0 and so embeds every CJK user's memories in its first
follow (``memproxy memories reindex`` does the same ahead of time, with a progress bar; it resumes where it stopped).

How recall reads it (see :class:`memory.recall.recall.Recaller`): a query with CJK text, for a user in the lane, is
embedded with USE only and searched here; an English query, for a user in the lane, is embedded with both models
(each on its own thread) and the two hit lists merged, each memory at its better similarity; a user not in the lane
is recalled exactly as before. USE puts unrelated text higher than MiniLM does, so its similarities are mapped onto
MiniLM's scale (:func:`as_primary_scale`) before they meet.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from memory.embedding.base import Embedder
from memory.graph.base import GraphStore
from memory.graph.paging import every_page
from memory.recall.lexical import has_cjk
from memory.models import Change, ChangeOp, Memory, Scope, now

if TYPE_CHECKING:
    from memory.vectors.faiss_index import FaissVectorIndex

logger = logging.getLogger(__name__)

LANE_FLOOR = 0.2
"""A USE cosine at or below this is no signal (about the median between unrelated texts: README, *Design
measurements*)."""
PRIMARY_FLOOR = 0.1
"""… and the same point on MiniLM's scale (``RecallPreset.dense_floor``)."""
FOLLOW_BATCH = 1000
LIST_PAGE = 1000


def as_primary_scale(hits: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """USE similarities mapped linearly onto MiniLM's: LANE_FLOOR → PRIMARY_FLOOR, 1 → 1."""
    scale = (1.0 - PRIMARY_FLOOR) / (1.0 - LANE_FLOOR)
    return [(memory_id, PRIMARY_FLOOR + (similarity - LANE_FLOOR) * scale) for memory_id, similarity in hits]


def merge(primary: Sequence[tuple[str, float]], lane: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """One hit list, best first, each memory at the better of its two similarities (``lane`` already mapped)."""
    best: dict[str, float] = dict(primary)
    for memory_id, similarity in lane:
        if similarity > best.get(memory_id, -1.0):
            best[memory_id] = similarity
    return sorted(best.items(), key=lambda hit: hit[1], reverse=True)


class MultilingualLane:
    """The lane's embedder and vector index, kept in step with ``store``. One event loop uses it; :meth:`follow`
    runs under the caller's lock (:class:`memory.recall.indexes.DerivedIndexes`)."""

    def __init__(self, store: GraphStore, index: FaissVectorIndex, load_embedder: Callable[[], Embedder]) -> None:
        """``load_embedder`` is called (in a thread) the first time the lane needs its model: a process whose users
        write only English never loads it."""
        self.index = index
        self._store = store
        self._load_embedder = load_embedder
        self._embedder: Embedder | None = None
        self._loading = asyncio.Lock()

    async def embedder(self) -> Embedder:
        """The lane's model, loaded on first use."""
        if self._embedder is None:
            async with self._loading:
                if self._embedder is None:
                    self._embedder = await asyncio.to_thread(self._load_embedder)
        return self._embedder

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded in this process."""
        return self._embedder is not None

    async def start(self) -> None:
        """Load the model now if anyone is in the lane already (so their first question after a restart does not
        wait for it)."""
        if self.index.scopes():
            await self.embedder()

    @classmethod
    def open(cls, store: GraphStore, index_dir: Path, *, threads: int = 1, query_max_tokens: int = 64,
             resident_bytes: int) -> MultilingualLane:  # fmt: skip
        from memory.embedding.universal import DIM, UniversalSentenceEncoder, universal_name
        from memory.vectors.faiss_index import FaissVectorIndex

        index = FaissVectorIndex.open(
            index_dir, dim=DIM, embedder_name=universal_name(), resident_bytes=resident_bytes
        )
        return cls(store, index, lambda: UniversalSentenceEncoder(threads=threads, query_max_tokens=query_max_tokens))

    def holds(self, scope: Scope) -> bool:
        """The user is in the lane (has written CJK text). No I/O."""
        return self.index.count(scope) > 0

    async def search(self, scope: Scope, query_vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The lane's hits for a USE query vector, on MiniLM's scale."""
        return as_primary_scale(await self.index.search(scope, query_vector, k))

    async def follow(self, progress: Callable[[int], None] | None = None) -> int:
        """Apply every change since the lane's ``applied_seq``; returns how many. ``progress`` is told each batch's
        size (the reindex command's bar)."""
        applied = 0
        while True:
            changes = await self._store.changes_since(self.index.applied_seq, limit=FOLLOW_BATCH)
            if not changes:
                return applied
            await self._apply(changes)
            self.index.applied_seq = changes[-1].seq
            applied += len(changes)
            if progress is not None:
                progress(len(changes))

    async def _apply(self, changes: list[Change]) -> None:
        latest: dict[Scope, dict[str, ChangeOp]] = defaultdict(dict)
        for change in changes:
            latest[change.scope].pop(change.memory_id, None)
            latest[change.scope][change.memory_id] = change.op
        at = now()
        for scope, ops in latest.items():
            upserted = [memory_id for memory_id, op in ops.items() if op is ChangeOp.UPSERT]
            memories = await self._store.get_memories(scope, upserted) if upserted else []
            active = [m for m in memories if m.superseded_by is None and (m.expires_at is None or m.expires_at > at)]
            gone = set(ops) - {m.id for m in active}
            if gone and self.holds(scope):
                await self.index.remove(scope, sorted(gone))
            if not self.holds(scope):
                if not any(has_cjk(m.text) for m in active):
                    continue
                active = await self._all_active(scope)  # the user's first CJK memory: all of theirs come in
                logger.info("multilingual lane: %s joins with %d memories", scope, len(active))
            await self._add(scope, active)

    async def _add(self, scope: Scope, memories: list[Memory]) -> None:
        for start in range(0, len(memories), FOLLOW_BATCH):
            chunk = memories[start : start + FOLLOW_BATCH]
            if chunk:
                vectors = await (await self.embedder()).embed([m.text for m in chunk])
                await self.index.add(scope, [m.id for m in chunk], vectors)

    async def _all_active(self, scope: Scope) -> list[Memory]:
        return [m async for page in every_page(self._store, scope, limit=LIST_PAGE) for m in page if m.active]

    async def drop_scope(self, scope: Scope) -> None:
        await self.index.drop_scope(scope)

    async def save(self) -> None:
        await self.index.save()

    async def close(self) -> None:
        await self.index.save()
        await self.index.close()
        if self._embedder is not None:
            await self._embedder.close()
