"""Fixtures of the graph store conformance suite: every test runs once per backend.

SQLite runs everywhere (a fresh file per test). Neo4j runs where ``NEO4J_URI`` is set (``NEO4J_USER``, default
"neo4j", and ``NEO4J_PASSWORD``), against a server that may be shared: each test writes under tenants of its own and
deletes them afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from memory.graph.base import GraphStore
from memory.graph.sqlite.store import SqliteGraphStore
from memory.models import Scope


class ScopeFactory:
    """Scopes under a tenant prefix unique to one test; all of them are deleted when the test ends."""

    def __init__(self) -> None:
        self.prefix = f"test-{uuid.uuid4().hex[:12]}-"
        self.made: set[Scope] = set()

    def __call__(self, user: str = "alice", tenant: str = "acme") -> Scope:
        scope = Scope(self.prefix + tenant, user)
        self.made.add(scope)
        return scope

    def owns(self, scope: Scope) -> bool:
        return scope.tenant.startswith(self.prefix)


@pytest.fixture(params=["sqlite", "neo4j"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[GraphStore]:
    backend: GraphStore
    if request.param == "sqlite":
        backend = SqliteGraphStore(tmp_path / "graph.db")
    else:
        uri = os.environ.get("NEO4J_URI")
        if not uri:
            pytest.skip("Neo4j backend: set NEO4J_URI (and NEO4J_USER, NEO4J_PASSWORD) to run it against a server")
        from memory.graph.neo4j.store import Neo4jGraphStore

        backend = Neo4jGraphStore(uri, os.environ.get("NEO4J_USER", "neo4j"), os.environ.get("NEO4J_PASSWORD", ""))
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
async def scopes(store: GraphStore) -> AsyncIterator[ScopeFactory]:
    factory = ScopeFactory()
    yield factory
    for scope in factory.made:
        await store.delete_user(scope)
