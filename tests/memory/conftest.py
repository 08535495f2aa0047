from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from memory import MemoryConfig, MemoryEngine
from memory.factory import build_embedder, build_parts
from memory.graph.base import GraphStore
from memory.recall.indexes import DerivedIndexes
from memory.recall.lexical import LexicalIndex
from memory.recall.recall import Recaller
from memory.vectors.faiss_index import FaissVectorIndex
from memory.writes.extraction import DeterministicExtractor
from memory.writes.pipeline import WritePipeline
from memory.writes.queue import DurableQueue

# Models come from installed packages only; never from a hub (tests may set environment, the library never reads it).
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
async def idle_engine(tmp_path: Path) -> AsyncIterator[MemoryEngine]:
    """The real engine, built but not started: nothing applies its write queue until the test calls ``start()``
    (writes wait there, as they do while a store is down or before a restart)."""
    config = MemoryConfig(data_dir=tmp_path / "idle")
    store, embedder, vectors, queue = await build_parts(config)
    engine = MemoryEngine(config, store=store, embedder=embedder, vectors=vectors, queue=queue)
    try:
        yield engine
    finally:
        await engine.close()


@dataclass
class HandDriven:
    """The write pipeline on real parts, its worker not started: the test drives it with ``run_once``."""

    store: GraphStore
    queue: DurableQueue
    pipeline: WritePipeline
    recaller: Recaller


@asynccontextmanager
async def hand_driven(config: MemoryConfig, store: GraphStore, queue: DurableQueue) -> AsyncIterator[HandDriven]:
    """``store`` and ``queue`` as the test made them (opened here), with the real embedder, FAISS and BM25."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    await store.open()
    embedder = build_embedder(config.embedder)
    vectors = FaissVectorIndex.open(config.index_dir, dim=embedder.dim, embedder_name=embedder.name)
    lexical = LexicalIndex()
    indexes = DerivedIndexes(store, vectors, lexical)
    pipeline = WritePipeline(
        queue, DeterministicExtractor(), embedder, store, search_similar=vectors.search, follow=indexes.follow
    )
    await indexes.start()
    try:
        yield HandDriven(store, queue, pipeline, Recaller(embedder, vectors, lexical, store))
    finally:
        await vectors.close()
        await queue.close()
        await embedder.close()
        await store.close()
