"""The backend registry (memory/graph/backends.py): each backend's config model, the union of them all, building a
store from one — and the way the conformance suite reaches each backend (conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from memory.config import MemoryConfig
from memory.factory import build_store as build_engine_store
from memory.graph.backends import BACKENDS, GraphBackend, GraphConfig, build_store
from memory.graph.base import GraphStore
from memory.graph.neo4j.config import Neo4jGraphConfig
from memory.graph.neo4j.store import Neo4jGraphStore
from memory.graph.sqlite.config import SqliteGraphConfig
from memory.graph.sqlite.store import SqliteGraphStore
from tests.memory.graph.conftest import backend_config

REPO = Path(__file__).resolve().parents[3]
configs = TypeAdapter(GraphConfig)


def test_each_backend_is_registered_under_its_config_models_name() -> None:
    assert list(BACKENDS) == ["sqlite", "neo4j"]
    for name, backend in BACKENDS.items():
        assert backend.name == name
        model = backend.config
        assert model.model_config.get("frozen") and model.model_config.get("extra") == "forbid"
        assert all(field.description for field in model.model_fields.values()), name


def test_the_union_tells_backends_apart_and_refuses_the_rest() -> None:
    assert configs.validate_python({"backend": "sqlite"}) == SqliteGraphConfig()
    neo4j = configs.validate_python({"backend": "neo4j", "uri": "bolt://db:7687", "password": "secret"})
    assert isinstance(neo4j, Neo4jGraphConfig)
    assert (neo4j.user, neo4j.database) == ("neo4j", "neo4j")
    assert neo4j.password is not None and neo4j.password.get_secret_value() == "secret"
    assert "secret" not in repr(neo4j)
    with pytest.raises(ValidationError, match="'sqlite', 'neo4j'"):
        configs.validate_python({"backend": "Neo4j", "uri": "bolt://db:7687"})
    with pytest.raises(ValidationError, match="uri"):
        configs.validate_python({"backend": "neo4j"})
    with pytest.raises(ValidationError, match="extra"):
        configs.validate_python({"backend": "sqlite", "uri": "bolt://db:7687"})


def test_the_union_serves_as_a_settings_field() -> None:
    class Settings(BaseModel):
        graph: GraphConfig = SqliteGraphConfig()

    assert Settings().graph == SqliteGraphConfig()
    chosen = Settings.model_validate({"graph": {"backend": "neo4j", "uri": "neo4j://db"}}).graph
    assert chosen == Neo4jGraphConfig(backend="neo4j", uri="neo4j://db")


def test_sqlite_keeps_its_file_in_the_data_directory_unless_told(tmp_path: Path) -> None:
    store = build_store(SqliteGraphConfig(), tmp_path)
    assert isinstance(store, SqliteGraphStore) and store.path == tmp_path / "graph.sqlite3"
    elsewhere = build_store(SqliteGraphConfig(path=tmp_path / "other" / "g.db"), tmp_path)
    assert isinstance(elsewhere, SqliteGraphStore) and elsewhere.path == tmp_path / "other" / "g.db"


def test_neo4j_builds_a_store_without_connecting(tmp_path: Path) -> None:
    config = Neo4jGraphConfig(backend="neo4j", uri="bolt://127.0.0.1:1")
    assert isinstance(build_store(config, tmp_path), Neo4jGraphStore)


def test_sqlite_never_loads_the_neo4j_driver(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from memory.graph.backends import build_store
        from memory.graph.sqlite.config import SqliteGraphConfig

        store = build_store(SqliteGraphConfig(), Path(sys.argv[1]))
        print(type(store).__name__, "neo4j" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["SqliteGraphStore", "False"], done.stderr


def test_the_engine_builds_its_store_through_the_registry(tmp_path: Path) -> None:
    store = build_engine_store(MemoryConfig(data_dir=tmp_path))
    assert isinstance(store, SqliteGraphStore) and store.path == tmp_path / "graph.sqlite3"
    neo4j = MemoryConfig(data_dir=tmp_path, graph={"backend": "neo4j", "uri": "bolt://127.0.0.1:1"})
    assert isinstance(build_engine_store(neo4j), Neo4jGraphStore)


# --- how the suite reaches a backend (conftest.backend_config) -----------------------------------------------------


def test_an_embedded_backend_runs_with_no_settings_at_all() -> None:
    """So the suite always runs somewhere: the default backend needs nothing from the environment."""
    default = next(iter(BACKENDS.values()))
    assert backend_config(default, {}) == SqliteGraphConfig()


def test_a_server_backend_is_built_from_its_variables() -> None:
    environ = {"NEO4J_URI": "bolt://db:7687", "NEO4J_PASSWORD": "pw", "NEO4J_DATABASE": "memories", "OTHER": "x"}
    config = backend_config(BACKENDS["neo4j"], environ)
    assert isinstance(config, Neo4jGraphConfig)
    assert (config.uri, config.user, config.database) == ("bolt://db:7687", "neo4j", "memories")
    assert config.password is not None and config.password.get_secret_value() == "pw"


def test_a_server_backend_without_its_address_is_skipped_with_the_reason() -> None:
    with pytest.raises(pytest.skip.Exception, match=r"neo4j backend: set NEO4J_URI \(optional: NEO4J_USER, "):
        backend_config(BACKENDS["neo4j"], {"NEO4J_USER": "someone"})


class PortConfig(BaseModel):
    """A config model only (no store is built): one with a field an environment variable can get wrong."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Literal["port"] = Field("port", description="A backend that is not registered.")
    port: int = Field(7687, description="A number.")


def test_a_value_the_model_refuses_fails_instead_of_skipping() -> None:
    backend = GraphBackend(PortConfig, _never_built)
    assert backend_config(backend, {"PORT_PORT": "7688"}) == PortConfig(port=7688)
    with pytest.raises(ValidationError, match="port"):
        backend_config(backend, {"PORT_PORT": "seven"})


def _never_built(config: PortConfig, data_dir: Path) -> GraphStore:
    raise AssertionError("the suite's config reader builds no store")
