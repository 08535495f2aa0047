"""Small builders shared by the graph store conformance suites: memories, relationships, canonical exports."""

from __future__ import annotations

import json

import pytest

from memory.graph.base import GraphStore
from memory.models import Memory, Relationship, RelationType, Scope

RELATED, LEADS, SUPERSEDES = RelationType.RELATED_TO, RelationType.LEADS_TO, RelationType.SUPERSEDES


def remember(scope: Scope, text: str, **fields: object) -> Memory:
    return Memory(scope, text, **fields)  # type: ignore[arg-type]


async def put(store: GraphStore, scope: Scope, *texts: str, **fields: object) -> list[Memory]:
    memories = [remember(scope, text, **fields) for text in texts]
    for memory in memories:
        await store.upsert_memory(memory)
    return memories


async def relate(store: GraphStore, a: Memory, b: Memory, kind: RelationType = RELATED, strength: float = 1.0) -> None:
    await store.add_relationship(Relationship(a.scope, a.id, b.id, kind, strength))


def canonical(export: dict[str, list[dict[str, object]]]) -> dict[str, list[str]]:
    """An export with each list in a fixed order (the contract does not fix one)."""
    return {key: sorted(json.dumps(item, sort_keys=True) for item in items) for key, items in export.items()}


def assert_same_memory(actual: Memory, expected: Memory, scope: Scope) -> None:
    """Equal but for the scope, with times compared to the microsecond (an export renders them as ISO 8601)."""
    times = ("created_at", "event_time", "last_used_at", "expires_at")
    assert actual.scope == scope
    exact = ("id", "text", "kind", "importance", "use_count", "source_ids", "superseded_by", "entities", "metadata")
    for name in exact:
        assert getattr(actual, name) == getattr(expected, name), name
    for name in times:
        value, wanted = getattr(actual, name), getattr(expected, name)
        assert (value is None) == (wanted is None), name
        assert wanted is None or value == pytest.approx(wanted, abs=1e-5), name
