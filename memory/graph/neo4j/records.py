"""Parameters and records of the Neo4j backend: models → parameter rows, returned rows → models. Pure functions,
no driver calls (they are checked without a server in tests/cypher)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from memory.graph.base import core_since
from memory.graph.validation import embedding_vector
from memory.models import Entity, Memory, MemoryKind, RelationType, Relationship, Scope

DEFAULT_ENTITY_TYPE = Entity.__dataclass_fields__["type"].default
"""The type of an entity created by a mention (or stored without one)."""


def scoped(scope: Scope, **parameters: Any) -> dict[str, Any]:
    """The parameters of a statement: the scope's ``tenant`` and ``user`` and the given ones."""
    return {"tenant": scope.tenant, "user": scope.user, **parameters}


def memory_row(memory: Memory, embedding: np.ndarray | None) -> dict[str, Any]:
    vector = None if embedding is None else embedding_vector(embedding).tolist()
    properties = {
        "text": memory.text,
        "kind": memory.kind.value,
        "importance": float(memory.importance),
        "created_at": float(memory.created_at),
        "event_time": memory.event_time,
        "last_used_at": memory.last_used_at,
        "use_count": int(memory.use_count),
        "expires_at": memory.expires_at,
        "source_ids": list(memory.source_ids) or None,  # absent when empty; read back as ()
        "superseded_by": memory.superseded_by,
        "entities": list(memory.entities) or None,
        "metadata": metadata_text(memory.metadata),
        "core_since": core_since(memory.metadata),  # indexed copy of metadata's key (metadata stays the truth)
    }
    return {"id": memory.id, "properties": properties, "embedding": vector}


def metadata_text(metadata: dict[str, Any]) -> str:
    return json.dumps(metadata, ensure_ascii=False)


def memory_from_row(scope: Scope, row: dict[str, Any]) -> Memory:
    return Memory(
        scope=scope,
        id=row["id"],
        text=row["text"],
        kind=MemoryKind(row["kind"]),
        importance=row["importance"],
        created_at=row["created_at"],
        event_time=row["event_time"],
        last_used_at=row["last_used_at"],
        use_count=row["use_count"] or 0,
        expires_at=row["expires_at"],
        source_ids=tuple(row["source_ids"] or ()),
        superseded_by=row["superseded_by"],
        entities=tuple(row["entities"] or ()),
        metadata=metadata_from_text(row["metadata"]),
    )


def metadata_from_text(text: str | None) -> dict[str, Any]:
    return json.loads(text) if text else {}


def entity_rows(entities: Sequence[Entity]) -> list[dict[str, Any]]:
    return [{"name": e.name, "type": e.type, "display_name": e.display_name} for e in entities]


def relationship_from_row(scope: Scope, row: dict[str, Any]) -> Relationship:
    strength = 1.0 if row["strength"] is None else float(row["strength"])
    return Relationship(scope, row["source_id"], row["target_id"], RelationType(row["type"]), strength)
