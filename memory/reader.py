"""Reading memories: one user's as stored, browsed a page at a time, as a graph, exported. Every call is scoped to
(tenant, user); the tenant defaults to ``config.tenant``."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Self

from memory.browsing import MemoryGraph, graph_of, list_filtered
from memory.config import MemoryConfig
from memory.graph.base import EdgeType, GraphStore
from memory.models import GraphHit, Memory, MemoryKind, Page, Scope


class MemoryReader:
    """:class:`~memory.engine.MemoryEngine` is one. Opened on its own (:meth:`open`) it reads the store and starts
    nothing: for a process beside a running proxy (the adapter trainer's command), which must not write."""

    def __init__(self, config: MemoryConfig, store: GraphStore) -> None:
        self.config = config
        self.store = store

    @classmethod
    async def open(cls, config: MemoryConfig) -> MemoryReader:
        from memory.factory import build_store

        store = build_store(config)
        await store.open()
        return cls(config, store)

    async def close(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def scope(self, user_id: str, tenant: str | None = None) -> Scope:
        return Scope(tenant or self.config.tenant, user_id)


    async def get(self, memory_id: str, *, user_id: str, tenant: str | None = None) -> Memory | None:
        return await self.store.get_memory(self.scope(user_id, tenant), memory_id)

    async def list(
        self,
        user_id: str,
        *,
        tenant: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        kind: MemoryKind | str | None = None,
        category: str | None = None,
        include_inactive: bool = False,
    ) -> Page[Memory]:
        """The user's memories newest first, a page at a time (``cursor`` from the previous page); with a ``kind``
        or ``category`` filter a page may come back short (see :func:`~memory.browsing.list_filtered`).
        :class:`~memory.browsing.InvalidCursor` for a cursor no listing gave out."""
        return await list_filtered(
            self.store, self.scope(user_id, tenant), limit=limit, cursor=cursor, kind=kind, category=category,
            include_inactive=include_inactive,
        )  # fmt: skip

    async def count(self, user_id: str, *, tenant: str | None = None, include_inactive: bool = False) -> int:
        return await self.store.count_memories(self.scope(user_id, tenant), include_inactive=include_inactive)

    async def graph(
        self, user_id: str, *, tenant: str | None = None, limit: int = 100, include_inactive: bool = False
    ) -> MemoryGraph:
        """The newest ``limit`` memories with the entities they mention and the edges between them."""
        return await graph_of(self.store, self.scope(user_id, tenant), limit=limit, include_inactive=include_inactive)

    async def graph_search(
        self,
        start_node: str,
        max_depth: int = 2,
        relationship_types: Collection[EdgeType] | None = None,
        *,
        user_id: str,
        tenant: str | None = None,
    ) -> list[GraphHit]:
        return await self.store.graph_search(
            self.scope(user_id, tenant), start_node, max_depth=max_depth, relationship_types=relationship_types
        )

    async def history(self, memory_id: str, *, user_id: str, tenant: str | None = None) -> list[Memory]:
        return await self.store.history(self.scope(user_id, tenant), memory_id)

    async def export(self, user_id: str, *, tenant: str | None = None) -> dict[str, Any]:
        return await self.store.export_user(self.scope(user_id, tenant))

    async def users(self) -> list[Scope]:
        """Every (tenant, user) that has at least one memory."""
        return await self.store.scopes()

    async def last_change(self) -> int:
        """The store's change-log position: it moves with every change to a memory (an audit of "nothing
        changed" compares it before and after)."""
        return await self.store.last_seq()
