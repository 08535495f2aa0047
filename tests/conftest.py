"""Fixtures shared by every tier."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from memory.config import MemoryConfig
from memory.engine import MemoryEngine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[MemoryEngine]:
    """The real memory engine (SQLite store, FAISS, BM25, ONNX MiniLM, durable queue) on a fresh temp dir."""
    engine = await MemoryEngine.open(MemoryConfig(data_dir=tmp_path / "mem"))
    try:
        yield engine
    finally:
        await engine.close()
