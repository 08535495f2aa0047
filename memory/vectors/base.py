"""The vector index interface: nearest memories by inner product, strictly within one scope."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from memory.models import Scope


class VectorIndex(ABC):
    dim: int

    @abstractmethod
    async def add(self, scope: Scope, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Insert or replace vectors (float32, normalised) under memory ids, in the scope's partition."""

    @abstractmethod
    async def remove(self, scope: Scope, ids: Sequence[str]) -> None:
        """Drop ids from the scope's partition (unknown ids are ignored)."""

    @abstractmethod
    async def drop_scope(self, scope: Scope) -> None: ...

    @abstractmethod
    async def search(self, scope: Scope, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        """Up to k (memory id, similarity) of the scope only, best first."""

    @abstractmethod
    def count(self, scope: Scope) -> int: ...

    @abstractmethod
    async def save(self) -> None:
        """Persist atomically (temp file, fsync, rename), including the change-log seq applied."""

    applied_seq: int
    """The graph store change-log seq this index reflects (see memory.vectors.sync)."""
