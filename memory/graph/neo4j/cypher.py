"""Every Cypher statement :class:`memory.graph.neo4j.store.Neo4jGraphStore` sends, in one place.

Each statement is a module-level constant, parameterised only: user data always travels as ``$parameters``, never in
the text. Relationship types cannot be parameters, so writes have one fixed statement per type (:data:`MERGE_EDGES`)
and reads filter with ``type(r) IN $types``. tests/cypher/ checks every constant here with Neo4j's own parser (syntax,
deprecations, and the vocabulary below), and that the store passes exactly the parameters each statement uses.

Graph model (``(tenant, user)`` is the scope; every node but the change log's counter carries both):

- ``(:Memory {tenant, user, id, text, kind, importance, created_at, event_time, last_used_at, use_count,
  expires_at, source_ids, superseded_by, entities, metadata, embedding, core_since})`` — ``metadata`` is JSON text,
  ``embedding`` a list of floats, ``entities`` the MENTIONS names in the memory's own order, ``core_since`` an
  indexed copy of ``metadata.core_since`` (absent unless the memory is in core memory);
- ``(:Entity {tenant, user, name, type, display_name})``;
- ``(:Memory)-[:MENTIONS]->(:Entity)``; ``(:Memory)-[:RELATED_TO|LEADS_TO|SUPERSEDES {strength}]->(:Memory)``
  (SUPERSEDES points from the new memory to the one it replaces);
- ``(:Job {tenant, user, id, applied_at, claim})`` — a write job applied, so a replay changes nothing;
- the change log: ``(:Change {seq, tenant, user, memory_id, op, at})``, numbered from one
  ``(:Sequence {name: 'changes', value})`` counter; ``(:Sequence {name: 'expiry', value})`` is the time up to
  which expired memories have been logged (:data:`ADVANCE_EXPIRY_WATERMARK`).

Change-log concurrency. A write transaction appends its changes *last*, with ``SET s.value = s.value + n`` on the
single counter node. A SET whose right-hand side reads the property it writes takes the node's write lock before the
read, and Neo4j holds write locks until commit; so a second writer waits at its increment until the first has
committed, and sequence numbers become visible in exactly their commit order. A follower that has read up to ``seq``
therefore never later finds a smaller number appearing behind it. Taking the counter last keeps the lock short
(increment to commit) and adds no lock-order cycle: a writer holding it takes no other lock after it. (Deadlocks on
other nodes are detected by Neo4j and retried whole by ``execute_write``.) The cost: writes that log changes commit
one at a time, which suits the design's write path (one pipeline worker per process), and ``changes_since`` stays a
plain index range scan with no gaps to wait for.
"""

from __future__ import annotations

from memory.models import RelationType

# The vocabulary the statements may use: the syntax check reports any label, type or key outside it (a typo).
LABELS = ("Memory", "Entity", "Job", "Change", "Sequence")
RELATIONSHIP_TYPES = ("MENTIONS", *(t.value for t in RelationType))
PROPERTY_KEYS = (
    # Memory
    "tenant", "user", "id", "text", "kind", "importance", "created_at", "event_time", "last_used_at", "use_count",
    "expires_at", "source_ids", "superseded_by", "entities", "metadata", "embedding", "core_since",
    # Entity, edges, jobs, change log
    "name", "type", "display_name", "strength", "applied_at", "claim", "seq", "memory_id", "op", "at", "value",
)  # fmt: skip
ROW_KEYS = ("properties", "source_id", "target_id", "old_id", "new_id")
"""Keys of the parameter rows the statements UNWIND, beyond property keys."""

# Fragments (not statements; composed into the constants below at import time, never with data).
_SCOPED = "tenant: $tenant, user: $user"
_SEQUENCE = "(s:Sequence {name: 'changes'})"
_ACTIVE = "m.superseded_by IS NULL AND (m.expires_at IS NULL OR m.expires_at > $now)"
_MEMORY_FIELDS = (
    ".id, .text, .kind, .importance, .created_at, .event_time, .last_used_at, .use_count, .expires_at, "
    ".source_ids, .superseded_by, .entities, .metadata"
)

# --- schema (run once each at open; all idempotent) -----------------------------------------------------------------

CONSTRAINT_MEMORY = (
    "CREATE CONSTRAINT memproxy_memory IF NOT EXISTS FOR (m:Memory) REQUIRE (m.tenant, m.user, m.id) IS UNIQUE"
)
CONSTRAINT_ENTITY = (
    "CREATE CONSTRAINT memproxy_entity IF NOT EXISTS FOR (e:Entity) REQUIRE (e.tenant, e.user, e.name) IS UNIQUE"
)
CONSTRAINT_JOB = "CREATE CONSTRAINT memproxy_job IF NOT EXISTS FOR (j:Job) REQUIRE (j.tenant, j.user, j.id) IS UNIQUE"
CONSTRAINT_CHANGE = "CREATE CONSTRAINT memproxy_change IF NOT EXISTS FOR (c:Change) REQUIRE c.seq IS UNIQUE"
CONSTRAINT_SEQUENCE = "CREATE CONSTRAINT memproxy_sequence IF NOT EXISTS FOR (s:Sequence) REQUIRE s.name IS UNIQUE"
INDEX_MEMORY_CREATED = (
    "CREATE INDEX memproxy_memory_created IF NOT EXISTS FOR (m:Memory) ON (m.tenant, m.user, m.created_at)"
)
INDEX_MEMORY_CORE = (
    "CREATE INDEX memproxy_memory_core IF NOT EXISTS FOR (m:Memory) ON (m.tenant, m.user, m.core_since)"
)
"""Only core memories have ``core_since``; a node lacking it is not in the index, so the index stays tiny."""
INDEX_MEMORY_EXPIRES = "CREATE INDEX memproxy_memory_expires IF NOT EXISTS FOR (m:Memory) ON (m.expires_at)"
ENSURE_SEQUENCE = f"MERGE {_SEQUENCE} ON CREATE SET s.value = 0"

SCHEMA = (
    CONSTRAINT_MEMORY,
    CONSTRAINT_ENTITY,
    CONSTRAINT_JOB,
    CONSTRAINT_CHANGE,
    CONSTRAINT_SEQUENCE,
    INDEX_MEMORY_CREATED,
    INDEX_MEMORY_CORE,
    INDEX_MEMORY_EXPIRES,
)
"""Uniqueness constraints (Community Edition has them; NODE KEY is Enterprise-only) also give the lookup indexes."""

# --- writes ----------------------------------------------------------------------------------------------------------

CLAIM_JOB = f"""
MERGE (j:Job {{{_SCOPED}, id: $job_id}})
ON CREATE SET j.applied_at = $now, j.claim = $claim
RETURN j.claim = $claim AS fresh
"""
"""First statement of a commit. Under the uniqueness constraint a concurrent MERGE of the same job waits for the
first one's commit and then finds it: only the transaction that created the node sees its own claim token."""

UPSERT_ENTITIES = f"""
UNWIND $entities AS row
MERGE (e:Entity {{{_SCOPED}, name: row.name}})
SET e.type = row.type, e.display_name = row.display_name
"""

UPSERT_MEMORIES = f"""
UNWIND $memories AS row
MERGE (m:Memory {{{_SCOPED}, id: row.id}})
SET m += row.properties, m.embedding = coalesce(row.embedding, m.embedding)
"""
"""``row.properties`` carries every field (None removes it), so an update replaces the memory; a null embedding
keeps the stored one."""

CLEAR_MENTIONS = f"""
UNWIND $ids AS id
MATCH (:Memory {{{_SCOPED}, id: id}})-[r:MENTIONS]->(:Entity {{{_SCOPED}}})
DELETE r
"""

ADD_MENTIONS = f"""
UNWIND $mentions AS row
MATCH (m:Memory {{{_SCOPED}, id: row.id}})
MERGE (e:Entity {{{_SCOPED}, name: row.name}})
ON CREATE SET e.type = $default_type
MERGE (m)-[:MENTIONS]->(e)
"""

_MERGE_EDGE = f"""
UNWIND $edges AS row
MATCH (a:Memory {{{_SCOPED}, id: row.source_id}})
MATCH (b:Memory {{{_SCOPED}, id: row.target_id}})
MERGE (a)-[r:%s]->(b)
SET r.strength = row.strength
RETURN count(r) AS merged
"""
MERGE_RELATED_TO = _MERGE_EDGE % "RELATED_TO"
MERGE_LEADS_TO = _MERGE_EDGE % "LEADS_TO"
MERGE_SUPERSEDES = _MERGE_EDGE % "SUPERSEDES"
MERGE_EDGES = {
    RelationType.RELATED_TO: MERGE_RELATED_TO,
    RelationType.LEADS_TO: MERGE_LEADS_TO,
    RelationType.SUPERSEDES: MERGE_SUPERSEDES,
}
"""One statement per type (a type cannot be a parameter). ``merged`` < rows sent means an endpoint is missing."""

SUPERSEDE = f"""
UNWIND $pairs AS row
MATCH (superseded:Memory {{{_SCOPED}, id: row.old_id}})
MATCH (successor:Memory {{{_SCOPED}, id: row.new_id}})
SET superseded.superseded_by = successor.id
MERGE (successor)-[r:SUPERSEDES]->(superseded)
ON CREATE SET r.strength = 1.0
RETURN count(r) AS applied
"""

APPEND_CHANGES = f"""
MERGE {_SEQUENCE}
ON CREATE SET s.value = 0
SET s.value = s.value + size($changes)
WITH s.value - size($changes) AS base
UNWIND range(0, size($changes) - 1) AS i
CREATE (:Change {{seq: base + i + 1, {_SCOPED}, memory_id: $changes[i].id, op: $changes[i].op, at: $now}})
"""
"""Always the last statement of a write transaction (see the module docstring for why)."""

RECORD_USE = f"""
UNWIND $ids AS id
MATCH (m:Memory {{{_SCOPED}, id: id}})
SET m.use_count = coalesce(m.use_count, 0) + 1, m.last_used_at = $at
"""

METADATA_OF = f"""
MATCH (m:Memory {{{_SCOPED}}})
WHERE m.id IN $ids
RETURN m.id AS id, m.metadata AS metadata
"""
"""Read inside the write transaction of :data:`UPDATE_MEMORIES`, which applies merge patches to it."""

UPDATE_MEMORIES = f"""
UNWIND $updates AS row
MATCH (m:Memory {{{_SCOPED}, id: row.id}})
SET m += row.properties
"""
"""``row.properties`` holds only the fields that change (a null removes one, e.g. ``expires_at``)."""

DELETE_MEMORY = f"""
MATCH (m:Memory {{{_SCOPED}, id: $id}})
DETACH DELETE m
RETURN count(*) AS deleted
"""

DELETE_USER_MEMORIES = f"""
MATCH (m:Memory {{{_SCOPED}}})
WITH m LIMIT $batch_size
WITH m, m.id AS id
DETACH DELETE m
RETURN collect(id) AS ids
"""
"""One bounded batch per transaction, repeated until nothing is left, so a huge user never builds a huge one."""

DELETE_USER_ENTITIES = f"""
MATCH (e:Entity {{{_SCOPED}}})
WITH e LIMIT $batch_size
DETACH DELETE e
RETURN count(*) AS deleted
"""

DELETE_USER_JOBS = f"""
MATCH (j:Job {{{_SCOPED}}})
WITH j LIMIT $batch_size
DELETE j
RETURN count(*) AS deleted
"""

# --- reads -----------------------------------------------------------------------------------------------------------

USAGE = f"""
MATCH (m:Memory {{{_SCOPED}}})
WHERE m.id > $after AND {_ACTIVE}
RETURN m.id AS id, m.importance AS importance, m.created_at AS created_at, m.last_used_at AS last_used_at,
       m.use_count AS use_count, m.metadata AS metadata
ORDER BY m.id
LIMIT $limit
"""
"""Keyset pages in id order over the uniqueness constraint's index."""

CORE_MEMORIES = f"""
MATCH (m:Memory {{{_SCOPED}}})
WHERE m.core_since IS NOT NULL AND {_ACTIVE}
RETURN m {{{_MEMORY_FIELDS}}} AS memory
ORDER BY m.core_since, m.id
"""

GET_MEMORIES = f"""
MATCH (m:Memory {{{_SCOPED}}})
WHERE m.id IN $ids
RETURN m {{{_MEMORY_FIELDS}}} AS memory
"""

LIST_MEMORIES = f"""
MATCH (m:Memory {{{_SCOPED}}})
WHERE $include_inactive OR ({_ACTIVE})
RETURN m {{{_MEMORY_FIELDS}}} AS memory
ORDER BY m.created_at DESC, m.id DESC
LIMIT $limit
"""

LIST_MEMORIES_AFTER = f"""
MATCH (m:Memory {{{_SCOPED}}})
WHERE ($include_inactive OR ({_ACTIVE}))
  AND (m.created_at < $created_at OR (m.created_at = $created_at AND m.id < $id))
RETURN m {{{_MEMORY_FIELDS}}} AS memory
ORDER BY m.created_at DESC, m.id DESC
LIMIT $limit
"""
"""Keyset pagination: the cursor is the (created_at, id) of the previous page's last memory."""

COUNT_MEMORIES = f"""
MATCH (m:Memory {{{_SCOPED}}})
WHERE $include_inactive OR ({_ACTIVE})
RETURN count(m) AS count
"""

EXPORT_MEMORIES = f"""
MATCH (m:Memory {{{_SCOPED}}})
RETURN m {{{_MEMORY_FIELDS}}} AS memory
ORDER BY m.created_at, m.id
"""

EXPAND_EDGES = f"""
UNWIND $frontier AS f
MATCH (:Memory {{{_SCOPED}, id: f.id}})-[r]-(m:Memory {{{_SCOPED}}})
WHERE type(r) IN $types
RETURN m.id AS id, max(f.strength * coalesce(r.strength, 1.0)) AS strength, {_ACTIVE} AS active
"""
"""One hop from the frontier over memory-to-memory edges of the given types, either direction, best product."""

EXPAND_SHARED_ENTITIES = f"""
UNWIND $frontier AS f
MATCH (a:Memory {{{_SCOPED}, id: f.id}})-[:MENTIONS]->(:Entity {{{_SCOPED}}})<-[:MENTIONS]-(m:Memory {{{_SCOPED}}})
WHERE m.id <> a.id
RETURN m.id AS id, max(f.strength) AS strength, {_ACTIVE} AS active
"""
"""One hop (of strength 1) to memories that mention an entity the frontier mentions."""

HISTORY_OLDER = f"""
MATCH p = (:Memory {{{_SCOPED}, id: $id}})-[:SUPERSEDES*1..]->(m:Memory {{{_SCOPED}}})
WHERE m.id <> $id
WITH m, max(length(p)) AS distance
RETURN m {{{_MEMORY_FIELDS}}} AS memory
ORDER BY distance DESC, m.created_at, m.id
"""

HISTORY_NEWER = f"""
MATCH p = (m:Memory {{{_SCOPED}}})-[:SUPERSEDES*1..]->(:Memory {{{_SCOPED}, id: $id}})
WHERE m.id <> $id
WITH m, max(length(p)) AS distance
RETURN m {{{_MEMORY_FIELDS}}} AS memory
ORDER BY distance, m.created_at, m.id
"""

ENTITIES = f"""
MATCH (e:Entity {{{_SCOPED}}})
RETURN e.name AS name, e.type AS type, e.display_name AS display_name
ORDER BY name
"""

RELATIONSHIPS = f"""
MATCH (a:Memory {{{_SCOPED}}})-[r]->(b:Memory {{{_SCOPED}}})
WHERE type(r) IN $types
RETURN a.id AS source_id, b.id AS target_id, type(r) AS type, r.strength AS strength
ORDER BY source_id, target_id, type
"""

RELATIONSHIPS_TOUCHING = f"""
UNWIND $ids AS id
MATCH (:Memory {{{_SCOPED}, id: id}})-[r]-(:Memory {{{_SCOPED}}})
WHERE type(r) IN $types
WITH DISTINCT r
RETURN startNode(r).id AS source_id, endNode(r).id AS target_id, type(r) AS type, r.strength AS strength
ORDER BY source_id, target_id, type
"""

EMBEDDINGS = f"""
MATCH (m:Memory {{{_SCOPED}}})
WHERE m.embedding IS NOT NULL AND {_ACTIVE}
RETURN m.id AS id, m.embedding AS embedding
ORDER BY m.created_at, m.id
"""

EMBEDDINGS_OF = f"""
MATCH (m:Memory {{{_SCOPED}}})
WHERE m.id IN $ids AND m.embedding IS NOT NULL AND {_ACTIVE}
RETURN m.id AS id, m.embedding AS embedding
"""

# --- across scopes, by contract (followers and start-up) -------------------------------------------------------------

CHANGES_SINCE = """
MATCH (c:Change)
WHERE c.seq > $seq
RETURN c.seq AS seq, c.tenant AS tenant, c.user AS user, c.memory_id AS memory_id, c.op AS op
ORDER BY c.seq
LIMIT $limit
"""

LAST_SEQ = f"""
OPTIONAL MATCH {_SEQUENCE}
RETURN coalesce(s.value, 0) AS seq
"""

ADVANCE_EXPIRY_WATERMARK = """
MERGE (w:Sequence {name: 'expiry'})
ON CREATE SET w.value = 0.0
WITH w, w.value AS since
SET w.value = CASE WHEN $until > since THEN $until ELSE since END
RETURN since
"""
"""First statement of the expiry sweep (so its lock comes before the change counter's). Two sweeps racing may log
a memory twice, which followers apply harmlessly (they read the memory's state)."""

EXPIRED_BETWEEN = """
MATCH (m:Memory)
WHERE m.expires_at > $since AND m.expires_at <= $until AND m.superseded_by IS NULL
RETURN m.tenant AS tenant, m.user AS user, m.id AS id
ORDER BY m.expires_at, tenant, user, id
"""

APPEND_CHANGES_ACROSS_SCOPES = f"""
MERGE {_SEQUENCE}
ON CREATE SET s.value = 0
SET s.value = s.value + size($changes)
WITH s.value - size($changes) AS base
UNWIND range(0, size($changes) - 1) AS i
CREATE (:Change {{seq: base + i + 1, tenant: $changes[i].tenant, user: $changes[i].user,
                  memory_id: $changes[i].id, op: $changes[i].op, at: $now}})
"""
""":data:`APPEND_CHANGES` for rows of several scopes; also the last statement of its transaction."""

SCOPES = """
MATCH (m:Memory)
RETURN DISTINCT m.tenant AS tenant, m.user AS user
ORDER BY tenant, user
"""
