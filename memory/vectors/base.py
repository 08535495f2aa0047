"""The vector index interface: nearest memories by inner product, strictly within one scope.

Every implementation runs the contract suite in tests/memory/vectors/test_vector_index_contract.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from memory.models import Scope

EXACT_SEARCH_MAX = 50
"""Every implementation searches a scope of up to this many vectors exactly."""


class VectorIndex(ABC):
    dim: int
    """The dimension of every vector added and searched."""

    applied_seq: int
    """The graph store change-log seq this index reflects (see memory.vectors.sync): 0 for a new or cleared index;
    set by whoever applies the changes, kept by :meth:`save`."""

    @abstractmethod
    async def add(self, scope: Scope, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Insert or replace vectors (float32, normalised) under memory ids, in the scope's partition. An id given
        twice in one call keeps its last vector. Raises ValueError unless ``vectors`` is ``(len(ids), dim)``."""

    @abstractmethod
    async def remove(self, scope: Scope, ids: Sequence[str]) -> None:
        """Drop ids from the scope's partition (unknown ids are ignored)."""

    @abstractmethod
    async def drop_scope(self, scope: Scope) -> None:
        """Drop the scope's partition; other scopes keep theirs. An unknown scope is no error."""

    @abstractmethod
    async def search(self, scope: Scope, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        """Up to k (memory id, similarity) of the scope only, best first; none for ``k <= 0`` or an empty scope.
        A scope of up to :data:`EXACT_SEARCH_MAX` vectors is searched exactly (``min(k, count)`` hits, the
        nearest); a larger one may be searched approximately. Raises ValueError unless ``query`` has ``dim``
        values."""

    @abstractmethod
    def count(self, scope: Scope) -> int:
        """How many vectors the scope holds, each id once. No I/O: safe to call on the event loop."""

    @abstractmethod
    def is_resident(self, scope: Scope) -> bool:
        """Whether the scope's vectors are in RAM now, so that a search reads nothing back first; False for a scope
        with none. An index that keeps everything in RAM: True for every scope with vectors. No I/O."""

    @abstractmethod
    async def clear(self) -> None:
        """Drop every scope (before a rebuild from the graph store); ``applied_seq`` goes back to 0."""

    @abstractmethod
    async def settle(self) -> None:
        """Return once the background work that earlier calls started (rebuilding a partition's structure, say) is
        done, for benchmarks and tests that want a steady state. Searches never wait for it; nothing under way:
        returns at once."""

    @abstractmethod
    async def save(self) -> None:
        """Persist atomically (temp file, fsync, rename), including ``applied_seq``: the index opened on the same
        storage afterwards holds the same vectors and ``applied_seq``. An index without storage does nothing."""

    @abstractmethod
    async def close(self) -> None:
        """Finish the work queued and release threads and files (does not save). Safe to call twice; nothing else
        is called after it."""
