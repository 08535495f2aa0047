"""One settings tree: every setting of every section has one MEMPROXY_* variable, the names memproxy had before the
tree still work, an invalid value stops the start with one line naming its variable, and the README's table is the
one the models generate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from adapters.config import AdaptersConfig
from memory import MemoryConfig
from proxy.settings import VARIABLES, Settings, SettingsError, load_settings
from proxy.settings_env import NO_VARIABLE, markdown_table

ROOT = Path(__file__).resolve().parents[2]
BEFORE_THE_TREE = (
    "upstream_url upstream_urls upstream_probe_interval_s upstream_api_key default_model host port data_dir api_keys "
    "keys_file api_keys_tenant api_keys_trusted user_header conversation_header cache_salt cache_salt_secret "
    "memory_enabled recall_top_k recall_preset recall_token_budget recall_timeout_ms prompt_layout recall_anticipate "
    "recall_late_top_k prefill_max_in_flight prefill_align_tokens prefill_delay_ms core_memory_limit vector_ram_mb "
    "recall_query_max_tokens side_request_markers extractor extractor_url extractor_model embedder embedding_model "
    "graph_backend neo4j_uri neo4j_user neo4j_password connect_timeout_s read_timeout_s write_timeout_s "
    "pool_timeout_s max_upstream_connections adapters_enabled adapters_dir adapters_base_model_path adapters_vllm_url "
    "adapters_max_loaded adapters_loader adapters_refresh_s adapters_min_ppl_reduction "
    "adapters_max_general_ppl_increase adapters_train_epochs adapters_train_threads log_level log_format cli_url "
    "cli_api_key"
).split()
"""Every field of proxy/settings.py at b74930d, the flat settings this tree replaced."""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("MEMPROXY_"):
            monkeypatch.delenv(name)


def leaves(model: type[BaseModel], path: tuple[str, ...] = ()) -> set[str]:
    """Every leaf field of a config model, union members included (``memory.graph.uri``)."""
    found = set()
    for name, field in model.model_fields.items():
        here = (*path, name)
        members = [m for m in getattr(field.annotation, "__args__", ()) if isinstance(m, type) and issubclass(m, BaseModel)]
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            members = [field.annotation]
        if members:
            for member in members:
                found |= leaves(member, here)
        else:
            found.add(".".join(here))
    return found


def test_the_names_from_before_the_tree_keep_working() -> None:
    assert {f"MEMPROXY_{name.upper()}" for name in BEFORE_THE_TREE} <= {v.name for v in VARIABLES.all}


@pytest.mark.parametrize("section, model", [("memory", MemoryConfig), ("adapters", AdaptersConfig)])
def test_every_engine_and_adapter_setting_has_a_variable(section: str, model: type[BaseModel]) -> None:
    reachable = {".".join(v.path) for v in VARIABLES.all}
    missing = {leaf for leaf in leaves(model, (section,)) if leaf not in reachable and leaf not in NO_VARIABLE}
    assert missing == set()


def test_every_variable_is_described_and_named_once() -> None:
    assert [v.name for v in VARIABLES.all if not v.description] == []
    by_name: dict[str, set[tuple[str, ...]]] = {}
    for variable in VARIABLES.all:
        by_name.setdefault(variable.name, set()).add(variable.path)
    assert {name: paths for name, paths in by_name.items() if len(paths) > 1} == {}


def test_variables_reach_their_place_in_the_tree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEMPROXY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MEMPROXY_RECALL_TOP_K", "3")
    monkeypatch.setenv("MEMPROXY_SCHEDULER_INTERVAL_S", "60")
    monkeypatch.setenv("MEMPROXY_DEDUPE_THRESHOLD", "0.9")
    monkeypatch.setenv("MEMPROXY_EMBEDDING_THREADS", "2")
    monkeypatch.setenv("MEMPROXY_NEO4J_URI", "bolt://ignored:7687")  # not the chosen backend: left alone
    settings = load_settings()
    assert settings.chat.top_k == 3 and settings.memory.scheduler.interval_s == 60
    assert settings.memory.dedupe_threshold == 0.9 and settings.memory.embedder.threads == 2
    assert settings.memory.graph.backend == "sqlite" and settings.memory.data_dir == tmp_path
    assert settings.adapters.adapters_dir == tmp_path / "adapters"


def test_a_chosen_implementation_reads_its_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMPROXY_GRAPH_BACKEND", "neo4j")
    monkeypatch.setenv("MEMPROXY_NEO4J_URI", "bolt://graph:7687")
    monkeypatch.setenv("MEMPROXY_NEO4J_DATABASE", "memories")
    monkeypatch.setenv("MEMPROXY_EXTRACTOR", "llm")
    monkeypatch.setenv("MEMPROXY_UPSTREAM_URL", "http://vllm:8000/v1")
    settings = load_settings(default_model="tiny")
    graph = settings.memory.graph
    assert (graph.backend, graph.uri, graph.database) == ("neo4j", "bolt://graph:7687", "memories")
    extractor = settings.memory.extractor
    assert (extractor.kind, extractor.url, extractor.model) == ("llm", "http://vllm:8000/v1", "tiny")


def test_keywords_are_the_variables_names_or_whole_sections() -> None:
    flat = Settings(recall_top_k=2, embedder="torch", embedding_threads=3)
    nested = Settings(chat={"top_k": 2}, memory={"embedder": {"runtime": "torch", "threads": 3}})
    assert flat.chat == nested.chat and flat.memory.embedder == nested.memory.embedder
    with pytest.raises(ValueError):
        Settings(recal_top_k=2)  # a typo in code is refused, not ignored


@pytest.mark.parametrize(
    "variable, value, says",
    [
        ("MEMPROXY_GRAPH_BACKEND", "Neo4j", "MEMPROXY_GRAPH_BACKEND='Neo4j' is not valid; allowed values: sqlite, neo4j"),
        ("MEMPROXY_EMBEDDER", "tensorflow", "MEMPROXY_EMBEDDER='tensorflow' is not valid; allowed values: onnx, torch"),
        ("MEMPROXY_PROMPT_LAYOUT", "fancy", "allowed values: cache-aware, naive"),
        ("MEMPROXY_RECALL_TOP_K", "many", "MEMPROXY_RECALL_TOP_K='many' is not valid (Input should be a valid integer"),
        ("MEMPROXY_RECALL_PRESET", "best", "MEMPROXY_RECALL_PRESET='best' is not valid"),
        ("MEMPROXY_ADAPTERS_LOADER", "magic", "allowed values: runtime, resolver"),
        ("MEMPROXY_LOG_LEVEL", "loud", "allowed values: debug, info, warning, error"),
    ],
)
def test_an_invalid_value_names_its_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    [line] = str(refused.value).splitlines()
    assert line.startswith(variable) and says in line


def test_a_missing_value_says_what_needs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMPROXY_GRAPH_BACKEND", "neo4j")
    with pytest.raises(SettingsError, match="^MEMPROXY_NEO4J_URI is required when MEMPROXY_GRAPH_BACKEND=neo4j$"):
        load_settings()


def test_secrets_are_not_repeated_in_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMPROXY_EXTRACTOR", "llm")
    monkeypatch.setenv("MEMPROXY_EXTRACTOR_TIMEOUT_S", "-1")
    monkeypatch.setenv("MEMPROXY_UPSTREAM_API_KEY", "sk-very-secret")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "MEMPROXY_EXTRACTOR_TIMEOUT_S" in str(refused.value) and "sk-very-secret" not in str(refused.value)


def test_the_proxy_refuses_to_start_on_an_invalid_setting(tmp_path: Path) -> None:
    """``memproxy serve`` stops before anything starts: exit 2, one line naming the variable and what it takes."""
    env = {**os.environ, "MEMPROXY_GRAPH_BACKEND": "Neo4j", "MEMPROXY_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "memproxy: invalid setting: MEMPROXY_GRAPH_BACKEND='Neo4j' is not valid; allowed values: sqlite, neo4j"
    )
    assert list(tmp_path.iterdir()) == []  # nothing was opened


def test_the_readme_table_is_the_generated_one() -> None:
    """`memproxy settings --markdown` writes the table; the README carries it between its markers."""
    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- settings-table: generated by `memproxy settings --markdown` -->\n", "\n<!-- /settings-table -->"
    assert start in readme and end in readme
    table = readme[readme.index(start) + len(start) : readme.index(end)]
    assert table == markdown_table(VARIABLES.all)
