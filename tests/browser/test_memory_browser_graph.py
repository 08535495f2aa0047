"""The memory browser (``/ui``), continued: the graph view with typed edges, memory text rendered as text (never as
markup), and other users' memories staying hidden. Same server and data as test_memory_browser.py (harness.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.browser.harness import (
    ADMIN,
    ALICE,
    BOB,
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
