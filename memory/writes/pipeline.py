"""The write pipeline: durable queue → extraction → embed → dedupe → graph commit → derived indexes → ack.
A revision job (:mod:`memory.writes.revisions`) takes the same road, without extraction and dedupe.

Delivery is at least once (the queue hands a job out again if its worker died before the ack); application is
exactly once because the graph store commits each job's batch together with its job id and refuses a replay. So a
crash at any point loses nothing (the job is still queued) and applies nothing twice (the replayed commit is a no-op;
the derived indexes follow the store's change log and catch up whatever they missed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np

from memory.embedding.base import Embedder
from memory.graph.base import SHARED_ENTITY, GraphStore, StoreUnavailable, WriteBatch
from memory.models import Entity, Memory, MemoryKind, RelationType, Relationship, Scope, normalise_entity
from memory.writes.duplicates import reads_alike
from memory.writes.extraction import ExtractedMemory, Extraction, Extractor
from memory.writes.jobs import WriteJob
from memory.writes.queue import DurableQueue
from memory.writes.revisions import revised, revision_id
from memory.writes.slots import contradicts, slot_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    dedupe_threshold: float = 0.95
    """Cosine similarity at or above which a new memory merges into an existing one of the same kind."""
    batch_size: int = 64
    lease_s: float = 60.0
    retry_after_s: float = 5.0
    idle_poll_s: float = 0.05


@dataclass(frozen=True, slots=True)
class AppliedJob:
    job_id: str
    memory_ids: tuple[str, ...]
    """The memories the job created or merged into, in extraction order."""
    replayed: bool = False


class WritePipeline:
    def __init__(
        self,
        queue: DurableQueue,
        extractor: Extractor,
        embedder: Embedder,
        store: GraphStore,
        search_similar: Callable[[Scope, np.ndarray, int], Awaitable[list[tuple[str, float]]]],
        follow: Callable[[], Awaitable[int]],
        options: PipelineOptions | None = None,
        after_writes: Callable[[Scope], Awaitable[object]] | None = None,
    ) -> None:
        """``search_similar`` finds near neighbours in the scope (the vector index); ``follow`` brings the derived
        indexes up to the store's change log after each commit; ``after_writes`` is called for each scope a batch
        of jobs wrote to (the per-user cap), its failures logged."""
        self._queue = queue
        self._extractor = extractor
        self._embedder = embedder
        self._store = store
        self._search_similar = search_similar
        self._follow = follow
        self._after_writes = after_writes
        self.options = options or PipelineOptions()
        self._waiters: dict[str, asyncio.Future[AppliedJob]] = {}
        self._wake = asyncio.Event()
        self._applying = asyncio.Lock()
        self._erased: dict[Scope, float] = {}
        """Scope → time it was erased: a job of that scope created earlier (claimed before the erasure, so not
        removed from the queue with it) is dropped instead of bringing the user's data back."""
        self._worker: asyncio.Task[None] | None = None

    # --- producer side ---------------------------------------------------------------------------------------

    async def submit(self, job: WriteJob, *, wait: bool = False) -> AppliedJob | None:
        """Queue the job durably (returns once it is on disk). With ``wait``, also wait until it is applied."""
        waiter: asyncio.Future[AppliedJob] | None = None
        if wait:
            waiter = self._waiters.setdefault(job.job_id, asyncio.get_running_loop().create_future())
        await self._queue.put(job)
        self._wake.set()
        return await waiter if waiter is not None else None

    # --- worker side -----------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="memory-write-pipeline")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None

    async def _run(self) -> None:
        while True:
            try:
                processed = await self.run_once()
            except Exception:  # the worker must survive anything; the job stays queued
                logger.exception("write pipeline iteration failed")
                processed = 0
            if processed == 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.options.idle_poll_s * 20)
                except TimeoutError:
                    pass

    @asynccontextmanager
    async def paused_for_erasure(self, scope: Scope) -> AsyncIterator[None]:
        """Hold the pipeline between jobs while a scope is erased; its older jobs are dropped from then on."""
        async with self._applying:
            self._erased[scope] = time.time()
            yield

    async def run_once(self) -> int:
        """Claim up to a batch of jobs and apply them; returns how many were acked."""
        jobs = await self._queue.claim(limit=self.options.batch_size, lease_s=self.options.lease_s)
        acked = 0
        written: set[Scope] = set()
        finished: list[AppliedJob] = []
        for position, job in enumerate(jobs):
            try:
                async with self._applying:
                    erased_at = self._erased.get(job.scope)
                    if erased_at is not None and job.created_at <= erased_at:
                        applied = AppliedJob(job.job_id, ())
                    else:
                        applied = await self._apply(job)
            except StoreUnavailable as exc:
                # Not the job's fault: released without counting an attempt, so no outage dead-letters a write.
                # The rest of the claim would meet the same outage; it goes back too.
                logger.warning("graph store unavailable; %d job(s) stay queued: %s", len(jobs) - position, exc)
                for waiting in jobs[position:]:
                    await self._queue.release(waiting.job_id, self.options.retry_after_s)
                break
            except Exception as exc:
                logger.exception("write job %s failed", job.job_id)
                await self._queue.fail(job.job_id, f"{type(exc).__name__}: {exc}", self.options.retry_after_s)
                self._resolve_error(job.job_id, exc)
                continue
            await self._queue.ack(job.job_id)
            acked += 1
            finished.append(applied)
            if applied.memory_ids:
                written.add(job.scope)
        for scope in written if self._after_writes is not None else ():
            try:
                await self._after_writes(scope)  # type: ignore[misc]
            except Exception:
                logger.exception("after-write upkeep failed for %s; the next maintenance run tries again", scope)
        for applied in finished:  # a caller who waits sees the upkeep done too (the cap holds when it returns)
            waiter = self._waiters.pop(applied.job_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(applied)
        return acked

    def _resolve_error(self, job_id: str, exc: Exception) -> None:
        waiter = self._waiters.pop(job_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    async def _apply(self, job: WriteJob) -> AppliedJob:
        if job.kind == "revision":
            return await self._revise(job)
        extraction = await self._extractor.extract(job)
        if not extraction.memories:
            await self._store.commit(WriteBatch(job_id=job.job_id, scope=job.scope))
            return AppliedJob(job.job_id, ())
        vectors = await self._embedder.embed([m.text for m in extraction.memories])
        batch, memory_ids = await self._build_batch(job, extraction, vectors)
        fresh = await self._store.commit(batch)
        await self._supersede_contradicted(job, memory_ids)
        await self._follow()
        return AppliedJob(job.job_id, tuple(memory_ids), replayed=not fresh)

    async def _build_batch(
        self, job: WriteJob, extraction: Extraction, vectors: np.ndarray
    ) -> tuple[WriteBatch, list[str]]:
        scope = job.scope
        batch = WriteBatch(job_id=job.job_id, scope=scope)
        memory_ids: list[str] = []
        kept_vectors: list[np.ndarray] = []
        kept: list[Memory] = []
        for extracted, vector in zip(extraction.memories, vectors, strict=True):
            memory = _to_memory(scope, extracted, job.job_id, len(memory_ids))
            target = await self._duplicate_of(scope, memory, vector, kept, kept_vectors)
            if target is None:
                kept.append(memory)
                kept_vectors.append(vector)
                memory_ids.append(memory.id)
                continue
            merged = _merge(target, memory)
            if target in kept:
                kept[kept.index(target)] = merged
            else:
                kept.append(merged)
                kept_vectors.append(None)  # type: ignore[arg-type] - keep the stored embedding
            memory_ids.append(merged.id)
        batch.memories = kept
        batch.embeddings = [v if v is None else np.asarray(v, dtype=np.float32) for v in kept_vectors]
        batch.entities = _entities(scope, extraction.memories)
        for relation in extraction.relations:
            source, target = memory_ids[relation.source], memory_ids[relation.target]
            if source != target:
                batch.relationships.append(
                    Relationship(scope, source, target, RelationType(relation.type), relation.strength)
                )
        return batch, memory_ids

    async def _revise(self, job: WriteJob) -> AppliedJob:
        """A revision (:mod:`memory.writes.revisions`): nothing if the memory is gone or superseded meanwhile."""
        old = await self._store.get_memory(job.scope, str(job.payload.get("memory_id")))
        if old is not None and old.superseded_by == revision_id(job):  # this job, applied before (a replay)
            return AppliedJob(job.job_id, (revision_id(job),), replayed=True)
        if old is None or old.superseded_by is not None:
            await self._store.commit(WriteBatch(job_id=job.job_id, scope=job.scope))
            return AppliedJob(job.job_id, ())
        new, extracted = revised(old, job)
        [vector] = await self._embedder.embed([new.text])
        batch = WriteBatch(
            job_id=job.job_id,
            scope=job.scope,
            memories=[new],
            embeddings=[np.asarray(vector, dtype=np.float32)],
            entities=_entities(job.scope, [extracted]),
            supersessions=[(old.id, new.id)],
        )
        fresh = await self._store.commit(batch)
        await self._follow()
        return AppliedJob(job.job_id, (new.id,), replayed=not fresh)

    async def _duplicate_of(
        self, scope: Scope, memory: Memory, vector: np.ndarray, kept: Sequence[Memory], kept_vectors: Sequence
    ) -> Memory | None:
        threshold = self.options.dedupe_threshold
        for other, other_vector in zip(kept, kept_vectors, strict=True):
            if (
                other_vector is not None
                and other.kind == memory.kind
                and not contradicts(other.metadata, memory.metadata)
                and float(other_vector @ vector) >= threshold
                and reads_alike(other.text, memory.text)
            ):
                return other
        hits = await self._search_similar(scope, vector, 1)
        if hits and hits[0][1] >= threshold:
            existing = await self._store.get_memory(scope, hits[0][0])
            if (
                existing is not None
                and existing.kind == memory.kind
                and existing.superseded_by is None
                and not contradicts(existing.metadata, memory.metadata)
                and reads_alike(existing.text, memory.text)
            ):
                for other in kept:
                    if other.id == existing.id:
                        return other
                return existing
        return None

    async def _supersede_contradicted(self, job: WriteJob, memory_ids: Sequence[str]) -> None:
        """Contradiction → supersede (see :mod:`memory.writes.slots`): for each slot this job's memories state, the
        active holders of that slot — found one SHARED_ENTITY hop away through the slot's entity — are chained oldest
        to newest, each superseded by the next; only the newest statement stays active. Committed as the job
        ``<job id>:slots`` right after the job's own batch, so a replay applies it once."""
        scope = job.scope
        ordered = list(dict.fromkeys(memory_ids))
        stated: dict[str, list[Memory]] = {}
        for memory in await self._store.get_memories(scope, ordered):
            slot = slot_of(memory.metadata)
            if slot is not None and memory.active:
                stated.setdefault(slot.key, []).append(memory)
        batch = WriteBatch(job_id=f"{job.job_id}:slots", scope=scope)
        rank = {memory_id: position for position, memory_id in enumerate(ordered)}
        updated: dict[str, Memory] = {}
        for key, own in stated.items():
            reached = await self._store.neighbours(scope, [m.id for m in own], max_hops=1, types=[SHARED_ENTITY])
            holders = {m.id: m for m in await self._store.get_memories(scope, list(reached)) if _holds(m, key)}
            holders.update((m.id, m) for m in own)
            chain = sorted(holders.values(), key=lambda m: (_stated_at(m), rank.get(m.id, -1)))
            pairs, restated = _chain(chain)
            batch.supersessions += pairs
            updated.update((m.id, m) for m in restated)
        if batch.supersessions:
            batch.memories = list(updated.values())
            batch.embeddings = [None] * len(batch.memories)
            await self._store.commit(batch)


def _entities(scope: Scope, memories: Sequence[ExtractedMemory]) -> list[Entity]:
    """The entities the memories mention, once each (the first display name and type found)."""
    entities: dict[str, Entity] = {}
    for extracted in memories:
        for display, entity_type in extracted.entities:
            key = normalise_entity(display)
            if key:
                entities.setdefault(key, Entity(scope, key, entity_type, display))
    return list(entities.values())


def _holds(memory: Memory, key: str) -> bool:
    slot = slot_of(memory.metadata)
    return slot is not None and slot.key == key and memory.active


def _stated_at(memory: Memory) -> float:
    return memory.created_at if memory.event_time is None else memory.event_time


def _chain(holders: Sequence[Memory]) -> tuple[list[tuple[str, str]], list[Memory]]:
    """(old, new) pairs joining the holders oldest to newest, and the memories that changed: a restatement of the
    same value hands its provenance and importance on to the newer statement (a merge, with the history kept)."""
    pairs: list[tuple[str, str]] = []
    changed: dict[str, Memory] = {}
    if not holders:
        return pairs, []
    older = holders[0]
    for newer in holders[1:]:
        pairs.append((older.id, newer.id))
        if not contradicts(older.metadata, newer.metadata):
            newer = newer.evolve(
                source_ids=tuple(dict.fromkeys((*older.source_ids, *newer.source_ids))),
                importance=max(older.importance, newer.importance),
            )
            changed[newer.id] = newer
        older = newer
    return pairs, list(changed.values())


def _to_memory(scope: Scope, extracted: ExtractedMemory, job_id: str, position: int) -> Memory:
    """Ids derive from the job id and the position, so a replayed job produces the same ids."""
    return Memory(
        scope=scope,
        text=extracted.text,
        kind=MemoryKind(extracted.kind),
        importance=extracted.importance,
        id=f"{job_id}-{position}",
        event_time=extracted.event_time,
        source_ids=tuple(extracted.source_ids),
        entities=tuple(dict.fromkeys(normalise_entity(name) for name, _ in extracted.entities if name.strip())),
        metadata=dict(extracted.metadata),
    )


def _merge(existing: Memory, duplicate: Memory) -> Memory:
    """A near-duplicate strengthens the memory it repeats: provenance and entities are united, importance kept at
    the higher value, the newest event time wins."""
    return existing.evolve(
        source_ids=tuple(dict.fromkeys((*existing.source_ids, *duplicate.source_ids))),
        entities=tuple(dict.fromkeys((*existing.entities, *duplicate.entities))),
        importance=max(existing.importance, duplicate.importance),
        event_time=max(filter(None, (existing.event_time, duplicate.event_time)), default=None),
        metadata={**duplicate.metadata, **existing.metadata},
    )
