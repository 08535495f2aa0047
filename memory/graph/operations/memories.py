"""Memories: commit a write job, upsert, read, list, count, update, record use, delete — and the types they take."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, Literal

import numpy as np

from memory.models import Entity, Memory, Page, Relationship, Scope

CORE_SINCE: Final = "core_since"
"""The metadata key that makes a memory part of its user's core memory: the time it joined (a number). Every
backend indexes it, so :meth:`MemoryOperations.core_memories` never reads the whole scope."""


class Unchanged(Enum):
    UNCHANGED = "unchanged"


UNCHANGED: Final = Unchanged.UNCHANGED
"""For :class:`FieldUpdate`: leave this field as it is."""


@dataclass(slots=True)
class WriteBatch:
    """Everything one write job commits, atomically, together with its job id."""

    job_id: str
    scope: Scope
    memories: list[Memory] = field(default_factory=list)
    """New or updated memories (an update replaces all fields; ``entities`` replaces the MENTIONS set)."""
    embeddings: list[np.ndarray | None] = field(default_factory=list)
    """One per memory, float32 of the embedder's dimension, or None to keep the stored one."""
    entities: list[Entity] = field(default_factory=list)
    relationships: list[Relationship] = field(default_factory=list)
    supersessions: list[tuple[str, str]] = field(default_factory=list)
    """(old_id, new_id): old gets ``superseded_by = new`` and a SUPERSEDES edge new → old."""


@dataclass(frozen=True, slots=True)
class FieldUpdate:
    """A partial update of one memory: importance, retention, metadata. Everything else stays as stored."""

    memory_id: str
    importance: float | Literal[Unchanged.UNCHANGED] = UNCHANGED
    expires_at: float | None | Literal[Unchanged.UNCHANGED] = UNCHANGED
    """None: never expires."""
    metadata: Mapping[str, Any] | None = None
    """A JSON merge patch (RFC 7396, see :func:`merge_patch`) for the stored metadata; None leaves it."""

    def __post_init__(self) -> None:
        if self.importance is not UNCHANGED and not 0.0 <= self.importance <= 1.0:
            raise ValueError(f"importance must be within 0..1, got {self.importance}")


@dataclass(frozen=True, slots=True)
class MemoryUsage:
    """What the scheduler weighs of a memory (no text, no entities: a scan of 100k of these stays cheap)."""

    id: str
    importance: float
    created_at: float
    last_used_at: float | None
    use_count: int
    metadata: dict[str, Any]


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7396: a key set to None is removed, an object merges into an object key by key, anything else replaces."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping):
            current = merged.get(key)
            merged[key] = merge_patch(current if isinstance(current, Mapping) else {}, value)
        else:
            merged[key] = value
    return merged


def core_since(metadata: Mapping[str, Any]) -> float | None:
    """The :data:`CORE_SINCE` value a backend indexes (None unless it is a number)."""
    value = metadata.get(CORE_SINCE)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class MemoryOperations(ABC):
    """Memories of one scope: the write job's commit, single upserts, reads, partial updates, recall bookkeeping."""

    # --- writes ----------------------------------------------------------------------------------------------

    @abstractmethod
    async def commit(self, batch: WriteBatch) -> bool:
        """Apply the batch atomically. False (and no change at all) if ``batch.job_id`` was applied before."""

    @abstractmethod
    async def upsert_memory(self, memory: Memory, embedding: np.ndarray | None = None) -> None:
        """Insert or replace one memory (and its MENTIONS of ``memory.entities``, creating missing entities)."""

    @abstractmethod
    async def record_use(self, scope: Scope, memory_ids: Sequence[str], at: float) -> None:
        """``use_count += 1`` and ``last_used_at = at`` for each (recall bookkeeping; no change-log entry)."""

    @abstractmethod
    async def update_memories(
        self, scope: Scope, updates: Sequence[FieldUpdate], *, log_changes: bool = True
    ) -> list[str]:
        """Apply the partial updates in one transaction; returns the ids updated (ids missing from the scope are
        skipped). Each one leaves an UPSERT change unless ``log_changes=False`` (bookkeeping such as importance
        decay, which no follower needs: like :meth:`record_use`)."""

    @abstractmethod
    async def delete_memory(self, scope: Scope, memory_id: str) -> bool:
        """Remove the memory, its edges and its embedding. False if it did not exist."""

    # --- reads -----------------------------------------------------------------------------------------------

    @abstractmethod
    async def get_memory(self, scope: Scope, memory_id: str) -> Memory | None: ...

    @abstractmethod
    async def get_memories(self, scope: Scope, memory_ids: Sequence[str]) -> list[Memory]:
        """The ones that exist in the scope, in the order asked."""

    @abstractmethod
    async def list_memories(
        self, scope: Scope, *, limit: int = 100, cursor: str | None = None, include_inactive: bool = False
    ) -> Page[Memory]:
        """Newest first. ``cursor`` is opaque (from the previous page). Inactive = superseded or expired."""

    @abstractmethod
    async def count_memories(self, scope: Scope, *, include_inactive: bool = False) -> int: ...

    @abstractmethod
    async def usage(self, scope: Scope, *, after: str = "", limit: int = 1000) -> list[MemoryUsage]:
        """Active memories of the scope with ids greater than ``after``, in id order (keyset pages for a scan)."""

    @abstractmethod
    async def core_memories(self, scope: Scope) -> list[Memory]:
        """Active memories whose metadata holds :data:`CORE_SINCE`, by that value then id (an indexed read)."""

    @abstractmethod
    async def embeddings(self, scope: Scope, memory_ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
        """(ids, float32 matrix) of stored embeddings of active memories (all of the scope if ids is None)."""
