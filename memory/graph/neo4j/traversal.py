"""Graph traversals of the Neo4j backend (``neighbours``, ``graph_search``): one aggregated hop per statement,
repeated from Python, so a hub entity never makes Neo4j enumerate every path through it; and the supersession chain
(``history``)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from neo4j import AsyncManagedTransaction

from memory.graph.base import EdgeType
from memory.graph.neo4j import cypher
from memory.graph.neo4j.records import scoped
from memory.graph.neo4j.tx import fetch_rows, read_memories
from memory.graph.operations.traversal import EdgeFilter
from memory.models import GraphHit, Memory, RelationType, Scope, now

MEMORY_EDGE_TYPES = tuple(t.value for t in RelationType)


@dataclass(frozen=True, slots=True)
class Walk:
    """What a traversal follows: memory-to-memory edges of ``edge_types``, shared entities if ``shared``."""

    scope: Scope
    edge_types: list[str]
    shared: bool
    at: float
    """The moment that tells active memories from superseded or expired ones."""

    @classmethod
    def over(cls, scope: Scope, types: Collection[EdgeType] | None) -> Walk:
        """``None`` is every type and SHARED_ENTITY; a name no edge has matches nothing (as a filter should)."""
        follow = EdgeFilter.of(types)
        edge_types = MEMORY_EDGE_TYPES if follow.types is None else follow.types
        return cls(scope, list(edge_types), follow.shared_entity, now())


async def expand(tx: AsyncManagedTransaction, walk: Walk, frontier: dict[str, float]) -> dict[str, tuple[float, bool]]:
    """One hop from ``frontier`` (id → strength so far): reached id → (best strength, active)."""
    rows: list[dict[str, Any]] = []
    start = [{"id": memory_id, "strength": strength} for memory_id, strength in frontier.items()]
    if walk.edge_types:
        params = scoped(walk.scope, frontier=start, types=walk.edge_types, now=walk.at)
        rows += await fetch_rows(tx, cypher.EXPAND_EDGES, params)
    if walk.shared:
        rows += await fetch_rows(tx, cypher.EXPAND_SHARED_ENTITIES, scoped(walk.scope, frontier=start, now=walk.at))
    reached: dict[str, tuple[float, bool]] = {}
    for row in rows:
        best = reached.get(row["id"])
        if best is None or row["strength"] > best[0]:
            reached[row["id"]] = (float(row["strength"]), bool(row["active"]))
    return reached


async def neighbours(
    tx: AsyncManagedTransaction, walk: Walk, seeds: set[str], max_hops: int, limit: int
) -> dict[str, float]:
    """Best product of strengths over paths of at most ``max_hops`` (Bellman-Ford limited to that many rounds);
    paths may pass through inactive memories, only active ones are returned: the ``limit`` strongest, ties by id."""
    best: dict[str, tuple[float, bool]] = {}
    frontier = dict.fromkeys(seeds, 1.0)
    for _ in range(max_hops):
        improved: dict[str, float] = {}
        for memory_id, (strength, active) in (await expand(tx, walk, frontier)).items():
            if memory_id not in seeds and (memory_id not in best or strength > best[memory_id][0]):
                best[memory_id] = (strength, active)
                improved[memory_id] = strength
        if not improved:
            break
        frontier = improved
    reached = sorted(((-strength, memory_id) for memory_id, (strength, active) in best.items() if active))
    return {memory_id: -negative for negative, memory_id in reached[:limit]}


async def graph_search(tx: AsyncManagedTransaction, walk: Walk, start_id: str, max_depth: int) -> list[GraphHit]:
    """Breadth-first: each memory once, at its smallest depth, with the best strength among those shortest paths."""
    found: dict[str, tuple[int, float]] = {}
    frontier = {start_id: 1.0}
    for depth in range(1, max_depth + 1):
        reached = await expand(tx, walk, frontier)
        frontier = {i: s for i, (s, _) in reached.items() if i != start_id and i not in found}
        if not frontier:
            break
        found.update((i, (depth, s)) for i, s in frontier.items())
    if not found:
        return []
    memories = await read_memories(tx, walk.scope, cypher.GET_MEMORIES, {"ids": list(found)})
    hits = [GraphHit(m, *found[m.id]) for m in memories]
    return sorted(hits, key=lambda hit: (hit.depth, -hit.strength, hit.memory.id))


async def history(tx: AsyncManagedTransaction, scope: Scope, memory_id: str) -> list[Memory]:
    current = await read_memories(tx, scope, cypher.GET_MEMORIES, {"ids": [memory_id]})
    if not current:
        return []
    older = await read_memories(tx, scope, cypher.HISTORY_OLDER, {"id": memory_id})
    newer = await read_memories(tx, scope, cypher.HISTORY_NEWER, {"id": memory_id})
    return [*older, *current, *newer]
