"""SQL of the embedded store (:mod:`memory.graph.sqlite.store`): the schema and the traversal statements.

Every table leads its keys with the integer ``scope_id`` (one row per (tenant, user) in ``scopes``). Memories and
entities get integer surrogate keys (``mid``, ``eid``) so edges and mentions stay small, and the composite foreign
keys ``(scope_id, mid)`` / ``(scope_id, eid)`` make an edge or a mention between two scopes impossible to store.

Do not run ``ANALYZE`` or ``PRAGMA optimize`` on this database: with statistics the planner put a Bloom filter inside
a traversal step and made it a thousand times slower. The statements below are written for the statistics-free
planner; check them with ``EXPLAIN QUERY PLAN`` after any change.
"""

from __future__ import annotations

from functools import lru_cache

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS scopes (
    scope_id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    user TEXT NOT NULL,
    UNIQUE (tenant, user)
);

CREATE TABLE IF NOT EXISTS memories (
    mid INTEGER PRIMARY KEY,
    scope_id INTEGER NOT NULL REFERENCES scopes (scope_id),
    id TEXT NOT NULL,
    text TEXT NOT NULL,
    kind TEXT NOT NULL,
    importance REAL NOT NULL,
    created_at REAL NOT NULL,
    event_time REAL,
    last_used_at REAL,
    use_count INTEGER NOT NULL,
    expires_at REAL,
    source_ids TEXT NOT NULL,
    superseded_by TEXT,
    metadata TEXT NOT NULL,
    UNIQUE (scope_id, id),
    UNIQUE (scope_id, mid)
);
CREATE INDEX IF NOT EXISTS memories_newest ON memories (scope_id, created_at, id);
CREATE INDEX IF NOT EXISTS memories_successor ON memories (scope_id, superseded_by) WHERE superseded_by IS NOT NULL;
CREATE INDEX IF NOT EXISTS memories_expiry ON memories (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS memories_core ON memories (scope_id, json_extract(metadata, '$.core_since'), id)
    WHERE json_extract(metadata, '$.core_since') IS NOT NULL;

CREATE TABLE IF NOT EXISTS embeddings (
    mid INTEGER PRIMARY KEY,
    scope_id INTEGER NOT NULL,
    vector BLOB NOT NULL,
    FOREIGN KEY (scope_id, mid) REFERENCES memories (scope_id, mid) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS embeddings_scope ON embeddings (scope_id, mid);

CREATE TABLE IF NOT EXISTS entities (
    eid INTEGER PRIMARY KEY,
    scope_id INTEGER NOT NULL REFERENCES scopes (scope_id),
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    display_name TEXT,
    UNIQUE (scope_id, name),
    UNIQUE (scope_id, eid)
);

CREATE TABLE IF NOT EXISTS mentions (
    scope_id INTEGER NOT NULL,
    mid INTEGER NOT NULL,
    eid INTEGER NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (scope_id, mid, eid),
    FOREIGN KEY (scope_id, mid) REFERENCES memories (scope_id, mid) ON DELETE CASCADE,
    FOREIGN KEY (scope_id, eid) REFERENCES entities (scope_id, eid) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mentions_by_entity ON mentions (scope_id, eid, mid);

CREATE TABLE IF NOT EXISTS edges (
    scope_id INTEGER NOT NULL,
    src INTEGER NOT NULL,
    type TEXT NOT NULL,
    dst INTEGER NOT NULL,
    strength REAL NOT NULL,
    PRIMARY KEY (scope_id, src, type, dst),
    FOREIGN KEY (scope_id, src) REFERENCES memories (scope_id, mid) ON DELETE CASCADE,
    FOREIGN KEY (scope_id, dst) REFERENCES memories (scope_id, mid) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS edges_inbound ON edges (scope_id, dst, type, src, strength);

CREATE TABLE IF NOT EXISTS applied_jobs (
    scope_id INTEGER NOT NULL REFERENCES scopes (scope_id),
    job_id TEXT NOT NULL,
    PRIMARY KEY (scope_id, job_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS watermarks (
    name TEXT PRIMARY KEY,
    value REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    user TEXT NOT NULL,
    memory_id TEXT NOT NULL,
    op TEXT NOT NULL
);
"""

MEMORY_COLUMNS = (
    "m.mid, m.id, m.text, m.kind, m.importance, m.created_at, m.event_time, m.last_used_at, m.use_count, "
    "m.expires_at, m.source_ids, m.superseded_by, m.metadata"
)
ACTIVE = "m.superseded_by IS NULL AND (m.expires_at IS NULL OR m.expires_at > :now)"
CORE_SINCE = "json_extract(m.metadata, '$.core_since')"
"""Written exactly as in the ``memories_core`` index, so the planner uses it."""

CORE_MEMORIES = f"""
SELECT {MEMORY_COLUMNS} FROM memories AS m
WHERE m.scope_id = :scope AND {CORE_SINCE} IS NOT NULL AND {ACTIVE}
ORDER BY {CORE_SINCE}, m.id
"""
USAGE = f"""
SELECT m.id, m.importance, m.created_at, m.last_used_at, m.use_count, m.metadata FROM memories AS m
WHERE m.scope_id = :scope AND m.id > :after AND {ACTIVE}
ORDER BY m.id LIMIT :limit
"""
LOG_EXPIRED = """
INSERT INTO changes (tenant, user, memory_id, op)
SELECT s.tenant, s.user, m.id, 'upsert' FROM memories AS m JOIN scopes AS s ON s.scope_id = m.scope_id
WHERE m.expires_at > :since AND m.expires_at <= :until AND m.superseded_by IS NULL
ORDER BY m.expires_at, m.mid
"""

UPSERT_MEMORY = """
INSERT INTO memories (scope_id, id, text, kind, importance, created_at, event_time, last_used_at, use_count,
                      expires_at, source_ids, superseded_by, metadata)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (scope_id, id) DO UPDATE SET
    text = excluded.text, kind = excluded.kind, importance = excluded.importance,
    created_at = excluded.created_at, event_time = excluded.event_time, last_used_at = excluded.last_used_at,
    use_count = excluded.use_count, expires_at = excluded.expires_at, source_ids = excluded.source_ids,
    superseded_by = excluded.superseded_by, metadata = excluded.metadata
RETURNING mid
"""
ADD_MISSING_ENTITIES = """
INSERT INTO entities (scope_id, name, type) SELECT ?, value, 'thing' FROM json_each(?) WHERE true
ON CONFLICT (scope_id, name) DO NOTHING
"""
# CROSS JOIN: the few names drive. Left to itself the planner walked every entity of the scope on each upsert.
ADD_MENTIONS = """
INSERT INTO mentions (scope_id, mid, eid, position)
SELECT e.scope_id, ?, e.eid, min(j.key)
FROM json_each(?) AS j CROSS JOIN entities AS e ON e.scope_id = ? AND e.name = j.value
GROUP BY e.eid
"""
UPSERT_ENTITY = """
INSERT INTO entities (scope_id, name, type, display_name) VALUES (?, ?, ?, ?)
ON CONFLICT (scope_id, name) DO UPDATE SET type = excluded.type, display_name = excluded.display_name
"""
UPSERT_EDGE = """
INSERT INTO edges (scope_id, src, type, dst, strength) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (scope_id, src, type, dst) DO UPDATE SET strength = excluded.strength
"""
UPSERT_EMBEDDING = """
INSERT INTO embeddings (mid, scope_id, vector) VALUES (?, ?, ?) ON CONFLICT (mid) DO UPDATE SET vector = excluded.vector
"""
LOG_CHANGE = "INSERT INTO changes (tenant, user, memory_id, op) VALUES (?, ?, ?, ?)"

HISTORY = f"""
WITH RECURSIVE
    older (mid, id, d) AS (
        SELECT mid, id, 0 FROM memories WHERE scope_id = :scope AND id = :id
        UNION
        SELECT m.mid, m.id, o.d - 1 FROM older AS o
        JOIN memories AS m ON m.scope_id = :scope AND m.superseded_by = o.id WHERE o.d > -:limit
    ),
    newer (mid, next, d) AS (
        SELECT mid, superseded_by, 0 FROM memories WHERE scope_id = :scope AND id = :id
        UNION
        SELECT m.mid, m.superseded_by, n.d + 1 FROM newer AS n
        JOIN memories AS m ON m.scope_id = :scope AND m.id = n.next WHERE n.d < :limit
    ),
    chain (mid, d) AS (
        SELECT mid, min(d) FROM (SELECT mid, d FROM older UNION ALL SELECT mid, d FROM newer) GROUP BY mid
    )
SELECT {MEMORY_COLUMNS} FROM chain AS c JOIN memories AS m ON m.mid = c.mid ORDER BY c.d, m.created_at, m.id
"""


@lru_cache(maxsize=256)
def neighbours_sql(depth: int, edge_filter: str | None, shared_entity: bool) -> str:
    """Active memories within ``depth`` hops of the seeds, seeds excluded: rows ``(id, best strength)``, the
    ``:limit`` strongest."""
    return (
        f"{_expansion(depth, edge_filter, shared_entity, breadth_first=False)} "
        "SELECT m.id, r.s FROM (SELECT mid, max(s) AS s FROM reached GROUP BY mid) AS r "
        "JOIN memories AS m ON m.mid = r.mid AND m.scope_id = :scope "
        f"WHERE r.mid NOT IN (SELECT mid FROM level0) AND {ACTIVE} ORDER BY r.s DESC, m.id LIMIT :limit"
    )


@lru_cache(maxsize=256)
def graph_search_sql(depth: int, edge_filter: str | None, shared_entity: bool) -> str:
    """Breadth-first from the seed: rows ``(depth, strength, *MEMORY_COLUMNS)`` by depth, then strength descending."""
    return (
        f"{_expansion(depth, edge_filter, shared_entity, breadth_first=True)} "
        f"SELECT r.depth, r.s, {MEMORY_COLUMNS} FROM reached AS r "
        "JOIN memories AS m ON m.mid = r.mid AND m.scope_id = :scope ORDER BY r.depth, r.s DESC, m.id"
    )


def _expansion(depth: int, edge_filter: str | None, shared_entity: bool, *, breadth_first: bool) -> str:
    """CTEs for a traversal of ``depth`` levels from the seeds (``:seeds``, a JSON array of ids, in ``:scope``),
    ending in ``reached (depth, mid, s)``.

    Each level is one aggregated step (``GROUP BY``: one row per memory with its best strength product), so the
    work per level is bounded by the scope's size however many paths there are (a hub entity mentioned by thousands
    of memories makes a path-enumerating recursive CTE explode). ``edge_filter`` is None (no memory edges),
    ``"all"`` or ``"listed"`` (types in ``:types``, a JSON array). Breadth-first keeps each memory at its smallest
    depth only; otherwise every level keeps every memory it reaches and the caller takes the best per memory.
    """
    levels = [
        "level0 (mid, s) AS MATERIALIZED (SELECT mid, 1.0 FROM memories "
        "WHERE scope_id = :scope AND id IN (SELECT value FROM json_each(:seeds)))"
    ]
    for level in range(1, depth + 1):
        step = _step(f"level{level - 1}", edge_filter, shared_entity)
        unseen = ""
        if breadth_first:
            unseen = "WHERE " + " AND ".join(f"mid NOT IN (SELECT mid FROM level{seen})" for seen in range(level))
        levels.append(f"level{level} (mid, s) AS MATERIALIZED (SELECT mid, max(s) FROM ({step}) {unseen} GROUP BY mid)")
    reached = " UNION ALL ".join(f"SELECT {level}, mid, s FROM level{level}" for level in range(1, depth + 1))
    return f"WITH {', '.join(levels)}, reached (depth, mid, s) AS ({reached})"


def _step(level: str, edge_filter: str | None, shared_entity: bool) -> str:
    """One hop from every memory of ``level``: along edges both ways, and memory → entity ← memory.

    ``CROSS JOIN`` pins the join order (SQLite never reorders it): the small level drives, the big tables are searched
    by key. Left to itself, the statistics-free planner scanned a whole scope's mentions for the entity step.
    """
    parts = []
    if edge_filter is not None:
        types = " AND e.type IN (SELECT value FROM json_each(:types))" if edge_filter == "listed" else ""
        parts.append(f"SELECT e.dst AS mid, p.s * e.strength AS s FROM {level} AS p "
                     f"CROSS JOIN edges AS e ON e.scope_id = :scope AND e.src = p.mid{types}")
        parts.append(f"SELECT e.src AS mid, p.s * e.strength AS s FROM {level} AS p "
                     f"CROSS JOIN edges AS e ON e.scope_id = :scope AND e.dst = p.mid{types}")
    if shared_entity:
        parts.append(f"SELECT b.mid AS mid, x.s AS s FROM (SELECT a.eid AS eid, max(p.s) AS s FROM {level} AS p "
                     "CROSS JOIN mentions AS a ON a.scope_id = :scope AND a.mid = p.mid GROUP BY a.eid) AS x "
                     "CROSS JOIN mentions AS b ON b.scope_id = :scope AND b.eid = x.eid")
    return " UNION ALL ".join(parts)
