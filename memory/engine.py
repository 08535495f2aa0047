"""``MemoryEngine``: the memory library's facade — remember, recall, relate, search the graph, forget, export.

    from memory import MemoryConfig, MemoryEngine

    async with await MemoryEngine.open(MemoryConfig(data_dir="./mem")) as memory:
        await memory.remember("My dog is called Pochi", user_id="alice", importance=0.8, category="pets")
        for hit in await memory.recall("What is my dog's name?", user_id="alice", top_k=3):
            print(hit.score, hit.memory.text)

Every call is scoped to (tenant, user); the tenant defaults to ``config.tenant``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Sequence
from datetime import timedelta
from typing import Any, Literal

from memory.config import MemoryConfig
from memory.embedding.base import Embedder
from memory.graph.base import UNCHANGED, EdgeType, FieldUpdate, GraphStore, NotFound, Unchanged
from memory.models import GraphHit, Memory, MemoryKind, RelationType, Relationship, Scope
from memory.recall.indexes import DerivedIndexes
from memory.recall.lexical import LexicalIndex
from memory.recall.presets import get_preset
from memory.recall.recall import RecalledMemory, Recaller
from memory.scheduler import MemoryScheduler, importance_set_patch, pin_patch, unpin_patch
from memory.vectors.base import VectorIndex
from memory.writes.extraction import DeterministicExtractor, Extractor
from memory.writes.pipeline import PipelineOptions, WritePipeline
from memory.writes.jobs import WriteJob
from memory.writes.queue import DurableQueue

logger = logging.getLogger(__name__)

RetentionPeriod = float | timedelta | Literal["short_term", "long_term"] | None
"""Seconds or a timedelta from now, a named term of ``config.scheduler``, or None: keep forever."""


class MemoryEngine:
    def __init__(
        self,
        config: MemoryConfig,
        *,
        store: GraphStore,
        embedder: Embedder,
        vectors: VectorIndex,
        queue: DurableQueue,
        extractor: Extractor | None = None,
    ) -> None:
        """Prefer :meth:`open`, which builds every part from the config. This constructor takes them injected."""
        self.config = config
        self.store = store
        self.embedder = embedder
        self.vectors = vectors
        self.lexical = LexicalIndex()
        self.queue = queue
        self.extractor = extractor or DeterministicExtractor()
        self.indexes = DerivedIndexes(store, vectors, self.lexical)
        self.recaller = Recaller(embedder, vectors, self.lexical, store)
        self.pipeline = WritePipeline(
            queue,
            self.extractor,
            embedder,
            store,
            search_similar=vectors.search,
            follow=self.indexes.follow,
            options=PipelineOptions(dedupe_threshold=config.dedupe_threshold),
        )
        self._saver: asyncio.Task[None] | None = None
        self._follower: asyncio.Task[None] | None = None
        self.scheduler = MemoryScheduler(store, config.scheduler, follow=self.indexes.follow)

    # --- lifecycle -------------------------------------------------------------------------------------------

    @classmethod
    async def open(cls, config: MemoryConfig) -> MemoryEngine:
        from memory.factory import build_extractor, build_parts

        store, embedder, vectors, queue = await build_parts(config)
        extractor = build_extractor(config)
        engine = cls(config, store=store, embedder=embedder, vectors=vectors, queue=queue, extractor=extractor)
        await engine.start()
        return engine

    async def start(self) -> None:
        await self.indexes.start()
        self.pipeline.start()
        self._saver = asyncio.create_task(self._save_periodically(), name="memory-index-saver")
        self._follower = asyncio.create_task(self._follow_periodically(), name="memory-index-follower")
        self.scheduler.start()

    async def close(self) -> None:
        await self.scheduler.stop()
        await self.pipeline.stop()
        for task in (self._saver, self._follower):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.vectors.save()
        await self.queue.close()
        await self.embedder.close()
        await self.extractor.close()
        await self.store.close()

    async def __aenter__(self) -> MemoryEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _save_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.index_save_interval_s)
            try:
                await self.vectors.save()
            except Exception:
                logger.exception("saving the vector index failed; it will be rebuilt from the store if needed")

    async def _follow_periodically(self) -> None:
        """Writes made elsewhere (another proxy replica on the same Neo4j, the scheduler, an import) reach this
        process's indexes within one interval; this process's own writes are followed as they commit."""
        while True:
            await asyncio.sleep(self.config.index_follow_interval_s)
            try:
                await self.indexes.follow()
            except Exception:
                logger.warning("following the store's change log failed; retrying", exc_info=True)

    def scope(self, user_id: str, tenant: str | None = None) -> Scope:
        return Scope(tenant or self.config.tenant, user_id)

    # --- writes ----------------------------------------------------------------------------------------------

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
        if it repeats one), or None with ``wait=False`` (queued durably; applied in the background)."""
        if not content or not content.strip():
            raise ValueError("content must not be empty")
        if not 0.0 <= importance <= 1.0:
            raise ValueError("importance must be within 0..1")
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

    async def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until every queued write has been applied (tests, benchmarks, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while await self.queue.depth() > 0:
            if time.monotonic() > deadline:
                raise TimeoutError("write queue did not drain")
            await self.pipeline.run_once()
            await asyncio.sleep(0)

    # --- importance, retention, core memory (see memory.scheduler) --------------------------------------------

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
        scope, at = self.scope(user_id, tenant), time.time()
        update = FieldUpdate(
            memory_id,
            importance=UNCHANGED if importance is None else importance,
            expires_at=UNCHANGED if retention_period is UNCHANGED else self._expiry(retention_period, at),
            metadata=None if importance is None else importance_set_patch(importance, at),
        )
        if not await self.store.update_memories(scope, [update]):
            raise NotFound(f"no memory {memory_id!r} for this user")
        await self.indexes.follow()
        memory = await self.store.get_memory(scope, memory_id)
        if memory is None:
            raise NotFound(f"no memory {memory_id!r} for this user")
        return memory

    def _expiry(self, period: RetentionPeriod, at: float) -> float | None:
        terms = self.config.scheduler
        if period is None or (period == "long_term" and terms.long_term_s is None):
            return None
        if isinstance(period, str):
            seconds = {"short_term": terms.short_term_s, "long_term": terms.long_term_s}.get(period)
            if seconds is None:
                raise ValueError(f"retention_period must be 'short_term', 'long_term', seconds or None, not {period!r}")
        else:
            seconds = period.total_seconds() if isinstance(period, timedelta) else float(period)
        if seconds <= 0:
            raise ValueError("retention_period must be positive")
        return at + seconds

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
        tenant: str | None = None,
        skip: Callable[[Memory], bool] | None = None,
    ) -> list[RecalledMemory]:
        """``skip``: memories to leave out (see :meth:`Recaller.recall`)."""
        chosen = get_preset(preset or self.config.recall_preset).with_overrides(top_k=top_k)
        hits = await self.recaller.recall(self.scope(user_id, tenant), query, chosen, skip=skip)
        if hits:
            # Bookkeeping for importance / promotion; never on the caller's path.
            asyncio.get_running_loop().create_task(
                self._record_use(self.scope(user_id, tenant), [h.memory.id for h in hits])
            )
        return hits

    async def _record_use(self, scope: Scope, memory_ids: list[str]) -> None:
        try:
            await self.store.record_use(scope, memory_ids, time.time())
        except Exception:
            logger.warning("could not record memory use", exc_info=True)

    async def get(self, memory_id: str, *, user_id: str, tenant: str | None = None) -> Memory | None:
        return await self.store.get_memory(self.scope(user_id, tenant), memory_id)

    async def graph_search(
        self,
        start_node: str,
        max_depth: int = 2,
        relationship_types: Collection[EdgeType] | None = None,
        *,
        user_id: str,
        tenant: str | None = None,
    ) -> list[GraphHit]:
        return await self.store.graph_search(
            self.scope(user_id, tenant), start_node, max_depth=max_depth, relationship_types=relationship_types
        )

    async def history(self, memory_id: str, *, user_id: str, tenant: str | None = None) -> list[Memory]:
        return await self.store.history(self.scope(user_id, tenant), memory_id)

    async def export(self, user_id: str, *, tenant: str | None = None) -> dict[str, Any]:
        return await self.store.export_user(self.scope(user_id, tenant))

    async def import_user(self, user_id: str, data: dict[str, Any], *, tenant: str | None = None) -> int:
        """Load an export (from any scope, any store) into this user: texts are embedded again with this model."""
        scope = self.scope(user_id, tenant)
        count = await self.store.import_user(scope, data)
        ids = [m["id"] for m in data.get("memories", [])]
        memories = await self.store.get_memories(scope, ids)
        if memories:
            vectors = await self.embedder.embed([m.text for m in memories])
            for memory, vector in zip(memories, vectors, strict=True):
                await self.store.upsert_memory(memory, vector)
        await self.indexes.follow()
        return count

    async def revise(self, memory_id: str, text: str, *, user_id: str, tenant: str | None = None) -> str:
        """Store ``text`` as a new version of the memory, which it SUPERSEDES (the old one stays, inactive, in the
        history). Kind, importance, metadata (core membership included), provenance, event time and expiry carry
        over; entities and the slot (:mod:`memory.writes.slots`) are found again in the new text. Returns the new id.
        NotFound if the memory is not in the scope; ValueError for an empty text or a memory that is superseded
        already (revise its newest version)."""
        from memory.graph.base import WriteBatch
        from memory.models import Entity, new_id, normalise_entity
        from memory.writes.entities import find_entities
        from memory.writes.slots import SLOT_ENTITY_TYPE, single_slot

        if not text or not text.strip():
            raise ValueError("text must not be empty")
        scope = self.scope(user_id, tenant)
        old = await self.store.get_memory(scope, memory_id)
        if old is None:
            raise NotFound(f"no memory {memory_id!r} in this scope")
        if old.superseded_by is not None:
            raise ValueError(f"memory {memory_id!r} is superseded by {old.superseded_by!r} already")
        found = [(normalise_entity(display), display, kind) for display, kind in find_entities(text)]
        metadata = {k: v for k, v in old.metadata.items() if k not in ("slot", "slot_value")}
        if (slot := single_slot(text)) is not None:  # the new text's slot, if it states one (memory.writes.slots)
            metadata |= {"slot": slot.key, "slot_value": slot.value}
            found.append((normalise_entity(slot.entity), slot.entity, SLOT_ENTITY_TYPE))
        new = old.evolve(
            id=new_id(),
            text=text.strip(),
            created_at=time.time(),
            last_used_at=None,
            use_count=0,
            superseded_by=None,
            entities=tuple(dict.fromkeys(key for key, _, _ in found if key)),
            metadata=metadata,
        )
        [vector] = await self.embedder.embed([new.text])
        await self.store.commit(
            WriteBatch(
                job_id=f"revise-{new.id}",
                scope=scope,
                memories=[new],
                embeddings=[vector],
                entities=[Entity(scope, key, kind, display) for key, display, kind in found if key],
                supersessions=[(old.id, new.id)],
            )
        )
        await self.indexes.follow()
        return new.id
