"""The memory browser's files (``/ui``) as the proxy serves them; the page itself is driven in tests/browser."""

from __future__ import annotations

import re

import httpx
import pytest

from proxy.ui.router import STATIC_DIR
from tests.unit.conftest import ClientFactory


async def test_page_loads_without_a_key_under_a_strict_policy(make_client: ClientFactory) -> None:
    client: httpx.AsyncClient = make_client(api_keys="sk-secret")
    page = await client.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "connect-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    # Every file the page links to is served, from this origin, relative (so a path prefix works too).
    linked = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert linked and all(link.startswith("ui/static/") for link in linked)
    for link in linked:
        response = await client.get(f"/{link}")
        assert response.status_code == 200 and response.headers["content-security-policy"] == policy
    assert (await client.get("/ui/")).headers["location"].endswith("/ui")
    # The memory API itself still needs the key.
    assert (await client.get("/v1/memories")).status_code == 401


@pytest.mark.parametrize("path", ["/ui/static/nope.js", "/ui/static/..%2frouter.py", "/ui/static/%2e%2e%2f__init__.py"])
async def test_only_the_shipped_files_are_served(make_client: ClientFactory, path: str) -> None:
    response = await make_client().get(path)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


async def test_the_page_is_not_part_of_the_api_schema(make_client: ClientFactory) -> None:
    paths = (await make_client().get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p.startswith("/ui")]


def test_scripts_never_write_markup() -> None:
    """Memory text is user data: the scripts build the DOM with textContent / append, never from HTML strings."""
    for script in STATIC_DIR.glob("*.js"):
        source = script.read_text()
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", source), script.name
