"""Reading a user's memories the way a person browses them (the memory API, the memory browser): filtered pages,
the graph around a page of memories, and checking an export before it is imported. Pure reads over the store;
:class:`~memory.engine.MemoryEngine` is the way in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memory.graph.base import GraphStore
from memory.graph.export_format import import_entity, import_memory, import_relationship
from memory.models import Entity, Memory, MemoryKind, Page, Relationship, Scope

FILTERED_SCAN_PAGES = 20
"""With a kind / category filter, at most this many store pages are read for one page (it may come back short;
``next_cursor`` goes on from where the scan stopped)."""

EXPORT_SECTIONS = ("memories", "entities", "relationships")


class InvalidCursor(ValueError):
    """A listing cursor that no listing handed out."""


class InvalidExport(ValueError):
    """An export that cannot be imported; ``section`` and ``index`` say which item (``index`` None: the whole)."""

    def __init__(self, message: str, section: str, index: int | None = None) -> None:
        super().__init__(message)
        self.section, self.index = section, index


@dataclass(frozen=True, slots=True)
class MemoryGraph:
    """A page of memories (newest first) with the entities they mention and the edges between them."""

    memories: list[Memory]
    entities: dict[str, Entity]
    """By normalised name; a mentioned entity the store has no record of is absent."""
    relationships: list[Relationship]
    truncated: bool
    """More memories exist beyond the page."""


async def list_filtered(
    store: GraphStore,
    scope: Scope,
    *,
    limit: int,
    cursor: str | None,
    kind: MemoryKind | str | None,
    category: str | None,
    include_inactive: bool,
) -> Page[Memory]:
    """Newest first, only ``kind`` / ``category`` if given; InvalidCursor for a cursor no listing gave out."""
    wanted_kind = None if kind is None else MemoryKind(kind)
    found: list[Memory] = []
    for _ in range(FILTERED_SCAN_PAGES):
        # Each store page asks for no more than is still wanted, so its cursor is exactly where the answer ends.
        try:
            page = await store.list_memories(
                scope, limit=limit - len(found), cursor=cursor, include_inactive=include_inactive
            )
        except ValueError as exc:
            raise InvalidCursor(str(exc)) from None
        found += [
            m
            for m in page.items
            if (wanted_kind is None or m.kind == wanted_kind)
            and (category is None or m.metadata.get("category") == category)
        ]
        cursor = page.next_cursor
        if cursor is None or len(found) >= limit:
            break
    return Page(found, cursor)


async def graph_of(store: GraphStore, scope: Scope, *, limit: int, include_inactive: bool) -> MemoryGraph:
    page = await store.list_memories(scope, limit=limit, include_inactive=include_inactive)
    ids = {m.id for m in page.items}
    mentioned = {name for m in page.items for name in m.entities}
    entities = {e.name: e for e in await store.entities(scope) if e.name in mentioned}
    edges = [
        r for r in await store.relationships(scope, list(ids)) if r.source_id in ids and r.target_id in ids
    ]
    return MemoryGraph(page.items, entities, edges, truncated=page.next_cursor is not None)


def check_export(scope: Scope, data: dict[str, Any]) -> None:
    """Parse every item of an export before anything is written, so a bad export changes nothing: InvalidExport
    naming the first bad item (a relationship must join memories of the export)."""
    parsers = (import_memory, import_entity, import_relationship)
    for section, parse in zip(EXPORT_SECTIONS, parsers, strict=True):
        items = data.get(section, [])
        if not isinstance(items, list):
            raise InvalidExport(f"'{section}' must be a list", section)
        for index, item in enumerate(items):
            try:
                parse(scope, item)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                raise InvalidExport(_short(exc), section, index) from None
    ids = {str(item["id"]) for item in data.get("memories", [])}
    for index, item in enumerate(data.get("relationships", [])):
        if str(item["source_id"]) not in ids or str(item["target_id"]) not in ids:
            raise InvalidExport("it joins memories that are not in the export", "relationships", index)


def _short(exc: BaseException) -> str:
    return str(exc)[:200] or type(exc).__name__
