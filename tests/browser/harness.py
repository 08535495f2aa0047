"""The memory browser's test harness: ``memproxy serve`` with its real memory engine (SQLite store, FAISS, BM25, ONNX
MiniLM) on a temporary data dir and a keys file, headless Chromium driven by Playwright, and helpers to seed memories
through the REST API and to sign in. One server and one browser serve the whole package (its tests share the data,
in file order).

Needs Debian's Chromium at /usr/bin/chromium (``make browser-deps``); Playwright's own browser downloads are never
used. Screenshots go to ``$MEMPROXY_TEST_ARTIFACTS`` (default ``test-artifacts/``, git-ignored), under ``browser/``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.auth import hash_key
from proxy.bench.processes import ServerProcess, free_port

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_TESTS = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: run `make browser-deps` to install it"),
]
"""Every browser test module's ``pytestmark``."""
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
expect = sync_api.expect
Page = sync_api.Page

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("MEMPROXY_TEST_ARTIFACTS") or REPO / "test-artifacts") / "browser"
MEMPROXY = str(Path(sys.executable).with_name("memproxy"))
KEYS = {
    "sk-acme-svc-3f9a": {"tenant": "acme", "user": "acme-svc", "trusted": True},
    "sk-acme-alice-71c2": {"tenant": "acme", "user": "alice"},
    "sk-acme-bob-0d4e": {"tenant": "acme", "user": "bob"},
    "sk-ops-admin-9b1f": {"tenant": "ops", "user": "ops", "admin": True},
}
SVC, ALICE, BOB, ADMIN = KEYS
Seed = Callable[..., dict[str, Any]]


# --- the server, the browser, the page ---------------------------------------------------------------------------


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``memproxy serve`` on a free port with a keys file and its own data dir; yields its base URL."""
    home = tmp_path_factory.mktemp("memory-browser")
    keys_file = home / "keys.json"
    keys_file.write_text(json.dumps([{"sha256": hash_key(k), "name": v["user"], **v} for k, v in KEYS.items()]))
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MEMPROXY_")},
        "HF_HUB_OFFLINE": "1",
        "MEMPROXY_DATA_DIR": str(home / "data"),
        "MEMPROXY_KEYS_FILE": str(keys_file),
        "MEMPROXY_UPSTREAM_URL": f"http://127.0.0.1:{free_port()}/v1",  # nothing listens there
    }
    process = ServerProcess(
        [MEMPROXY, "serve", "--port", str(port), "--access-log"],
        f"http://127.0.0.1:{port}/healthz",
        env=env,
        log_path=home / "proxy.log",
        start_timeout_s=120,
    )
    with process:
        yield f"http://127.0.0.1:{port}"
    # The access log has every URL the browser asked for: no key may be in one.
    log = (home / "proxy.log").read_text(errors="replace")
    assert "/ui" in log and not [key for key in KEYS if key in log]


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-background-networking"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, server: str, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context (empty sessionStorage) per test. After the test: a screenshot, and checks that no key
    was ever put in a URL and that the page raised no script error."""
    context = browser.new_context(base_url=server, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    urls: list[str] = []
    script_errors: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    page.on("pageerror", lambda e: script_errors.append(str(e)))
    try:
        yield page
    finally:
        shoot(page, f"{request.node.name}-end")
        context.close()
    assert urls and not [u for u in urls if any(key in u for key in KEYS)]
    assert not [u for u in urls if not u.startswith(server)], "the page fetched something from outside the proxy"
    assert script_errors == []


def shoot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png", full_page=True)


@pytest.fixture(scope="package")
def api(server: str) -> Iterator[Callable[[str], httpx.Client]]:
    """``api(key)``: an HTTP client of the server that sends that key."""
    opened: list[httpx.Client] = []

    def client(key: str) -> httpx.Client:
        opened.append(httpx.Client(base_url=server, headers={"authorization": f"Bearer {key}"}, trust_env=False))
        return opened[-1]

    yield client
    for each in opened:
        each.close()


@pytest.fixture(scope="package")
def seed(api: Callable[[str], httpx.Client]) -> Seed:
    """``seed(user, text, **fields)``: one memory for ``user`` of tenant acme, stored through the REST API."""

    def add(user: str, text: str, **fields: Any) -> dict[str, Any]:
        response = api(SVC).post("/v1/memories", params={"user": user}, json={"content": text, **fields})
        assert response.status_code == 201, response.text
        return response.json()

    return add


def sign_in(page: Page, key: str, *, user: str = "", tenant: str = "") -> None:
    page.goto("/ui")
    page.fill("#api-key", key)
    page.fill("#user", user)
    page.fill("#tenant", tenant)
    page.click("#connect")
    expect(page.locator("#app:visible, #error:visible").first).to_be_visible()


def memory_items(page: Page) -> Any:
    return page.locator("#memory-list li.memory")


def item(page: Page, text: str) -> Any:
    return memory_items(page).filter(has=page.locator(".text", has_text=text))
