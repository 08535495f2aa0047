"""A data dir filled with many memories, fast, for a benchmark that runs a proxy on it (``proxy.bench``), and the
depth of its write queue afterwards. Memories are loaded as ``memproxy bench latency`` loads them
(:func:`memory.bench.latency.bulk_load`): write batches straight into the store, with vectors from a pool of real
embedded sentences plus a little noise."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

from memory.bench.latency import bulk_load, sentence
from memory.config import MemoryConfig
from memory.engine import MemoryEngine
from memory.models import Scope
from memory.writes.queue import DurableQueue


@dataclass(frozen=True, slots=True)
class LoadReport:
    memories: int
    load_s: float
    pool_embed_s: float


async def fill_memories(
    config: MemoryConfig, users: Mapping[Scope, int], *, pool_size: int = 1024, seed: int = 7
) -> LoadReport:
    """Bulk-load ``users`` (scope → how many memories) into ``config``'s data dir, then close the engine, which
    saves the vector index, so a proxy started on the dir finds it."""
    rng = random.Random(seed)
    engine = await MemoryEngine.open(config)
    try:
        began = time.perf_counter()
        texts = [sentence(rng) for _ in range(pool_size)]
        pool = await engine.embedder.embed(texts)
        embedded = time.perf_counter()
        loaded = 0
        for scope, count in users.items():
            loaded += await bulk_load(engine, scope, count, texts, pool, rng)
        await engine.indexes.follow()
        await engine.vectors.settle()
        finished = time.perf_counter()
    finally:
        await engine.close()
    return LoadReport(memories=loaded, load_s=round(finished - embedded, 2), pool_embed_s=round(embedded - began, 2))


async def queue_depth(config: MemoryConfig) -> int:
    """Exchanges queued for memory and not applied yet (the background write path's lag)."""
    queue = DurableQueue(config.queue_path)
    try:
        return await queue.depth()
    finally:
        await queue.close()
