"""The memory browser (``/ui``) in headless Chromium, driven by Playwright, against ``memproxy serve`` with its real
memory engine (SQLite store, FAISS, BM25, ONNX MiniLM) on a temporary data dir. Memories are seeded through the REST
API; each test signs in as a real key of the keys file. Chats are not used: the upstream URL points at nothing.

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
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: run `make browser-deps` to install it"),
]
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


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
def api(server: str) -> Iterator[Callable[[str], httpx.Client]]:
    """``api(key)``: an HTTP client of the server that sends that key."""
    opened: list[httpx.Client] = []

    def client(key: str) -> httpx.Client:
        opened.append(httpx.Client(base_url=server, headers={"authorization": f"Bearer {key}"}, trust_env=False))
        return opened[-1]

    yield client
    for each in opened:
        each.close()


@pytest.fixture(scope="module")
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


# --- the tests ---------------------------------------------------------------------------------------------------


def test_page_loads_without_a_key_and_asks_for_one(page: Page, server: str) -> None:
    response = page.goto("/ui")
    assert response is not None and response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator("body[data-ready=true]")).to_be_attached()
    expect(page.locator("#api-key")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    assert page.evaluate("Object.keys(sessionStorage).length") == 0
    missing = httpx.get(f"{server}/ui/static/..%2f..%2fapp.py", trust_env=False)
    assert missing.status_code == 404 and "error" in missing.json()


LIST_TEXTS = [  # different enough that the engine's dedupe keeps them all
    "My sister lives in Lisbon", "I play the cello on Sundays", "My car is a red Fiat Panda",
    "I am allergic to peanuts", "Our wedding anniversary is in May", "I run 10 km every Tuesday",
    "The wifi router is in the attic", "My favourite novel is Dune", "I studied chemistry in Leeds",
    "The cat's vet is Dr. Okafor", "I start work at 8:30",
]


def test_list_shows_memories_details_and_pages(page: Page, seed: Seed, api: Callable[[str], httpx.Client]) -> None:
    for text in LIST_TEXTS:
        seed("lister", text, importance=0.3)
    old = {
        "id": "mem-imported-1", "text": "I prefer green tea to coffee", "kind": "preference", "importance": 0.8,
        "created_at": "2025-01-02T03:04:05+00:00", "event_time": "2024-12-31T20:00:00+00:00", "use_count": 4,
        "source_ids": ["chatcmpl-42:user-3", "chatcmpl-42:user-4"], "entities": ["green tea"],
    }
    imported = api(SVC).post("/v1/memories/import", params={"user": "lister"}, json={"memories": [old]})
    assert imported.status_code == 200, imported.text

    sign_in(page, SVC, user="lister")
    page.select_option("#page-size", "10")
    expect(memory_items(page)).to_have_count(10)
    expect(page.locator("#page-label")).to_have_text("Page 1")
    expect(page.locator("#prev-page")).to_be_disabled()
    page.click("#next-page")
    expect(memory_items(page)).to_have_count(2)
    expect(page.locator("#page-label")).to_have_text("Page 2")
    expect(page.locator("#next-page")).to_be_disabled()
    tea = item(page, "green tea")
    expect(tea.locator(".meta")).to_contain_text("preference")
    expect(tea.locator(".meta")).to_contain_text("used 4×")

    tea.click()
    detail = page.locator("#detail .memory-detail")
    expect(detail).to_have_attribute("data-id", "mem-imported-1")
    for shown in ("preference", "0.80", "2025-01-02 03:04 UTC", "2024-12-31 20:00 UTC", "chatcmpl-42:user-3",
                  "chatcmpl-42:user-4", "active", "green tea"):
        expect(detail).to_contain_text(shown)
    shoot(page, "list-detail")

    page.click("#prev-page")
    expect(memory_items(page)).to_have_count(10)
    # The key stays for the session (sessionStorage): a reload shows the list again without asking.
    page.reload()
    expect(page.locator("#app")).to_be_visible()
    expect(memory_items(page)).to_have_count(12)


def test_search_finds_a_memory(page: Page, seed: Seed) -> None:
    seed("searcher", "My dog is called Pochi")
    seed("searcher", "I live in Sapporo")
    seed("searcher", "I work at Acme Corp as an engineer")
    sign_in(page, SVC, user="searcher")
    expect(memory_items(page)).to_have_count(3)

    page.fill("#search-query", "What is the name of my dog?")
    page.click("#search")
    expect(page.locator("#list-caption")).to_contain_text("for “What is the name of my dog?”")
    expect(memory_items(page).first.locator(".text")).to_have_text("My dog is called Pochi")
    expect(memory_items(page).first.locator(".score")).to_contain_text("score")
    expect(page.locator("#pager")).to_be_hidden()
    shoot(page, "search")

    page.click("#clear-search")
    expect(memory_items(page)).to_have_count(3)
    expect(page.locator("#pager")).to_be_visible()


def test_edit_stores_a_new_version_shown_in_history(
    page: Page, seed: Seed, api: Callable[[str], httpx.Client]
) -> None:
    first = seed("editor", "I work at Acme Corp", importance=0.4)
    sign_in(page, SVC, user="editor")
    item(page, "Acme").click()
    detail = page.locator("#detail")
    detail.locator(".edit-text").fill("I work at Globex now")
    detail.locator(".edit-importance").fill("0.9")
    detail.locator(".edit-pinned").check()
    detail.locator(".save").click()

    expect(page.locator("#notice")).to_have_text("Saved as a new version; the old one is kept in the history.")
    expect(detail.locator(".memory-detail > .text")).to_have_text("I work at Globex now")
    expect(detail).to_contain_text("pinned")
    expect(detail).to_contain_text("0.90")
    expect(memory_items(page)).to_have_count(1)
    expect(memory_items(page).locator(".text")).to_have_text("I work at Globex now")
    expect(memory_items(page).locator(".badge.pinned")).to_be_visible()

    detail.locator("button.history").click()
    versions = detail.locator("ol.history li")
    expect(versions).to_have_count(2)
    expect(versions.nth(0).locator(".text")).to_have_text("I work at Acme Corp")
    expect(versions.nth(0).locator(".meta")).to_contain_text("superseded")
    expect(versions.nth(1).locator(".text")).to_have_text("I work at Globex now")
    expect(versions.nth(1)).to_have_class(re.compile(r"\bcurrent\b"))
    shoot(page, "history")

    history = api(SVC).get(f"/v1/memories/{first['id']}/history", params={"user": "editor"}).json()["data"]
    assert [v["text"] for v in history] == ["I work at Acme Corp", "I work at Globex now"]
    assert history[1]["pinned"] and history[1]["importance"] == 0.9

    # The old version opens from the history; it says which version replaced it.
    versions.nth(0).click()
    expect(detail.locator(".memory-detail")).to_have_attribute("data-id", first["id"])
    expect(detail).to_contain_text(history[1]["id"])
    # Revising it again is refused by the API (409), and the page says why.
    detail.locator(".edit-text").fill("I work at Initech")
    detail.locator(".save").click()
    expect(page.locator("#error")).to_contain_text("409 invalid_request_error (memory_superseded)")
    expect(memory_items(page).locator(".text")).to_have_text(["I work at Globex now"])


def test_delete_asks_first_then_removes(page: Page, seed: Seed, api: Callable[[str], httpx.Client]) -> None:
    doomed = seed("deleter", "My locker code is 4711")
    seed("deleter", "I like hiking")
    sign_in(page, SVC, user="deleter")
    expect(memory_items(page)).to_have_count(2)
    item(page, "locker").click()

    page.locator("#detail button.delete").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("My locker code is 4711")
    shoot(page, "delete-confirm")
    page.click("#confirm-cancel")
    expect(dialog).to_be_hidden()
    expect(memory_items(page)).to_have_count(2)

    page.locator("#detail button.delete").click()
    page.click("#confirm-ok")
    expect(page.locator("#notice")).to_have_text("Memory deleted.")
    expect(memory_items(page)).to_have_count(1)
    expect(item(page, "locker")).to_have_count(0)
    gone = api(SVC).get(f"/v1/memories/{doomed['id']}", params={"user": "deleter"})
    assert gone.status_code == 404


def test_graph_is_drawn_with_typed_edges(page: Page, seed: Seed, api: Callable[[str], httpx.Client]) -> None:
    def memory(id_: str, text: str, entities: list[str]) -> dict[str, Any]:
        return {"id": id_, "text": text, "kind": "episode", "created_at": "2025-03-01T10:00:00+00:00",
                "entities": entities}

    export = {
        "memories": [
            memory("g-rain", "It rained all day in Kyoto", ["kyoto"]),
            memory("g-museum", "So we visited the museum in Kyoto", ["kyoto", "museum"]),
            memory("g-cafe", "Met Ken at a cafe near the museum", ["ken", "museum"]),
        ],
        "entities": [{"name": "kyoto", "type": "place", "display_name": "Kyoto"},
                     {"name": "museum", "type": "place"}, {"name": "ken", "type": "person", "display_name": "Ken"}],
        "relationships": [
            {"source_id": "g-rain", "target_id": "g-museum", "type": "LEADS_TO", "strength": 1.0},
            {"source_id": "g-museum", "target_id": "g-cafe", "type": "RELATED_TO", "strength": 0.5},
        ],
    }
    assert api(SVC).post("/v1/memories/import", params={"user": "grapher"}, json=export).status_code == 200
    job = seed("grapher", "I work at Acme Corp in Tokyo")
    assert api(SVC).patch(f"/v1/memories/{job['id']}", params={"user": "grapher"},
                          json={"text": "I work at Globex in Tokyo"}).status_code == 200
    graph = api(SVC).get("/v1/memories/graph", params={"user": "grapher"}).json()

    sign_in(page, SVC, user="grapher")
    page.click("#tab-graph")
    svg = page.locator("#graph-svg")
    expect(svg).to_have_attribute("data-node-count", str(len(graph["nodes"])))
    expect(svg).to_have_attribute("data-edge-count", str(len(graph["edges"])))
    expect(svg.locator("g.node")).to_have_count(len(graph["nodes"]))
    expect(svg.locator("g.node-entity")).to_have_count(sum(n["type"] == "entity" for n in graph["nodes"]))
    colours = {}
    for kind in ("MENTIONS", "RELATED_TO", "LEADS_TO", "SUPERSEDES"):
        edge = svg.locator(f"line.edge[data-type={kind}]")
        expect(edge.first).to_be_attached()
        colours[kind] = edge.first.get_attribute("stroke")
    assert len(set(colours.values())) == 4
    # Drawn, not just in the DOM: every node has a box inside the picture, and the layout spread them out.
    boxes = svg.locator("g.node").evaluate_all("gs => gs.map(g => g.getBoundingClientRect().toJSON())")
    frame = svg.bounding_box()
    assert frame and frame["width"] > 300 and frame["height"] > 300
    assert all(b["width"] > 0 and frame["x"] <= b["x"] <= frame["x"] + frame["width"] for b in boxes)
    assert len({(round(b["x"]), round(b["y"])) for b in boxes}) == len(boxes)
    shoot(page, "graph")

    svg.locator("g.node[data-id='entity:kyoto']").click()
    side = page.locator("#graph-detail")
    expect(side.locator(".entity-detail")).to_contain_text("Kyoto")
    expect(side.locator("ul.mentions li")).to_have_count(2)
    side.locator("ul.mentions button", has_text="It rained").click()
    expect(side.locator(".memory-detail")).to_have_attribute("data-id", "g-rain")
    svg.locator("g.node[data-id='g-cafe']").click()
    expect(side.locator(".memory-detail > .text")).to_have_text("Met Ken at a cafe near the museum")
    shoot(page, "graph-node")


XSS = [
    "<script>window.__xss = 'script'</script>",
    '<img src=x onerror="window.__xss = \'img\'">',
    "<b>not bold</b> & <i>not italic</i>",
]


def test_memory_text_renders_as_text(page: Page, seed: Seed) -> None:
    for text in XSS:
        seed("mallory", text)
    sign_in(page, SVC, user="mallory")
    texts = memory_items(page).locator(".text")
    expect(texts).to_have_count(3)
    assert sorted(texts.all_text_contents()) == sorted(XSS)
    item(page, "onerror").click()
    expect(page.locator("#detail .memory-detail > .text")).to_have_text(XSS[1])
    page.locator("#detail button.history").click()
    expect(page.locator("#detail ol.history .text")).to_have_text([XSS[1]])
    page.click("#tab-graph")
    expect(page.locator("#graph-svg g.node-memory")).to_have_count(3)
    titles = page.locator("#graph-svg g.node-memory title").all_text_contents()
    assert sorted(t.split(": ", 1)[1] for t in titles) == sorted(XSS)
    page.locator("#graph-svg g.node-memory").first.click()
    expect(page.locator("#graph-detail .memory-detail")).to_be_visible()

    assert page.evaluate("window.__xss") is None
    assert page.locator("#app img, #app script, #app b, #app i").count() == 0
    shoot(page, "xss-as-text")


def test_other_users_memories_stay_hidden(page: Page, api: Callable[[str], httpx.Client]) -> None:
    assert api(ALICE).post("/v1/memories", json={"content": "Alice's vault code is 1234"}).status_code == 201
    assert api(BOB).post("/v1/memories", json={"content": "Bob's vault code is 9876"}).status_code == 201

    sign_in(page, ALICE)
    expect(page.locator("#scope-label")).to_have_text("the key's own user")
    expect(memory_items(page).locator(".text")).to_have_text(["Alice's vault code is 1234"])
    page.fill("#search-query", "vault code")
    page.click("#search")
    expect(memory_items(page).locator(".text")).to_have_text(["Alice's vault code is 1234"])
    page.click("#tab-graph")
    expect(page.locator("#graph-svg g.node-memory")).to_have_count(1)
    expect(page.locator("body")).not_to_contain_text("9876")

    # Alice's key naming Bob: the API's 403 is shown, and nothing of Bob's.
    page.click("#disconnect")
    sign_in(page, ALICE, user="bob")
    expect(page.locator("#error")).to_contain_text("403 permission_error (permission_denied)")
    expect(page.locator("#app")).to_be_hidden()
    expect(page.locator("body")).not_to_contain_text("9876")
    shoot(page, "forbidden")

    # An unknown key: the 401 is shown and the key is not kept.
    sign_in(page, "sk-not-a-key")
    expect(page.locator("#error")).to_contain_text("401")
    assert page.evaluate("sessionStorage.getItem('memproxy.key')") is None

    # An admin key may name another tenant and a user of it.
    sign_in(page, ADMIN, user="bob", tenant="acme")
    expect(page.locator("#scope-label")).to_have_text("tenant acme · user bob")
    expect(memory_items(page).locator(".text")).to_have_text(["Bob's vault code is 9876"])
