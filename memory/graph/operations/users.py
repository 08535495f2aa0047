"""A user's whole graph: delete it, export it, import it; and the scopes the store holds."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from memory.models import Scope


class UserOperations(ABC):
    """Whole scopes at once. The export format is one for every backend (:mod:`memory.graph.export_format`)."""

    @abstractmethod
    async def delete_user(self, scope: Scope) -> int:
        """Remove everything of the scope — memories, entities, edges, embeddings, applied job ids. Returns the
        number of memories removed. Leaves a DELETE change per memory so followers drop them too."""

    @abstractmethod
    async def export_user(self, scope: Scope) -> dict[str, Any]:
        """JSON-serialisable: ``{"memories": [...], "entities": [...], "relationships": [...]}`` (no vectors)."""

    @abstractmethod
    async def import_user(self, scope: Scope, data: dict[str, Any]) -> int:
        """Load an export into ``scope`` (ids kept; scope rewritten). Returns memories imported."""

    @abstractmethod
    async def scopes(self) -> list[Scope]:
        """Every scope that has at least one memory."""
