"""``MemoryEngine``: the memory library's facade — remember, recall, relate, browse, forget, export.

    from memory import MemoryConfig, MemoryEngine

    async with await MemoryEngine.open(MemoryConfig(data_dir="./mem")) as memory:
        await memory.remember("My dog is called Pochi", user_id="alice", importance=0.8, category="pets")
        for hit in await memory.recall("What is my dog's name?", user_id="alice", top_k=3):
            print(hit.score, hit.memory.text)

Every call is scoped to (tenant, user); the tenant defaults to ``config.tenant``. The engine is the only way into
memory: its parts (store, indexes, queue, pipeline) are its own. Every memory it writes — remembered, from an
exchange, a revision — goes through the durable queue (extract, embed, commit, ack); a change to one memory's fields
(importance, retention, metadata, core membership) or a deletion is one store transaction, awaited.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from memory.browsing import check_export
from memory.config import MemoryConfig
from memory.embedding.base import Embedder
from memory.graph.base import UNCHANGED, FieldUpdate, GraphStore, NotFound, StoreUnavailable, Unchanged
from memory.metadata_keys import reserved_keys
from memory.models import Memory, MemoryKind, RelationType, Relationship, Scope
from memory.recall.indexes import DerivedIndexes
from memory.recall.lexical import LexicalIndex
from memory.recall.multilingual import MultilingualLane
from memory.recall.presets import get_preset
from memory.recall.recall import RecalledMemory, Recaller
from memory.data_dir_lock import DataDirLock
from memory.reader import MemoryReader
from memory.scheduler import MemoryScheduler, RetentionPeriod, expiry, importance_set_patch, pin_patch, unpin_patch
from memory.stats import IndexStats, QueueStats
from memory.tasks import BackgroundTasks
from memory.vectors.base import VectorIndex
from memory.writes.extraction import DeterministicExtractor, Extractor
from memory.writes.jobs import WriteJob
from memory.writes.pipeline import PipelineOptions, WritePipeline
from memory.writes.queue import DurableQueue

logger = logging.getLogger(__name__)


class MemoryEngine(MemoryReader):
    """Reading a user's memories is :class:`~memory.reader.MemoryReader`'s; writes, recall and upkeep are here."""

    def __init__(
        self,
        config: MemoryConfig,
        *,
        store: GraphStore,
        embedder: Embedder,
        vectors: VectorIndex,
        queue: DurableQueue,
        extractor: Extractor | None = None,
        lane: MultilingualLane | None = None,
    ) -> None:
        """Prefer :meth:`open`, which builds every part from the config. This constructor takes them injected."""
        super().__init__(config, store)
        self._dir_lock: DataDirLock | None = None
        self.embedder = embedder
        self.vectors = vectors
        self.lexical = LexicalIndex()
        self.queue = queue
        self.extractor = extractor or DeterministicExtractor()
        self.lane = lane
        """The multilingual vector space of users who write CJK text (None: off)."""
        self.indexes = DerivedIndexes(store, vectors, self.lexical, lane)
        self.recaller = Recaller(embedder, vectors, self.lexical, store, lane)
        self.scheduler = MemoryScheduler(store, config.scheduler, follow=self.indexes.follow)
        self.pipeline = WritePipeline(
            queue,
            self.extractor,
            embedder,
            store,
            search_similar=vectors.search,
            follow=self.indexes.follow,
            options=PipelineOptions(dedupe_threshold=config.dedupe_threshold),
            after_writes=self.scheduler.evict_over_cap,
        )
        self._tasks = BackgroundTasks()
        """Every background task the engine starts; ended by :meth:`close`."""

    # --- lifecycle -------------------------------------------------------------------------------------------

    @classmethod
    async def open(cls, config: MemoryConfig) -> MemoryEngine:
        from memory.factory import build_extractor, build_lane, build_parts

        lock = DataDirLock.acquire(config.data_dir)  # DataDirInUse if another process has it open
        try:
            store, embedder, vectors, queue = await build_parts(config)
            await queue.reclaim_leases()  # any lease is a dead process's: its jobs are applied now
        except BaseException:
            lock.release()
            raise
        extractor = build_extractor(config.extractor)
        lane = build_lane(config, store)
        engine = cls(
            config, store=store, embedder=embedder, vectors=vectors, queue=queue, extractor=extractor, lane=lane
        )
        engine._dir_lock = lock
        await engine.start()
        return engine

    async def start(self) -> None:
        if self.lane is not None:
            await self.lane.start()
        await self.indexes.start()
        self.pipeline.start()
        self._tasks.every(self.config.index_save_interval_s, self.vectors.save, "memory-index-saver")
        if self.lane is not None:
            self._tasks.every(self.config.index_save_interval_s, self.lane.save, "memory-lane-saver")
        # Writes made elsewhere (another replica on the same Neo4j, the scheduler, an import) reach this process's
        # indexes within one interval; this process's own writes are followed as they commit.
        self._tasks.every(self.config.index_follow_interval_s, self.indexes.follow, "memory-index-follower")
        self.scheduler.start()

    async def close(self) -> None:
        await self.scheduler.stop()
        await self.pipeline.stop()
        await self._tasks.close()
        await self.vectors.save()
        await self.vectors.close()
        if self.lane is not None:
            await self.lane.close()
        await self.queue.close()
        await self.embedder.close()
        await self.extractor.close()
        await self.store.close()
        if self._dir_lock is not None:
            self._dir_lock.release()
            self._dir_lock = None

    # --- writes: new memories through the durable queue -----------------------------------------------------

    async def remember(
        self,
        content: str,
        user_id: str,
        *,
        importance: float = 0.5,
        category: str | None = None,
        metadata: dict[str, Any] | None = None,
        kind: MemoryKind | str = MemoryKind.FACT,
        event_time: float | None = None,
        source_ids: Sequence[str] = (),
        tenant: str | None = None,
        job_id: str | None = None,
        wait: bool = True,
    ) -> str | None:
        """Store a memory through the durable write pipeline. Returns its id (the id of the memory it merged into,
        if it repeats one), or None with ``wait=False`` (queued durably; applied in the background). ValueError for
        an empty text, an importance outside 0..1 or a metadata key the engine keeps for itself."""
        if not content or not content.strip():
            raise ValueError("content must not be empty")
        if not 0.0 <= importance <= 1.0:
            raise ValueError("importance must be within 0..1")
        _check_metadata(metadata)
        extra = dict(metadata or {})
        if category is not None:
            extra["category"] = category
        job = WriteJob.for_memory(
            self.scope(user_id, tenant),
            content,
            kind=str(MemoryKind(kind)),
            importance=importance,
            metadata=extra,
            event_time=event_time,
            source_ids=source_ids,
            job_id=job_id,
        )
        applied = await self.pipeline.submit(job, wait=wait)
        return applied.memory_ids[0] if applied and applied.memory_ids else None

    async def remember_exchange(
        self,
        messages: Sequence[Mapping[str, Any]],
        answer: Mapping[str, Any],
        *,
        user_id: str,
        tenant: str | None = None,
        conversation_id: str | None = None,
        timestamp: float | None = None,
        job_id: str | None = None,
        wait: bool = False,
    ) -> tuple[str, ...] | None:
        """Queue a finished chat exchange (the client's messages with ids, the answer ``{"id", "content"}``, when
        it happened: now unless ``timestamp``) durably. Returns once it is on disk (None), or with ``wait`` once it
        is applied (the ids of the memories it left). The same ``job_id`` twice is applied once (see
        :meth:`WriteJob.for_exchange`)."""
        job = WriteJob.for_exchange(
            self.scope(user_id, tenant),
            [dict(message) for message in messages],
            dict(answer),
            conversation_id=conversation_id,
            timestamp=timestamp,
            job_id=job_id,
        )
        applied = await self.pipeline.submit(job, wait=wait)
        return applied.memory_ids if applied is not None else None

    async def revise(self, memory_id: str, text: str, *, user_id: str, tenant: str | None = None) -> str:
        """Store ``text`` as a new version of the memory, which it SUPERSEDES (the old one stays, inactive, in the
        history), through the durable queue like every write (:mod:`memory.writes.revisions`). Returns the new id.
        NotFound if the memory is not in the scope; ValueError for an empty text or a memory that is superseded
        already (revise its newest version)."""
        if not text or not text.strip():
            raise ValueError("text must not be empty")
        scope = self.scope(user_id, tenant)
        old = await self.store.get_memory(scope, memory_id)
        if old is None:
            raise NotFound(f"no memory {memory_id!r} in this scope")
        if old.superseded_by is not None:
            raise ValueError(f"memory {memory_id!r} is superseded by {old.superseded_by!r} already")
        applied = await self.pipeline.submit(WriteJob.for_revision(scope, memory_id, text), wait=True)
        if applied is None or not applied.memory_ids:  # deleted or revised by someone else meanwhile
            now_old = await self.store.get_memory(scope, memory_id)
            if now_old is None:
                raise NotFound(f"no memory {memory_id!r} in this scope")
            raise ValueError(f"memory {memory_id!r} is superseded by {now_old.superseded_by!r} already")
        return applied.memory_ids[0]

    async def add_relationship(
        self,
        from_memory: str,
        to_memory: str,
        relationship_type: RelationType | str = RelationType.RELATED_TO,
        strength: float = 1.0,
        *,
        user_id: str,
        tenant: str | None = None,
    ) -> None:
        await self.store.add_relationship(
            Relationship(self.scope(user_id, tenant), from_memory, to_memory, RelationType(relationship_type), strength)
        )

    async def forget(self, memory_id: str, *, user_id: str, tenant: str | None = None) -> bool:
        removed = await self.store.delete_memory(self.scope(user_id, tenant), memory_id)
        await self.indexes.follow()
        return removed

    async def forget_user(self, user_id: str, *, tenant: str | None = None) -> int:
        """Everything of the user: queued writes, memories, entities, edges, vectors, lexical postings."""
        scope = self.scope(user_id, tenant)
        async with self.pipeline.paused_for_erasure(scope):
            await self.queue.delete_scope(scope)
            removed = await self.store.delete_user(scope)
            await self.indexes.follow()
            await self.indexes.drop_scope(scope)
        return removed

    async def import_user(self, user_id: str, data: dict[str, Any], *, tenant: str | None = None) -> int:
        """Load an export (from any scope, any store) into this user: texts are embedded again with this model.
        :class:`~memory.browsing.InvalidExport` (nothing written) if an item cannot be read."""
        scope = self.scope(user_id, tenant)
        check_export(scope, data)
        count = await self.store.import_user(scope, data)
        ids = [m["id"] for m in data.get("memories", [])]
        memories = await self.store.get_memories(scope, ids)
        if memories:
            vectors = await self.embedder.embed([m.text for m in memories])
            for memory, vector in zip(memories, vectors, strict=True):
                await self.store.upsert_memory(memory, vector)
        await self.indexes.follow()
        return count

    async def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until every queued write has been applied (tests, benchmarks, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while await self.queue.depth() > 0:
            if time.monotonic() > deadline:
                raise TimeoutError("write queue did not drain")
            await self.pipeline.run_once()
            await asyncio.sleep(0)

    # --- importance, retention, metadata, core memory (see memory.scheduler) ---------------------------------

    async def prioritize(
        self,
        memory_id: str,
        *,
        user_id: str,
        importance: float | None = None,
        retention_period: RetentionPeriod | Literal[Unchanged.UNCHANGED] = UNCHANGED,
        tenant: str | None = None,
    ) -> Memory:
        """Set how much a memory matters (``importance``, the base it decays from, starting now) and how long it
        is kept (``retention_period``: expired memories are no longer recalled, and leave the indexes at the
        scheduler's next run). Left out = unchanged. Returns the memory as stored; NotFound if it does not exist."""
        at = time.time()
        update = FieldUpdate(
            memory_id,
            importance=UNCHANGED if importance is None else importance,
            expires_at=UNCHANGED if retention_period is UNCHANGED else expiry(retention_period, at, self.config.scheduler),
            metadata=None if importance is None else importance_set_patch(importance, at),
        )
        return await self._update(memory_id, update, self.scope(user_id, tenant))

    async def update_metadata(
        self, memory_id: str, patch: Mapping[str, Any], *, user_id: str, tenant: str | None = None
    ) -> Memory:
        """Merge ``patch`` into the memory's metadata (RFC 7396: a key set to None is removed). Returns the memory
        as stored; NotFound if it does not exist; ValueError for a key the engine keeps for itself
        (:data:`~memory.metadata_keys.RESERVED_METADATA`)."""
        _check_metadata(patch)
        return await self._update(memory_id, FieldUpdate(memory_id, metadata=dict(patch)), self.scope(user_id, tenant))

    async def _update(self, memory_id: str, update: FieldUpdate, scope: Scope) -> Memory:
        if not await self.store.update_memories(scope, [update]):
            raise NotFound(f"no memory {memory_id!r} for this user")
        await self.indexes.follow()
        memory = await self.store.get_memory(scope, memory_id)
        if memory is None:
            raise NotFound(f"no memory {memory_id!r} for this user")
        return memory

    async def pin(self, memory_id: str, *, user_id: str, tenant: str | None = None) -> bool:
        """Put an active memory into the user's core memory for good (the scheduler never demotes a pin)."""
        scope = self.scope(user_id, tenant)
        memory = await self.store.get_memory(scope, memory_id)
        if memory is None or not memory.active:
            return False
        update = FieldUpdate(memory_id, metadata=pin_patch(memory, time.time()))
        return bool(await self.store.update_memories(scope, [update]))

    async def unpin(self, memory_id: str, *, user_id: str, tenant: str | None = None) -> bool:
        """Take a memory out of core memory, pinned or promoted; the scheduler will not promote it again."""
        update = FieldUpdate(memory_id, metadata=unpin_patch(time.time()))
        return bool(await self.store.update_memories(self.scope(user_id, tenant), [update]))

    async def core_memories(self, user_id: str, *, tenant: str | None = None) -> list[Memory]:
        """The user's core memories in a fixed order (when each joined, then id): it changes only when membership
        does, so the prompt prefix rendered from it stays cacheable. One indexed read."""
        return await self.store.core_memories(self.scope(user_id, tenant))

    # --- reads -----------------------------------------------------------------------------------------------

    async def recall(
        self,
        query: str,
        user_id: str,
        top_k: int = 10,
        *,
        preset: str | None = None,
        token_budget: int | None = None,
        tenant: str | None = None,
        skip: Callable[[Memory], bool] | None = None,
        at: float | None = None,
    ) -> list[RecalledMemory]:
        """The ``top_k`` memories most relevant to ``query``, best first. ``preset``: None = ``config.recall_preset``;
        ``token_budget``: the recalled texts' estimated tokens at most (a memory that does not fit is skipped and
        the next one tried; None = the preset's); ``skip``: memories to leave out (see :meth:`Recaller.recall`);
        ``at``: the time the query is asked at (None: now), for the periods it names and recency."""
        overrides: dict[str, Any] = {"top_k": top_k}
        if token_budget is not None:
            overrides["token_budget"] = token_budget
        chosen = get_preset(preset or self.config.recall_preset).with_overrides(**overrides)
        scope = self.scope(user_id, tenant)
        hits = await self.recaller.recall(scope, query, chosen, skip=skip, at=at)
        if hits:  # bookkeeping for importance / promotion; never on the caller's path
            self._tasks.spawn(self._record_use(scope, [h.memory.id for h in hits]), "memory-record-use")
        return hits

    async def _record_use(self, scope: Scope, memory_ids: list[str]) -> None:
        try:
            await self.store.record_use(scope, memory_ids, time.time())
        except Exception as exc:  # best effort: a locked or read-only store needs no stack trace
            logger.warning("could not record memory use: %s", exc, exc_info=not isinstance(exc, StoreUnavailable))

    # --- state, for operations -------------------------------------------------------------------------------

    async def write_queue_stats(self) -> QueueStats:
        return QueueStats(
            depth=await self.queue.depth(),
            oldest_age_s=await self.queue.oldest_age_s(),
            dead_letters=await self.queue.dead_letter_count(),
        )

    async def index_stats(self) -> IndexStats:
        return IndexStats(store_seq=await self.store.last_seq(), applied_seq=self.vectors.applied_seq)

    def extraction_stats(self) -> Mapping[str, int]:
        """The extractor's outcome counts (empty for the deterministic one)."""
        return self.extractor.stats()


def _check_metadata(metadata: Mapping[str, Any] | None) -> None:
    reserved = reserved_keys(metadata)
    if reserved:
        raise ValueError(f"metadata key {reserved[0]!r} is the engine's own")

