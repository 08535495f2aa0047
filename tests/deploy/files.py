"""Readers for the deployment files (deploy/compose, deploy/k8s, Dockerfile) that the tests in this folder check.

Nothing here needs a Docker engine or a cluster: the files are parsed as their tools would parse them (YAML,
Compose's ``${VAR:-default}`` interpolation, Dockerfile instructions, kustomize when ``kubectl`` is installed).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
K8S_BASE = DEPLOY / "k8s" / "base"
K8S_EXAMPLE = DEPLOY / "k8s" / "example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# Compose interpolation: $$ (a literal $), ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}.
_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def yaml_files() -> list[Path]:
    return sorted(path for pattern in ("*.yml", "*.yaml") for path in DEPLOY.rglob(pattern))


def load_documents(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def compose_raw() -> dict[str, Any]:
    (document,) = load_documents(COMPOSE_FILE)
    return document


def env_example() -> dict[str, str]:
    """The variables of .env.example, as docker compose reads its .env file (KEY=value, # comments)."""
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@dataclass(frozen=True)
class Reference:
    """One ``${…}`` in the compose file."""

    name: str
    op: str | None
    arg: str | None


def interpolation_references(value: Any) -> Iterator[Reference]:
    for text in _strings(value):
        for match in _INTERPOLATION.finditer(text):
            if match.group("name"):
                yield Reference(match.group("name"), match.group("op"), match.group("arg"))


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """``value`` with Compose's interpolation applied, as ``docker compose config`` would with ``env`` as .env."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        present = env.get(name)
        if op in (":-", ":?") and not present or op in ("-", "?") and present is None:
            if op.endswith("?"):
                raise KeyError(f"${{{name}}} is required: {arg}")
            return arg or ""
        return present or ""

    return _INTERPOLATION.sub(replace, value)


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose file as it runs with ``env`` (default: .env.example)."""
    return interpolate(compose_raw(), env_example() if env is None else env)


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path → source (volume name or host path) of a service's short-syntax volumes."""
    mounts = {}
    for entry in service.get("volumes", []):
        source, target, *_ = entry.split(":")
        mounts[target] = source
    return mounts


def kustomize(directory: Path) -> list[dict[str, Any]] | None:
    """``kubectl kustomize directory``, parsed; None when kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    done = subprocess.run(
        [kubectl, "kustomize", str(directory)], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def k8s_base_resources() -> list[dict[str, Any]]:
    """Every object of the files the base kustomization lists (read directly, no kubectl needed)."""
    (kustomization,) = load_documents(K8S_BASE / "kustomization.yaml")
    return [doc for name in kustomization["resources"] for doc in load_documents(K8S_BASE / name)]


def find(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [doc for doc in resources if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def containers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return resource["spec"]["template"]["spec"]["containers"]


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def dockerfile_instructions(text: str | None = None) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    text = DOCKERFILE.read_text(encoding="utf-8") if text is None else text
    instructions: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending = f"{pending} {stripped}" if pending else stripped
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        keyword, _, arguments = pending.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
