"""Argument checks every backend makes the same way, before any I/O: a mistake is a ValueError, and nothing is
written. (The importance range is checked by :class:`~memory.graph.base.FieldUpdate` itself; limits and cursors by
:mod:`memory.graph.paging`.)"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from memory.graph.base import SHARED_ENTITY, EdgeType, WriteBatch
from memory.models import Entity, Memory, Relationship


def check_batch(batch: WriteBatch) -> None:
    """One embedding per memory (or none at all), every object in the batch's scope, memory-to-memory edge types."""
    if batch.embeddings and len(batch.embeddings) != len(batch.memories):
        raise ValueError(f"{len(batch.embeddings)} embeddings for {len(batch.memories)} memories")
    scoped: Iterable[Memory | Entity | Relationship] = (*batch.memories, *batch.entities, *batch.relationships)
    for item in scoped:
        if item.scope != batch.scope:
            raise ValueError(f"batch {batch.job_id} for {batch.scope} holds an object of {item.scope}")
    check_relationships(batch.relationships)


def check_relationships(relationships: Iterable[Relationship]) -> None:
    for relationship in relationships:
        check_edge_type(relationship.type)


def check_edge_type(edge_type: EdgeType) -> None:
    """:data:`SHARED_ENTITY` is a traversal's pseudo type, never a stored edge."""
    if str(edge_type) == SHARED_ENTITY:
        raise ValueError(f"{SHARED_ENTITY} is not a memory-to-memory relationship type")


def embedding_vector(embedding: np.ndarray) -> np.ndarray:
    """The embedding as the store keeps it: a non-empty float32 vector."""
    vector = np.asarray(embedding, dtype=np.float32)
    if vector.ndim != 1 or vector.size == 0:
        raise ValueError(f"an embedding must be a non-empty vector, got shape {vector.shape}")
    return vector
