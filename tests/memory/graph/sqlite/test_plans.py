"""SQLite only: the traversal statements look up every table by key and never walk a table or a whole scope.

The store never runs ANALYZE (with statistics the planner made a traversal a thousand times slower), so these plans
are what production gets; a change to the schema or the statements that loses an index fails here.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from memory.graph.sqlite import schema as sql
from memory.graph.sqlite.store import SqliteGraphStore

TABLES = r"(e|a|b|m|memories|edges|mentions|entities|embeddings)"
WALK = re.compile(rf"^SCAN {TABLES}\b|^SEARCH {TABLES} .*\(scope_id=\?\)$")  # a scan, or a search by scope alone
VARIANTS = [
    (depth, edges, shared) for depth in (1, 2, 3) for edges in ("all", "listed", None) for shared in (True, False)
]


@pytest.fixture
async def database(tmp_path: Path) -> Path:
    store = SqliteGraphStore(tmp_path / "graph.db")
    await store.open()
    await store.close()
    return tmp_path / "graph.db"


@pytest.mark.parametrize(("depth", "edges", "shared"), [(d, e, s) for d, e, s in VARIANTS if e or s])
def test_traversals_use_indexes_only(database: Path, depth: int, edges: str | None, shared: bool) -> None:
    params = {"scope": 1, "seeds": '["a"]', "types": '["RELATED_TO"]', "now": 0.0, "limit": 200}
    conn = sqlite3.connect(database)
    try:
        for statement in (sql.neighbours_sql(depth, edges, shared), sql.graph_search_sql(depth, edges, shared)):
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}", params)]
            assert not [step for step in plan if WALK.search(step)], plan
            assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'sqlite_stat%'").fetchone() == (0,)
    finally:
        conn.close()


def test_mentions_are_written_by_key(database: Path) -> None:
    conn = sqlite3.connect(database)
    try:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql.ADD_MENTIONS}", (1, '["tea"]', 1))]
        assert not [step for step in plan if WALK.search(step)], plan
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("name", "index"),
    [("CORE_MEMORIES", "memories_core"), ("USAGE", "sqlite_autoindex_memories_1"), ("LOG_EXPIRED", "memories_expiry")],
)
def test_maintenance_reads_use_their_index(database: Path, name: str, index: str) -> None:
    """core_memories runs on every chat: it reads the partial index of core memories (holding only those, so a
    search by scope there is small), never the user's memories; no statement sorts on its own."""
    params = {"scope": 1, "now": 0.0, "after": "", "limit": 10, "since": 0.0, "until": 1.0}
    conn = sqlite3.connect(database)
    try:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {getattr(sql, name)}", params)]
        assert f"USING INDEX {index} " in plan[0], plan
        assert not [step for step in plan if step.startswith("SCAN") or "TEMP B-TREE" in step], plan
    finally:
        conn.close()
