"""Fixtures of the graph store conformance suite: every test runs once per registered backend
(:data:`memory.graph.backends.BACKENDS`), so registering a backend is all it takes to run the whole suite against it.

How a test reaches a backend: the suite builds the backend's config model from environment variables named after the
backend and the field, ``<BACKEND>_<FIELD>`` (``NEO4J_URI``, ``NEO4J_USER``, ``NEO4J_PASSWORD``, ``NEO4J_DATABASE``);
a field not set keeps its default, and the data directory is the test's own folder (a fresh SQLite file per test).
A backend with a required field not set (a server's address) is skipped, the reason naming the variables to set; a
value its model refuses fails the test. A server may be shared: each test writes under tenants of its own and deletes
them afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from memory.graph.backends import BACKENDS, GraphBackend
from memory.graph.base import GraphStore
from memory.models import Scope


def backend_config(backend: GraphBackend[Any], environ: Mapping[str, str]) -> BaseModel:
    """The backend's settings from ``<BACKEND>_<FIELD>`` variables; skips the test if a required one is not set."""
    fields = {name: info for name, info in backend.config.model_fields.items() if name != "backend"}
    variables = {name: f"{backend.name}_{name}".upper() for name in fields}
    values = {name: environ[variable] for name, variable in variables.items() if variable in environ}
    missing = [variables[name] for name, info in fields.items() if info.is_required() and name not in values]
    if missing:
        optional = [variables[name] for name, info in fields.items() if not info.is_required()]
        pytest.skip(
            f"{backend.name} backend: set {', '.join(missing)} (optional: {', '.join(optional) or 'none'}) "
            "to run the suite against it"
        )
    return backend.config.model_validate({"backend": backend.name, **values})


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


@pytest.fixture(params=list(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[GraphStore]:
    backend = BACKENDS[request.param]
    built = backend.build_store(backend_config(backend, os.environ), tmp_path)
    await built.open()
    try:
        yield built
    finally:
        await built.close()


@pytest.fixture
async def scopes(store: GraphStore) -> AsyncIterator[ScopeFactory]:
    factory = ScopeFactory()
    yield factory
    for scope in factory.made:
        await store.delete_user(scope)
