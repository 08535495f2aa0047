"""The JSON form of one user's graph (:meth:`GraphStore.export_user` / :meth:`GraphStore.import_user`).

One format for every backend, so a user exported from one store imports into another. Times are ISO 8601 (UTC) as
the data model says; import also takes UNIX seconds. The scope is not part of the export: import rewrites it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from memory.models import Entity, Memory, MemoryKind, RelationType, Relationship, Scope


@dataclass(frozen=True, slots=True)
class UserGraph:
    """One user's graph as an export holds it: what a backend reads for an export, or writes for an import."""

    memories: list[Memory]
    entities: list[Entity]
    relationships: list[Relationship]

    def export(self) -> dict[str, Any]:
        return {
            "memories": [export_memory(memory) for memory in self.memories],
            "entities": [export_entity(entity) for entity in self.entities],
            "relationships": [export_relationship(relationship) for relationship in self.relationships],
        }

    @classmethod
    def parse(cls, scope: Scope, data: Mapping[str, Any]) -> UserGraph:
        """Every item of an export, read into ``scope`` (a section may be missing); ValueError at the first item that
        is not one."""
        return cls(
            [import_memory(scope, item) for item in data.get("memories", [])],
            [import_entity(scope, item) for item in data.get("entities", [])],
            [import_relationship(scope, item) for item in data.get("relationships", [])],
        )


def export_memory(memory: Memory) -> dict[str, Any]:
    return {
        "id": memory.id,
        "text": memory.text,
        "kind": memory.kind.value,
        "importance": memory.importance,
        "created_at": _iso(memory.created_at),
        "event_time": _iso(memory.event_time),
        "last_used_at": _iso(memory.last_used_at),
        "use_count": memory.use_count,
        "expires_at": _iso(memory.expires_at),
        "source_ids": list(memory.source_ids),
        "superseded_by": memory.superseded_by,
        "entities": list(memory.entities),
        "metadata": memory.metadata,
    }


def export_entity(entity: Entity) -> dict[str, Any]:
    return {"name": entity.name, "type": entity.type, "display_name": entity.display_name}


def export_relationship(relationship: Relationship) -> dict[str, Any]:
    return {
        "source_id": relationship.source_id,
        "target_id": relationship.target_id,
        "type": str(relationship.type),
        "strength": relationship.strength,
    }


def import_memory(scope: Scope, item: dict[str, Any]) -> Memory:
    try:
        return Memory(
            scope=scope,
            text=item["text"],
            kind=MemoryKind(item.get("kind", MemoryKind.EPISODE)),
            importance=float(item.get("importance", 0.5)),
            id=str(item["id"]),
            created_at=_seconds(item["created_at"]),
            event_time=_seconds(item.get("event_time")),
            last_used_at=_seconds(item.get("last_used_at")),
            use_count=_count(item.get("use_count", 0)),
            expires_at=_seconds(item.get("expires_at")),
            source_ids=tuple(str(source) for source in item.get("source_ids", ())),
            superseded_by=item.get("superseded_by"),
            entities=tuple(str(name) for name in item.get("entities", ())),
            metadata=dict(item.get("metadata") or {}),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not an exported memory: {exc!r}") from exc


def import_entity(scope: Scope, item: dict[str, Any]) -> Entity:
    try:
        return Entity(scope, str(item["name"]), str(item.get("type", "thing")), item.get("display_name"))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not an exported entity: {exc!r}") from exc


def import_relationship(scope: Scope, item: dict[str, Any]) -> Relationship:
    try:
        source, target, kind = str(item["source_id"]), str(item["target_id"]), edge_type(str(item["type"]))
        return Relationship(scope, source, target, kind, float(item.get("strength", 1.0)))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not an exported relationship: {exc!r}") from exc


def edge_type(name: str) -> RelationType:
    """A stored type name → :class:`RelationType`; a custom type (``EdgeType`` allows any string) stays a string."""
    try:
        return RelationType(name)
    except ValueError:
        return name  # type: ignore[return-value]


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


MAX_COUNT = 2**63 - 1
"""The largest count a store keeps (SQLite's INTEGER, Neo4j's Long)."""


def _count(value: Any) -> int:
    count = int(value)
    if not 0 <= count <= MAX_COUNT:
        raise ValueError(f"count {value!r} is out of range (0 to 2**63 - 1)")
    return count


EARLIEST_S, LATEST_S = -62135596800.0, 253402300799.0
"""The times an export can hold: 0001-01-01 to 9999-12-31 (UTC), what ISO 8601 (and Python's datetime) can write."""


def _seconds(value: str | float | None) -> float | None:
    """UNIX seconds from seconds or ISO 8601; ValueError for a time no export could write back."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
        if not EARLIEST_S <= seconds <= LATEST_S:  # NaN fails this too
            raise ValueError(f"time {value!r} is out of range (years 1 to 9999)")
        return seconds
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
