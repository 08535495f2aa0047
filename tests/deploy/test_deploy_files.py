"""The deployment files agree with the code: every MEMPROXY_* variable is a Settings field, ports match, the image
runs a real CLI command, health checks name real routes; and the Dockerfile keeps its promises (slim, CPU torch
first, non-root, offline, no secrets). No Docker engine, cluster or network is needed."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from proxy.app import create_app
from proxy.cli import build_parser
from proxy.settings import VARIABLES, ServerSettings, Settings
from proxy.settings_env import PREFIX
from tests.deploy import files

SETTINGS_VARIABLES = {variable.name for variable in VARIABLES.all}
SECRET_WORDS = re.compile(r"KEY|PASSWORD|SECRET|TOKEN|AUTH", re.IGNORECASE)


def _k8s_env_names(resources: list[dict[str, Any]]) -> set[str]:
    names = set()
    for doc in resources:
        if doc["kind"] == "ConfigMap":
            names |= set(doc["data"])
        elif doc["kind"] in ("Deployment", "StatefulSet"):
            names |= {item["name"] for c in doc["spec"]["template"]["spec"]["containers"] for item in c.get("env", [])}
    return names


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in files.dockerfile_instructions():
        if instruction.keyword == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(instruction.arguments))
    return env


def _exec_form(instruction: files.Instruction) -> list[str]:
    return json.loads(instruction.arguments)


def _instruction(keyword: str) -> files.Instruction:
    (found,) = [i for i in files.dockerfile_instructions() if i.keyword == keyword]
    return found


async def _status(path: str, data_dir: Path) -> int:
    """GET ``path`` on the real app, in-process, with an upstream that answers /v1/models."""

    async def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"object": "list", "data": []})

    settings = Settings(
        memory_enabled=False, data_dir=data_dir, upstream_url="http://upstream.test/v1", upstream_urls=[], api_keys=[]
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as upstream_client:
        app = create_app(settings, http_client=upstream_client)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy.test") as client:
            return (await client.get(path)).status_code


@pytest.mark.parametrize("path", files.yaml_files(), ids=lambda path: str(path.relative_to(files.DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    assert files.load_documents(path), f"{path} is empty"


def test_every_memproxy_variable_is_a_settings_field() -> None:
    compose = files.compose()
    used = {name for service in compose["services"].values() for name in files.service_environment(service)}
    used |= set(files.env_example())
    used |= _k8s_env_names(files.k8s_base_resources())
    used |= set(_dockerfile_env())
    memproxy = {name for name in used if name.startswith(PREFIX)}
    assert memproxy, "no MEMPROXY_* variable found: the readers are broken"
    assert memproxy - SETTINGS_VARIABLES == set(), "not fields of proxy/settings.py (pydantic ignores them silently)"


def test_deployed_values_are_valid_settings() -> None:
    """The values each deployment sets build a Settings, as the proxy would at start-up (secrets filled in)."""
    compose_env = files.service_environment(files.compose()["services"]["proxy"])
    k8s_env = files.find(files.k8s_base_resources(), "ConfigMap", "memproxy-config")["data"]
    for env in (compose_env, k8s_env, _dockerfile_env()):
        fields = {name.removeprefix(PREFIX).lower(): value for name, value in env.items() if name.startswith(PREFIX)}
        Settings(**fields)


def test_ports_agree_with_the_settings_and_between_the_files() -> None:
    port = ServerSettings.model_fields["port"].default
    assert port == 8080
    compose = files.compose()["services"]
    proxy_env = files.service_environment(compose["proxy"])
    assert int(proxy_env["MEMPROXY_PORT"]) == port
    assert {mapping.rsplit(":", 1)[1] for mapping in compose["proxy"]["ports"]} == {str(port)}
    assert f":{port}/" in compose["open-webui"]["environment"]["OPENAI_API_BASE_URL"]
    assert _instruction("EXPOSE").arguments == str(port) and _dockerfile_env()["MEMPROXY_PORT"] == str(port)

    vllm_args = compose["vllm"]["command"]
    vllm_port = int(vllm_args[vllm_args.index("--port") + 1])
    assert vllm_port == 8000 and urlsplit(proxy_env["MEMPROXY_UPSTREAM_URL"]).port == vllm_port
    assert compose["vllm"]["expose"] == [str(vllm_port)]
    assert f":{vllm_port}/health" in " ".join(compose["vllm"]["healthcheck"]["test"])

    assert urlsplit(proxy_env["MEMPROXY_NEO4J_URI"]).port == 7687
    assert {mapping.rsplit(":", 1)[1] for mapping in compose["neo4j"]["ports"]} == {"7474", "7687"}

    k8s = files.k8s_base_resources()
    container_ports = {
        c["name"]: {p["name"]: p["containerPort"] for p in c["ports"]}
        for doc in k8s
        if doc["kind"] in ("Deployment", "StatefulSet")
        for c in files.containers(doc)
    }
    assert container_ports == {
        "proxy": {"http": port},
        "vllm": {"http": vllm_port},
        "neo4j": {"http": 7474, "bolt": 7687},
    }
    config = files.find(k8s, "ConfigMap", "memproxy-config")["data"]
    assert int(config["MEMPROXY_PORT"]) == port
    assert {urlsplit(url).port for url in config["MEMPROXY_UPSTREAM_URLS"].split(",")} == {vllm_port}
    assert urlsplit(config["MEMPROXY_NEO4J_URI"]).port == 7687
    service_ports = {p["name"]: p["port"] for p in files.find(k8s, "Service", "memproxy")["spec"]["ports"]}
    assert service_ports == {"http": port}


def test_image_and_manifests_run_a_real_cli_command() -> None:
    pyproject = (files.ROOT / "pyproject.toml").read_text(encoding="utf-8")
    entrypoint, command = _exec_form(_instruction("ENTRYPOINT")), _exec_form(_instruction("CMD"))
    assert entrypoint == ["memproxy"] and re.search(r'^memproxy = "proxy\.cli:main"$', pyproject, re.MULTILINE)
    proxy_container = files.containers(files.find(files.k8s_base_resources(), "StatefulSet", "memproxy"))[0]
    for argv in (command, proxy_container["args"]):
        args = build_parser().parse_args(argv)
        assert args.handler.__name__ == "_serve" and args.host == "0.0.0.0"


def _urls_paths(command: str) -> set[str]:
    return set(re.findall(r"127\.0\.0\.1:[^/\s]+(/\w+)", command))


async def test_health_checks_name_real_routes(tmp_path: Path) -> None:
    _, _, image_check = _instruction("HEALTHCHECK").arguments.partition("CMD ")
    image = _urls_paths(" ".join(json.loads(image_check)))
    compose = _urls_paths(" ".join(files.compose()["services"]["proxy"]["healthcheck"]["test"]))
    proxy = files.containers(files.find(files.k8s_base_resources(), "StatefulSet", "memproxy"))[0]
    k8s = {proxy[probe]["httpGet"]["path"] for probe in ("readinessProbe", "livenessProbe", "startupProbe")}
    assert image == compose == {"/healthz"} and k8s == {"/healthz", "/readyz"}
    for path in sorted(image | compose | k8s):
        assert await _status(path, tmp_path) == 200, path


def test_dockerfile_builds_a_slim_offline_non_root_image() -> None:
    instructions = files.dockerfile_instructions()
    text = files.DOCKERFILE.read_text(encoding="utf-8")
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    stages = [i.arguments for i in instructions if i.keyword == "FROM"]
    assert len(stages) == 2 and all(stage.startswith("${PYTHON_IMAGE}") for stage in stages), "multi-stage, slim"
    runs = [i.arguments for i in instructions if i.keyword == "RUN"]
    torch = next(n for n, run in enumerate(runs) if "torch==2.13.0" in run)
    package = next(n for n, run in enumerate(runs) if "-c deploy/constraints.txt ." in run)
    assert torch < package and "download.pytorch.org/whl/cpu" in runs[torch], "CPU torch first, then the package"
    assert "torch==2.13.0" in (files.ROOT / "deploy" / "constraints.txt").read_text(encoding="utf-8").split()
    user = [i.arguments for i in instructions if i.keyword == "USER"][-1]
    assert user.split(":")[0] not in ("0", "root")
    env = _dockerfile_env()
    assert env["HF_HUB_OFFLINE"] == "1"
    assert [name for name in env if SECRET_WORDS.search(name)] == [], "no secret is baked into the image"
    assert json.loads(_instruction("VOLUME").arguments) == [env["MEMPROXY_DATA_DIR"]]


def test_dockerignore_lets_in_only_what_the_dockerfile_copies() -> None:
    lines = [line.strip() for line in files.DOCKERIGNORE.read_text(encoding="utf-8").splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*", "an allowlist: nothing enters the build context unless named"
    allowed = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    copied = set()
    for instruction in files.dockerfile_instructions():
        if instruction.keyword == "COPY" and not instruction.arguments.startswith("--from"):
            *sources, _ = instruction.arguments.split()
            copied |= set(sources)
    assert copied == allowed
    assert all((files.ROOT / source).exists() for source in copied)


def test_compose_and_kubernetes_agree_on_the_settings_they_share() -> None:
    compose_env = files.service_environment(files.compose()["services"]["proxy"])
    k8s = files.find(files.k8s_base_resources(), "ConfigMap", "memproxy-config")["data"]
    shared = (
        "MEMPROXY_GRAPH_BACKEND",
        "MEMPROXY_NEO4J_URI",
        "MEMPROXY_NEO4J_USER",
        "MEMPROXY_DATA_DIR",
        "MEMPROXY_ADAPTERS_DIR",
        "MEMPROXY_ADAPTERS_BASE_MODEL_PATH",
        "MEMPROXY_PORT",
        "MEMPROXY_HOST",
    )
    assert {name: compose_env[name] for name in shared} == {name: k8s[name] for name in shared}
    vllm_config = files.find(files.k8s_base_resources(), "ConfigMap", "vllm-config")["data"]
    assert vllm_config["VLLM_SERVED_MODEL_NAME"] == k8s["MEMPROXY_DEFAULT_MODEL"]
    assert yaml.safe_load(vllm_config["VLLM_MAX_LORAS"]) <= yaml.safe_load(vllm_config["VLLM_MAX_CPU_LORAS"])
