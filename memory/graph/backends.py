"""The graph backends: each one's name, its config model and how to build its store.

A backend is a folder under memory/graph/ (its store, its ``config`` model) and one entry in :data:`BACKENDS`;
:data:`GraphConfig` and :func:`build_store` follow from the entries, and the conformance suite (tests/memory/graph)
runs against every registered backend. A backend's module is imported only when a store of it is built, so the
Neo4j driver is never loaded for SQLite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar, Union, get_args

from pydantic import BaseModel, Field

from memory.graph.base import GraphStore
from memory.graph.neo4j.config import Neo4jGraphConfig
from memory.graph.sqlite.config import SqliteGraphConfig

C = TypeVar("C", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class GraphBackend(Generic[C]):
    """One registry entry: a backend's settings and how to build its store from them."""

    config: type[C]
    """The backend's settings: a frozen pydantic model whose ``backend`` field is ``Literal[<its name>]``."""
    build_store: Callable[[C, Path], GraphStore]
    """A store for these settings and the engine's data directory (not opened yet: the caller awaits ``open()``)."""

    @property
    def name(self) -> str:
        (name,) = get_args(self.config.model_fields["backend"].annotation)
        return str(name)


def _sqlite_store(config: SqliteGraphConfig, data_dir: Path) -> GraphStore:
    from memory.graph.sqlite.store import SqliteGraphStore

    return SqliteGraphStore.from_config(config, data_dir)


def _neo4j_store(config: Neo4jGraphConfig, data_dir: Path) -> GraphStore:
    from memory.graph.neo4j.store import Neo4jGraphStore

    return Neo4jGraphStore.from_config(config, data_dir)


BACKENDS: dict[str, GraphBackend[Any]] = {
    backend.name: backend
    for backend in (
        GraphBackend(SqliteGraphConfig, _sqlite_store),
        GraphBackend(Neo4jGraphConfig, _neo4j_store),
    )
}
"""Every backend by name, the default (SQLite) first."""

GraphConfig = Annotated[
    Union[tuple(backend.config for backend in BACKENDS.values())],
    Field(discriminator="backend"),
]
"""The settings of any registered backend, told apart by their ``backend`` field (a pydantic discriminated union)."""


def build_store(config: GraphConfig, data_dir: Path) -> GraphStore:
    """The store ``config`` describes (not opened yet). ``data_dir``: where an embedded backend keeps its files."""
    return BACKENDS[config.backend].build_store(config, data_dir)
