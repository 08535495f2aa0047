"""Paging and id order, the same in every backend.

:meth:`~memory.graph.base.GraphStore.list_memories` pages newest first: by ``created_at`` descending, then by id
descending. A backend fetches one memory more than the page (``limit + 1``) strictly after the cursor's position in
that order, and :func:`newest_first_page` cuts the page and writes the next cursor. A cursor is opaque to callers:
the (created_at, id) of the page's last memory, base64 of JSON. ``usage`` pages by id instead (keyset, ``after``).

Reads that take ids answer in the order asked (:func:`in_order_asked`); ids asked twice are asked once where the
contract says a set (:func:`unique`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from memory.models import Memory, Page, Scope

if TYPE_CHECKING:
    from memory.graph.base import GraphStore

T = TypeVar("T")

Position = tuple[float, str]
"""Where a memory stands in newest-first order: (created_at, id)."""


def check_limit(limit: int) -> None:
    """A page (or a scan's batch) holds at least one item."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")


def position(memory: Memory) -> Position:
    """The sort key of newest-first order (sort descending by it)."""
    return memory.created_at, memory.id


def encode_cursor(last: Memory) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(position(last))).encode()).decode()


def decode_cursor(cursor: str) -> Position:
    """The position of the previous page's last memory; ValueError if ``cursor`` is not one of ours."""
    try:
        created_at, memory_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return float(created_at), str(memory_id)
    except (binascii.Error, UnicodeError, TypeError, ValueError) as exc:
        raise ValueError("invalid page cursor") from exc


def newest_first_page(fetched: list[Memory], limit: int) -> Page[Memory]:
    """The page of ``fetched`` (up to ``limit + 1`` memories, newest first): its first ``limit``, and a cursor if
    there are more."""
    if len(fetched) <= limit:
        return Page(fetched, None)
    return Page(fetched[:limit], encode_cursor(fetched[limit - 1]))


def unique(ids: Iterable[str]) -> list[str]:
    """Each id once, where it first appears."""
    return list(dict.fromkeys(ids))


def in_order_asked(found: Iterable[T], ids: Sequence[str], key: Callable[[T], str]) -> list[T]:
    """The items found, in the order of ``ids`` (one per time an id is asked); ids not found are left out."""
    by_id = {key(item): item for item in found}
    return [by_id[memory_id] for memory_id in ids if memory_id in by_id]


async def every_page(
    store: GraphStore, scope: Scope, *, limit: int = 1000, include_inactive: bool = False
) -> AsyncIterator[list[Memory]]:
    """A caller's scan of the scope's memories, a page at a time, newest first (a page may be empty)."""
    cursor = None
    while True:
        page = await store.list_memories(scope, limit=limit, cursor=cursor, include_inactive=include_inactive)
        yield list(page.items)
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
