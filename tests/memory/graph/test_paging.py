"""Paging and id order as every backend does them (memory/graph/paging.py): pure functions, no store."""

from __future__ import annotations

import base64

import pytest

from memory.graph.paging import (
    check_limit,
    decode_cursor,
    encode_cursor,
    in_order_asked,
    newest_first_page,
    position,
    unique,
)
from memory.models import Memory, Scope

SCOPE = Scope("acme", "alice")


def memory(memory_id: str, created_at: float) -> Memory:
    return Memory(SCOPE, f"text of {memory_id}", id=memory_id, created_at=created_at)


def newest_first(memories: list[Memory]) -> list[Memory]:
    return sorted(memories, key=position, reverse=True)


def test_limits_below_one_are_refused() -> None:
    check_limit(1)
    for limit in (0, -3):
        with pytest.raises(ValueError, match=f"limit must be at least 1, got {limit}"):
            check_limit(limit)


def test_newest_first_breaks_ties_by_id_descending() -> None:
    a, b, c = memory("a", 5.0), memory("b", 5.0), memory("c", 1.0)
    assert newest_first([c, a, b]) == [b, a, c]


def test_a_cursor_round_trips_the_last_memorys_position() -> None:
    last = memory("m-1", 1_760_000_000.25)
    assert decode_cursor(encode_cursor(last)) == (1_760_000_000.25, "m-1")
    assert decode_cursor(encode_cursor(memory("東京/1", 0.0))) == (0.0, "東京/1")


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor",
        "",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),  # not UTF-8
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),  # JSON, not a pair
        base64.urlsafe_b64encode(b'["x", "m"]').decode(),  # not a time
        base64.urlsafe_b64encode(b"[1, 2, 3]").decode(),
    ],
)
def test_anything_else_is_an_invalid_cursor(cursor: str) -> None:
    with pytest.raises(ValueError, match="invalid page cursor"):
        decode_cursor(cursor)


def test_pages_cut_at_the_limit_and_the_cursor_goes_on_from_the_last() -> None:
    memories = newest_first([memory(f"m{i}", float(i % 3)) for i in range(7)])
    pages, after = [], None
    while True:  # what a backend does: fetch limit + 1 strictly after the cursor's position, newest first
        rest = [m for m in memories if after is None or position(m) < after]
        page = newest_first_page(rest[:3], 2)
        pages.append(page.items)
        if page.next_cursor is None:
            break
        after = decode_cursor(page.next_cursor)
    assert [m for items in pages for m in items] == memories
    assert [len(items) for items in pages] == [2, 2, 2, 1]


def test_a_page_that_holds_everything_has_no_cursor() -> None:
    two = [memory("b", 2.0), memory("a", 1.0)]
    assert newest_first_page(two, 2).next_cursor is None
    assert newest_first_page(two, 5).items == two
    assert newest_first_page([], 1).items == []


def test_found_items_come_in_the_order_asked() -> None:
    found = [("b", 2), ("a", 1), ("c", 3)]
    assert in_order_asked(found, ["c", "missing", "a", "b"], key=lambda row: row[0]) == [("c", 3), ("a", 1), ("b", 2)]
    assert in_order_asked(found, ["a", "a"], key=lambda row: row[0]) == [("a", 1), ("a", 1)]
    assert in_order_asked([], ["a"], key=lambda row: row[0]) == []


def test_unique_keeps_the_first_of_each() -> None:
    assert unique(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]
    assert unique(iter(())) == []
