"""Traversal: the memories near some others (recall's graph signal), a breadth-first graph view, and the
supersession chain through a memory."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass

from memory.models import GraphHit, Memory, RelationType, Scope

SHARED_ENTITY = "MENTIONS"
"""Pseudo relationship type for :meth:`TraversalOperations.neighbours`: memories that MENTION a common entity."""

EdgeType = RelationType | str

NEIGHBOURS_LIMIT = 200
"""Default cap of :meth:`TraversalOperations.neighbours` (a hub entity mentioned by most memories would otherwise
return all)."""


@dataclass(frozen=True, slots=True)
class EdgeFilter:
    """What a traversal follows, as its ``types`` argument says (the same in every backend)."""

    types: tuple[str, ...] | None
    """Memory-to-memory edge types, sorted; None: every type. A name no edge has matches nothing."""
    shared_entity: bool
    """Whether memory → entity ← memory counts as a hop (:data:`SHARED_ENTITY`)."""

    @classmethod
    def of(cls, types: Collection[EdgeType] | None) -> EdgeFilter:
        """``None`` is every memory-to-memory type and :data:`SHARED_ENTITY`."""
        if types is None:
            return cls(None, True)
        names = {str(edge_type) for edge_type in types}
        return cls(tuple(sorted(names - {SHARED_ENTITY})), SHARED_ENTITY in names)

    @property
    def follows_nothing(self) -> bool:
        return self.types == () and not self.shared_entity


class TraversalOperations(ABC):
    """Walks over the edges of one scope (in either direction) and over shared entities."""

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
