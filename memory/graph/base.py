"""The graph store interface: the system of record for memories, entities and relationships.

Two backends implement it — :class:`memory.graph.sqlite.store.SqliteGraphStore` (embedded default) and
:class:`memory.graph.neo4j.store.Neo4jGraphStore` — and one conformance suite (tests/memory/graph) runs against both.
Backends hold storage code only: extraction, scoring and consolidation live elsewhere, once.

Rules every backend keeps:
- every method takes a :class:`Scope` and touches nothing outside it; ids from another scope behave as missing;
- :meth:`GraphStore.commit` applies a :class:`WriteBatch` atomically together with its job id, so a job replayed
  after a crash changes nothing the second time (returns False);
- every change to a memory appends to a change log with a monotonically increasing ``seq``
  (:meth:`GraphStore.changes_since`), from which the vector index and, later, replicas follow the store;
- embeddings are stored with their memory (float32), so the vector index can be rebuilt without re-embedding.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, Literal

import numpy as np

from memory.models import Change, Entity, GraphHit, Memory, Page, RelationType, Relationship, Scope

SHARED_ENTITY = "MENTIONS"
"""Pseudo relationship type for :meth:`GraphStore.neighbours`: memories that MENTION a common entity."""

EdgeType = RelationType | str

NEIGHBOURS_LIMIT = 200
"""Default cap of :meth:`GraphStore.neighbours` (a hub entity mentioned by most memories would otherwise return all)."""

CORE_SINCE: Final = "core_since"
"""The metadata key that makes a memory part of its user's core memory: the time it joined (a number). Both backends
index it, so :meth:`GraphStore.core_memories` never reads the whole scope."""


class Unchanged(Enum):
    UNCHANGED = "unchanged"


UNCHANGED: Final = Unchanged.UNCHANGED
"""For :class:`FieldUpdate`: leave this field as it is."""


class GraphStoreError(Exception):
    """Root of the store's errors (a backend maps its driver's failures to these, with ``raise … from``)."""


class StoreUnavailable(GraphStoreError):
    """The store cannot be reached or is read-only right now; the caller may retry later."""


class NotFound(GraphStoreError):
    """A referenced memory does not exist in this scope."""


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


class GraphStore(ABC):
    """Async, scoped, typed access to the memory graph."""

    # --- lifecycle -------------------------------------------------------------------------------------------

    @abstractmethod
    async def open(self) -> None:
        """Connect and create the schema / constraints / indexes if missing. Idempotent."""

    @abstractmethod
    async def close(self) -> None: ...

    # --- writes ----------------------------------------------------------------------------------------------

    @abstractmethod
    async def commit(self, batch: WriteBatch) -> bool:
        """Apply the batch atomically. False (and no change at all) if ``batch.job_id`` was applied before."""

    @abstractmethod
    async def upsert_memory(self, memory: Memory, embedding: np.ndarray | None = None) -> None:
        """Insert or replace one memory (and its MENTIONS of ``memory.entities``, creating missing entities)."""

    @abstractmethod
    async def upsert_entity(self, entity: Entity) -> None: ...

    @abstractmethod
    async def add_relationship(self, relationship: Relationship) -> None:
        """Create or update (strength) an edge between two memories of the scope; NotFound if either is missing."""

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
    async def log_expired(self, until: float) -> int:
        """Across all scopes: append an UPSERT change for every unsuperseded memory whose ``expires_at`` passed
        since the previous call, up to ``until`` (never beyond the store's clock), so followers drop it. Returns how
        many. Expiry itself is a matter of time; this is how the derived indexes hear of it."""

    @abstractmethod
    async def delete_memory(self, scope: Scope, memory_id: str) -> bool:
        """Remove the memory, its edges and its embedding. False if it did not exist."""

    @abstractmethod
    async def delete_user(self, scope: Scope) -> int:
        """Remove everything of the scope — memories, entities, edges, embeddings, applied job ids. Returns the
        number of memories removed. Leaves a DELETE change per memory so followers drop them too."""

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
    async def neighbours(
        self,
        scope: Scope,
        memory_ids: Collection[str],
        *,
        max_hops: int = 1,
        types: Collection[EdgeType] | None = None,
        limit: int = NEIGHBOURS_LIMIT,
    ) -> dict[str, float]:
        """Active memories reachable from the seeds within ``max_hops`` (edges in either direction), excluding
        the seeds, mapped to the best product of strengths on a path: the ``limit`` strongest (ties by id).
        ``SHARED_ENTITY`` counts memory→entity→memory as one hop of strength 1. ``types=None`` means all
        memory-to-memory types plus SHARED_ENTITY."""

    @abstractmethod
    async def graph_search(
        self,
        scope: Scope,
        start_id: str,
        *,
        max_depth: int = 2,
        relationship_types: Collection[EdgeType] | None = None,
    ) -> list[GraphHit]:
        """Breadth-first from ``start_id`` (excluded), each memory once at its smallest depth, ordered by depth
        then strength descending. Includes inactive memories (it is a graph view, not recall)."""

    @abstractmethod
    async def history(self, scope: Scope, memory_id: str) -> list[Memory]:
        """The supersession chain through this memory, oldest first (just ``[memory]`` if it has none)."""

    @abstractmethod
    async def entities(self, scope: Scope) -> list[Entity]: ...

    @abstractmethod
    async def usage(self, scope: Scope, *, after: str = "", limit: int = 1000) -> list[MemoryUsage]:
        """Active memories of the scope with ids greater than ``after``, in id order (keyset pages for a scan)."""

    @abstractmethod
    async def core_memories(self, scope: Scope) -> list[Memory]:
        """Active memories whose metadata holds :data:`CORE_SINCE`, by that value then id (an indexed read)."""

    @abstractmethod
    async def relationships(self, scope: Scope, memory_ids: Collection[str] | None = None) -> list[Relationship]:
        """Memory-to-memory edges of the scope (touching ``memory_ids`` if given)."""

    @abstractmethod
    async def embeddings(self, scope: Scope, memory_ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
        """(ids, float32 matrix) of stored embeddings of active memories (all of the scope if ids is None)."""

    # --- portability and followers ---------------------------------------------------------------------------

    @abstractmethod
    async def export_user(self, scope: Scope) -> dict[str, Any]:
        """JSON-serialisable: ``{"memories": [...], "entities": [...], "relationships": [...]}`` (no vectors)."""

    @abstractmethod
    async def import_user(self, scope: Scope, data: dict[str, Any]) -> int:
        """Load an export into ``scope`` (ids kept; scope rewritten). Returns memories imported."""

    @abstractmethod
    async def changes_since(self, seq: int, *, limit: int = 1000) -> list[Change]:
        """Change-log entries with ``seq`` greater than the given one, ascending, across all scopes."""

    @abstractmethod
    async def last_seq(self) -> int: ...

    @abstractmethod
    async def scopes(self) -> list[Scope]:
        """Every scope that has at least one memory."""
