"""Entities (what memories MENTION) and the memory-to-memory relationships of a scope."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection

from memory.models import Entity, Relationship, Scope


class EntityOperations(ABC):
    """Entities and relationships: written one at a time here, or with a memory / a write job."""

    @abstractmethod
    async def upsert_entity(self, entity: Entity) -> None: ...

    @abstractmethod
    async def add_relationship(self, relationship: Relationship) -> None:
        """Create or update (strength) an edge between two memories of the scope; NotFound if either is missing."""

    @abstractmethod
    async def entities(self, scope: Scope) -> list[Entity]: ...

    @abstractmethod
    async def relationships(self, scope: Scope, memory_ids: Collection[str] | None = None) -> list[Relationship]:
        """Memory-to-memory edges of the scope (touching ``memory_ids`` if given)."""
