"""What can be checked of the Neo4j backend without a server (its behaviour is the shared conformance suite's, run
wherever NEO4J_URI is set): it sends only cypher.py's statements, with exactly their parameters, every statement
stays inside the scope, and its pure helpers round-trip."""

from __future__ import annotations

import ast
import re
import socket
from pathlib import Path

import numpy as np
import pytest

from memory.graph.base import SHARED_ENTITY, StoreUnavailable
from memory.graph.neo4j import cypher, records
from memory.graph.neo4j.store import Neo4jGraphStore
from memory.graph.neo4j.traversal import Walk
from memory.models import Memory, MemoryKind, RelationType, Scope
from tests.cypher.store_calls import STORE_FILES, parameters_used, statements, store_call_sites

ACROSS_SCOPES = {
    "ENSURE_SEQUENCE",
    "APPEND_CHANGES",
    "APPEND_CHANGES_ACROSS_SCOPES",
    "CHANGES_SINCE",
    "LAST_SEQ",
    "SCOPES",
    "ADVANCE_EXPIRY_WATERMARK",
    "EXPIRED_BETWEEN",
}
"""The change log, the list of scopes and the expiry sweep: they work across scopes, by contract."""
_SCOPED_NODE = re.compile(r"\(\s*\w*\s*:\s*(Memory|Entity|Job)\b([^)]*)\)")


def test_every_statement_is_sent_and_every_call_passes_exactly_its_parameters() -> None:
    sites, problems = store_call_sites()
    assert not problems, problems
    texts = statements()
    assert {site.statement for site in sites} == set(texts), "a statement in cypher.py that the store never sends"
    for site in sites:
        used = parameters_used(texts[site.statement])
        assert site.parameters == used, f"{site.line} {site.statement}: passes {site.parameters}"


@pytest.mark.parametrize("path", STORE_FILES, ids=lambda path: path.name)
def test_the_store_sends_cypher_only_through_run_and_only_from_cypher_py(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    senders = [
        function.name
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for call in ast.walk(function)
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "run"
    ]
    assert senders == (["run"] if path.name == "tx.py" else [])
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    clause = re.compile(r"\b(MATCH|MERGE|CREATE|DELETE|SET|RETURN|UNWIND|DETACH)\b")
    literals = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]
    assert not [text for text in literals if clause.search(text)]


def test_the_call_site_reader_sees_through_what_it_claims_to() -> None:
    source = """
async def f(tx, scope, rows):
    params = scoped(scope, rows=rows)
    await fetch_rows(tx, cypher.UPSERT_ENTITIES, params)
    for statement in (cypher.DELETE_USER_ENTITIES, cypher.DELETE_USER_JOBS):
        await single_value(tx, statement, {"batch_size": 1})
    await single_value(tx, cypher.MERGE_EDGES[kind], scoped(scope, edges=[]))
    await fetch_rows(tx, cypher.ENTITIES, scoped(scope, **extra))
"""
    sites, problems = store_call_sites(source)
    found = {(s.statement, s.parameters) for s in sites}
    assert ("UPSERT_ENTITIES", frozenset({"tenant", "user", "rows"})) in found
    assert ("DELETE_USER_JOBS", frozenset({"batch_size"})) in found
    assert {s.statement for s in sites if s.statement.startswith("MERGE_")} == {
        "MERGE_RELATED_TO",
        "MERGE_LEADS_TO",
        "MERGE_SUPERSEDES",
    }
    assert problems == ["<source>:8: scoped(**…) hides parameter names"]


@pytest.mark.parametrize(
    "name", sorted(n for n, text in statements().items() if text not in cypher.SCHEMA and n not in ACROSS_SCOPES)
)
def test_every_memory_entity_and_job_pattern_is_scoped(name: str) -> None:
    text = statements()[name]
    assert _SCOPED_NODE.search(text), f"{name} touches no Memory, Entity or Job"
    for label, body in _SCOPED_NODE.findall(text):
        assert re.match(r"\s*\{\s*tenant: \$tenant, user: \$user\b", body), f"{name}: unscoped ({label}{body})"


def test_change_log_entries_carry_their_scope() -> None:
    assert "CREATE (:Change {seq: base + i + 1, tenant: $tenant, user: $user," in cypher.APPEND_CHANGES


def test_edge_statements_cover_every_relationship_type() -> None:
    assert set(cypher.MERGE_EDGES) == set(RelationType)
    for rel_type, text in cypher.MERGE_EDGES.items():
        assert f"[r:{rel_type.value}]" in text
    assert set(cypher.RELATIONSHIP_TYPES) == {SHARED_ENTITY, *(t.value for t in RelationType)}


def test_traversal_type_filters() -> None:
    scope = Scope("t", "u")
    everything = Walk.over(scope, None)
    assert (everything.edge_types, everything.shared) == (["RELATED_TO", "LEADS_TO", "SUPERSEDES"], True)
    leads = Walk.over(scope, [RelationType.LEADS_TO])
    assert (leads.edge_types, leads.shared) == (["LEADS_TO"], False)
    shared = Walk.over(scope, [SHARED_ENTITY])
    assert (shared.edge_types, shared.shared) == ([], True)
    assert Walk.over(scope, ["FRIENDS_WITH"]).edge_types == ["FRIENDS_WITH"]  # matches no edge


def _memory() -> Memory:
    return Memory(
        scope=Scope("acme", "alice"),
        text="Pochi は犬です",
        id="m-1",
        kind=MemoryKind.FACT,
        importance=0.8,
        created_at=1_760_000_000.25,
        event_time=1_700_000_000.5,
        source_ids=("D1:3", "D1:4"),
        entities=("pochi",),
        metadata={"category": "pets", "tags": ["dog"]},
    )


def test_a_memory_row_reads_back_as_the_same_memory() -> None:
    memory = _memory()
    row = records.memory_row(memory, np.arange(4, dtype=np.float32) / 3)
    assert row["embedding"] == [float(np.float32(i / 3)) for i in range(4)]
    assert np.array_equal(np.asarray(row["embedding"], dtype=np.float32), np.arange(4, dtype=np.float32) / 3)
    projected = {"id": row["id"], **row["properties"]}  # what ``m {.id, .text, …}`` returns
    assert records.memory_from_row(memory.scope, projected) == memory
    assert records.memory_row(memory, None)["embedding"] is None
    bare = memory.evolve(source_ids=(), entities=(), metadata={})
    row = records.memory_row(bare, None)
    assert records.memory_from_row(bare.scope, {"id": row["id"], **row["properties"]}) == bare
    with pytest.raises(ValueError, match="vector"):
        records.memory_row(memory, np.ones((2, 2), dtype=np.float32))


async def test_using_the_store_before_open_is_a_programming_error() -> None:
    store = Neo4jGraphStore("bolt://127.0.0.1:7687", "neo4j", "secret")
    with pytest.raises(RuntimeError, match="open"):
        await store.count_memories(Scope("t", "u"))


async def test_an_unreachable_server_is_store_unavailable() -> None:
    """A real driver against a port nobody listens on (not a fake server): the failure maps to StoreUnavailable."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = Neo4jGraphStore(f"bolt://127.0.0.1:{port}", "neo4j", "secret")
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await store.open()
        assert "secret" not in str(caught.value)
        assert caught.value.__cause__ is not None
    finally:
        await store.close()
