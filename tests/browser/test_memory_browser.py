"""The memory browser (``/ui``) in headless Chromium: signing in, the list with details and pages, search, editing
with history, deleting. Memories are seeded through the REST API; each test signs in as a real key of the keys file.
Chats are not used: the upstream URL points at nothing. The harness is in harness.py; the graph, text rendering and
isolation are in test_memory_browser_graph.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from tests.browser.harness import (
    BROWSER_TESTS,
    SVC,
    Page,
    Seed,
    expect,
    item,
    memory_items,
    shoot,
    sign_in,
)

pytestmark = BROWSER_TESTS


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
