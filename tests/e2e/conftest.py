"""The acceptance tier (``make test-e2e``): a person's chat in Open WebUI, through the proxy, to the real vLLM.

The stack, once per session, each part on a free loopback port: vLLM CPU (deploy/local/vllm-cpu.sh) <- the wiretap
(records what vLLM receives) <- ``memproxy serve`` (a keys file with one trusted key, for Open WebUI) <- Open WebUI
(deploy/local/openwebui.sh, a fresh data dir) <- Debian's Chromium, headless, driven by Playwright.

Skipped with the reason when Chromium, Playwright or the Open WebUI venv is missing (``make test-e2e`` installs
them); with ``MEMPROXY_E2E_REQUIRED`` set, failed instead, so CI cannot pass by skipping.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.auth import hash_key
from proxy.bench.processes import VllmServer, free_port
from tests.integration.conftest import MODEL, proxy_url, start_proxy
from tests.support.openwebui import Account, OpenWebUIAdmin, OpenWebUIServer, openwebui_installed
from tests.support.wiretap import ThreadedServer, Wiretap

CHROMIUM = Path("/usr/bin/chromium")
OPENWEBUI_KEY = "e2e-openwebui-key"  # trusted: Open WebUI names its users with X-OpenWebUI-User-Id
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("MEMPROXY_TEST_ARTIFACTS") or REPO / "test-artifacts") / "e2e"


def missing_parts() -> list[str]:
    missing = []
    if not CHROMIUM.exists():
        missing.append("no /usr/bin/chromium (make browser-deps)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("playwright is not installed (pip install -e '.[test]')")
    if not openwebui_installed():
        missing.append("no Open WebUI venv (deploy/local/openwebui.sh install)")
    return missing


@pytest.fixture(scope="session", autouse=True)
def e2e_parts(request: pytest.FixtureRequest) -> None:
    if "e2e" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the acceptance tier runs when selected: `make test-e2e` (pytest -m e2e)")
    missing = missing_parts()
    if missing and os.environ.get("MEMPROXY_E2E_REQUIRED"):
        pytest.fail("MEMPROXY_E2E_REQUIRED is set but " + "; ".join(missing), pytrace=False)
    if missing:
        pytest.skip("; ".join(missing) + " - run `make test-e2e`")


@pytest.fixture(scope="session")
def vllm() -> Iterator[VllmServer]:
    with VllmServer(free_port()) as server:
        yield server


@pytest.fixture(scope="session")
def wiretap(vllm: VllmServer) -> Iterator[Wiretap]:
    tap = Wiretap(vllm.base_url)
    with ThreadedServer(tap) as server:
        tap.url = server.url  # type: ignore[attr-defined]
        yield tap


@pytest.fixture(scope="session")
def proxy(wiretap: Wiretap, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``memproxy serve`` in front of the wiretap; its only key is Open WebUI's, trusted. Yields its base URL."""
    home = tmp_path_factory.mktemp("e2e-proxy")
    keys = home / "keys.json"
    keys.write_text(json.dumps([
        {"sha256": hash_key(OPENWEBUI_KEY), "tenant": "acme", "trusted": True, "name": "open-webui"},
    ]))
    # Recall gets more than its 250 ms default: vLLM, Open WebUI and Chromium share two cores with it here.
    upstream = f"{wiretap.url}/v1"  # type: ignore[attr-defined]
    process = start_proxy(upstream, home / "proxy.log", keys_file=str(keys), api_keys="", recall_timeout_ms="5000")
    try:
        yield proxy_url(process)
    finally:
        process.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "proxy.log").write_bytes((home / "proxy.log").read_bytes())


@pytest.fixture(scope="session")
def openwebui(proxy: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Open WebUI pointed at the proxy, on a fresh data dir. Yields its base URL."""
    home = tmp_path_factory.mktemp("e2e-openwebui")
    server = OpenWebUIServer(free_port(), proxy, OPENWEBUI_KEY, home / "data", home / "openwebui.log")
    try:
        with server:
            yield server.base_url
    finally:
        if server.log_path.exists():
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / "openwebui.log").write_bytes(server.log_path.read_bytes())


@pytest.fixture(scope="session")
def accounts(openwebui: str) -> dict[str, Account]:
    """The admin (first signup) sets the chat defaults and adds Alice and Bob as plain users."""
    admin = OpenWebUIAdmin(openwebui)
    try:
        assert MODEL in admin.model_ids(), "Open WebUI does not list the proxy's model"
        # A 135M model on two cores: short answers, so a chat turn takes seconds, not minutes.
        admin.set_chat_defaults(MODEL, max_tokens=48, temperature=0)
        admin.set_task_params(max_tokens=32, temperature=0)
        return {
            "alice": admin.add_user("Alice", "alice@example.com", "alice-pass-1"),
            "bob": admin.add_user("Bob", "bob@example.com", "bob-pass-1"),
        }
    finally:
        admin.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-background-networking"]
        )
        yield browser
        browser.close()
