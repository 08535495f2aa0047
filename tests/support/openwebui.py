"""Open WebUI for the acceptance tier: the server (started / stopped through deploy/local/openwebui.sh, by its
recorded PID) and the few admin calls of its REST API the tier needs (accounts, default generation parameters)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from proxy.bench.processes import ROOT

OPENWEBUI_SCRIPT = ROOT / "deploy" / "local" / "openwebui.sh"


def openwebui_installed() -> bool:
    """Whether the script's venv is complete (its install stamp is there); installs nothing."""
    return subprocess.run(["bash", str(OPENWEBUI_SCRIPT), "installed"], capture_output=True, timeout=30).returncode == 0


class OpenWebUIServer:
    """Open WebUI on 127.0.0.1:``port`` with a fresh data dir, its OpenAI connection pointed at ``proxy_url`` with
    ``api_key`` (a trusted key of the proxy, so the user id it forwards is believed)."""

    def __init__(self, port: int, proxy_url: str, api_key: str, data_dir: Path, log_path: Path) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "MEMPROXY_OPENWEBUI_PORT": str(port),
            "MEMPROXY_OPENWEBUI_PROXY_URL": proxy_url,
            "MEMPROXY_OPENWEBUI_API_KEY": api_key,
            "MEMPROXY_OPENWEBUI_DATA_DIR": str(data_dir),
            "MEMPROXY_OPENWEBUI_LOG_FILE": str(log_path),
        }

    def _script(self, action: str, timeout: float) -> None:
        subprocess.run(["bash", str(OPENWEBUI_SCRIPT), action], env=self.env, check=True, timeout=timeout)

    def start(self) -> OpenWebUIServer:
        self._script("start", timeout=900)
        return self

    def stop(self) -> None:
        self._script("stop", timeout=120)

    def __enter__(self) -> OpenWebUIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Account:
    id: str  # what Open WebUI forwards as X-OpenWebUI-User-Id
    name: str
    email: str
    password: str


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, f"{response.request.method} {response.request.url.path}: " \
                                        f"{response.status_code} {response.text[:500]}"
    return response.json()


class OpenWebUIAdmin:
    """The first account signed up on a fresh Open WebUI (which makes it the admin), and what it sets up."""

    def __init__(self, base_url: str, email: str = "admin@example.com", password: str = "admin-pass-1") -> None:
        self.http = httpx.Client(base_url=base_url, timeout=120, trust_env=False)
        body = _ok(self.http.post("/api/v1/auths/signup", json={"name": "Admin", "email": email, "password": password}))
        assert body["role"] == "admin", f"the first signup got role {body['role']!r}: was the data dir fresh?"
        self.http.headers["authorization"] = f"Bearer {body['token']}"

    def add_user(self, name: str, email: str, password: str) -> Account:
        """A plain user (role ``user``) created by the admin."""
        body = _ok(self.http.post("/api/v1/auths/add", json={
            "name": name, "email": email, "password": password, "role": "user",
        }))
        return Account(body["id"], name, email, password)

    def model_ids(self) -> list[str]:
        return [model["id"] for model in _ok(self.http.get("/api/models"))["data"]]

    def set_chat_defaults(self, model_id: str, **params: Any) -> None:
        """The model every new chat starts with (so the UI never asks to pick one) and the generation parameters
        every chat gets (Open WebUI sends no max_tokens of its own)."""
        config = _ok(self.http.get("/api/v1/configs/models"))
        _ok(self.http.post("/api/v1/configs/models", json={
            **config, "DEFAULT_MODELS": model_id, "DEFAULT_MODEL_PARAMS": params,
        }))

    def set_task_params(self, **params: Any) -> None:
        """Generation parameters of the side requests (title, tags, follow-ups; Open WebUI's default is 1000
        tokens for a title)."""
        config = _ok(self.http.get("/api/v1/tasks/config"))
        _ok(self.http.post("/api/v1/tasks/config/update", json={**config, "TASK_MODEL_PARAMS": params}))

    def close(self) -> None:
        self.http.close()
