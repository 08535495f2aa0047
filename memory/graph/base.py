"""The graph store interface: the system of record for memories, entities and relationships.

:class:`GraphStore` is the lifecycle (open, close) plus one small interface per concern, in
:mod:`memory.graph.operations`: memories, entities and relationships, traversal, users and export, the change log.
This module is the interface's public face: its names are imported from here.

Each backend is a folder (:mod:`memory.graph.sqlite`, the embedded default; :mod:`memory.graph.neo4j`) registered
in :mod:`memory.graph.backends`, and one conformance suite (tests/memory/graph) runs against every registered one.
Backends hold storage code only: extraction, scoring and consolidation live elsewhere, once; so does what every
backend does the same way — paging and id order (:mod:`memory.graph.paging`), argument checks
(:mod:`memory.graph.validation`), the export format (:mod:`memory.graph.export_format`).

Rules every backend keeps:
- every method takes a :class:`Scope` and touches nothing outside it; ids from another scope behave as missing;
- :meth:`GraphStore.commit` applies a :class:`WriteBatch` atomically together with its job id, so a job replayed
  after a crash changes nothing the second time (returns False);
- every change to a memory appends to a change log with a monotonically increasing ``seq``
  (:meth:`GraphStore.changes_since`), from which the vector index and, later, replicas follow the store;
- embeddings are stored with their memory (float32), so the vector index can be rebuilt without re-embedding.
"""

from __future__ import annotations

from abc import abstractmethod

from memory.graph.operations.change_log import ChangeLogOperations
from memory.graph.operations.entities import EntityOperations
from memory.graph.operations.memories import (
    CORE_SINCE,
    UNCHANGED,
    FieldUpdate,
    MemoryOperations,
    MemoryUsage,
    Unchanged,
    WriteBatch,
    core_since,
    merge_patch,
)
from memory.graph.operations.traversal import NEIGHBOURS_LIMIT, SHARED_ENTITY, EdgeType, TraversalOperations
from memory.graph.operations.users import UserOperations

__all__ = [
    "CORE_SINCE",
    "NEIGHBOURS_LIMIT",
    "SHARED_ENTITY",
    "UNCHANGED",
    "EdgeType",
    "FieldUpdate",
    "GraphStore",
    "GraphStoreError",
    "MemoryUsage",
    "NotFound",
    "StoreUnavailable",
    "Unchanged",
    "WriteBatch",
    "core_since",
    "merge_patch",
]


class GraphStoreError(Exception):
    """Root of the store's errors (a backend maps its driver's failures to these, with ``raise … from``)."""


class StoreUnavailable(GraphStoreError):
    """The store cannot be reached or is read-only right now; the caller may retry later."""


class NotFound(GraphStoreError):
    """A referenced memory does not exist in this scope."""


class GraphStore(MemoryOperations, EntityOperations, TraversalOperations, UserOperations, ChangeLogOperations):
    """Async, scoped, typed access to the memory graph: every concern's operations, opened and closed as one."""

    @abstractmethod
    async def open(self) -> None:
        """Connect and create the schema / constraints / indexes if missing. Idempotent."""

    @abstractmethod
    async def close(self) -> None: ...
