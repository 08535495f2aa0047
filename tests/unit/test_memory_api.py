"""The memory REST API (``/v1/memories``) and ``memproxy memories …`` on the real app and the real engine (SQLite
store, FAISS, BM25, ONNX MiniLM, durable queue); the engine is opened once for the module and emptied before each
test. Only the chat upstream is a MockTransport (no route here calls it)."""

# ruff: noqa: F811 - the shared fixtures are imported from tests.support.memory_api, then requested by name
from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from memory import MemoryEngine
from proxy.settings import Settings
from tests.support.memory_api import (  # noqa: F401 - fixtures
    KEYS,
    Api,
    add,
    api,
    assert_error,
    build_app,
    empty_engine,
    engine,
    settings,
    state,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


# --- CRUD, pages, search -----------------------------------------------------------------------------------------


async def test_create_get_patch_delete(api: Api, empty_engine: MemoryEngine) -> None:
    alice = api("acme-alice")
    created = await add(alice, "My dog is called Pochi", importance=0.8, category="pets", metadata={"source": "ui"})
    assert created["object"] == "memory" and created["user"] == "alice" and created["kind"] == "fact"
    assert created["importance"] == 0.8 and created["metadata"].items() >= {"category": "pets", "source": "ui"}.items()
    assert created["active"] and not created["pinned"] and created["superseded_by"] is None
    assert not {"slot", "slot_value", "decay", "core", "core_since"} & set(created["metadata"])
    assert "pochi" in created["entities"]
    assert not {"tenant", "embedding", "scope"} & set(created)

    fetched = (await alice.get(f"/v1/memories/{created['id']}")).json()
    assert fetched == created

    patched = await alice.patch(
        f"/v1/memories/{created['id']}",
        json={"importance": 0.3, "pinned": True, "metadata": {"source": None, "mood": "happy"},
              "retention_period": 86400},
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["id"] == created["id"] and body["importance"] == 0.3 and body["pinned"] and body["core"]
    assert body["metadata"]["mood"] == "happy" and "source" not in body["metadata"]
    assert body["expires_at"] is not None and body["active"]
    # What chats render after the system prompt:
    assert [m.id for m in await empty_engine.core_memories("alice", tenant="acme")] == [created["id"]]
    unpin = {"pinned": False, "retention_period": None}
    unpinned = (await alice.patch(f"/v1/memories/{created['id']}", json=unpin)).json()
    assert not unpinned["pinned"] and not unpinned["core"] and unpinned["expires_at"] is None
    assert await empty_engine.core_memories("alice", tenant="acme") == []

    deleted = await alice.delete(f"/v1/memories/{created['id']}")
    assert deleted.json() == {"id": created["id"], "object": "memory.deleted", "deleted": True}
    assert_error(await alice.get(f"/v1/memories/{created['id']}"), 404, "not_found")
    assert_error(await alice.delete(f"/v1/memories/{created['id']}"), 404, "not_found")


async def test_list_pages_newest_first_with_filters(api: Api) -> None:
    alice = api("acme-alice")
    texts = ["I live in Sapporo", "I play the violin", "My sister is Hanako", "I like green tea", "I work at Acme"]
    for i, text in enumerate(texts):
        await add(alice, text, category="odd" if i % 2 == 0 else "even", kind="preference" if i == 3 else "fact")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        response = await alice.get("/v1/memories", params={"limit": 2} | ({"cursor": cursor} if cursor else {}))
        page = response.json()
        assert page["object"] == "list" and len(page["data"]) <= 2
        seen += [m["text"] for m in page["data"]]
        cursor = page["next_cursor"]
        pages += 1
        if cursor is None:
            break
    assert seen == texts[::-1] and pages == 3
    odd = (await alice.get("/v1/memories", params={"category": "odd", "limit": 2})).json()
    assert [m["text"] for m in odd["data"]] == [texts[4], texts[2]] and odd["next_cursor"]
    rest = (await alice.get("/v1/memories", params={"category": "odd", "cursor": odd["next_cursor"]})).json()
    assert [m["text"] for m in rest["data"]] == [texts[0]] and rest["next_cursor"] is None
    prefs = (await alice.get("/v1/memories", params={"kind": "preference"})).json()
    assert [m["text"] for m in prefs["data"]] == ["I like green tea"]


async def test_search_ranks_the_relevant_memory_first(api: Api) -> None:
    alice = api("acme-alice")
    dog = await add(alice, "My dog is called Pochi")
    await add(alice, "I live in Sapporo")
    await add(alice, "I like green tea in the morning")
    response = await alice.post("/v1/memories/search", json={"query": "What is my dog's name?", "top_k": 2})
    assert response.status_code == 200, response.text
    hits = response.json()["data"]
    assert hits[0]["id"] == dog["id"] and hits[0]["score"] > 0 and len(hits) <= 2
    assert (await api("acme-bob").post("/v1/memories/search", json={"query": "dog"})).json()["data"] == []


async def test_patch_text_makes_a_new_version_and_keeps_history(api: Api, empty_engine: MemoryEngine) -> None:
    alice = api("acme-alice")
    old = await add(alice, "I live in Sapporo", importance=0.7, category="home")
    response = await alice.patch(f"/v1/memories/{old['id']}", json={"text": "I live in Osaka now"})
    assert response.status_code == 200, response.text
    new = response.json()
    assert new["id"] != old["id"] and new["text"] == "I live in Osaka now" and new["active"]
    assert new["importance"] == 0.7 and new["metadata"]["category"] == "home" and "osaka" in new["entities"]
    stored = await empty_engine.get(new["id"], user_id="alice", tenant="acme")
    assert stored is not None and stored.metadata["slot_value"] == "Osaka"  # the new text's slot, not Sapporo

    stale = (await alice.get(f"/v1/memories/{old['id']}")).json()
    assert stale["superseded_by"] == new["id"] and not stale["active"]
    history = (await alice.get(f"/v1/memories/{new['id']}/history")).json()
    assert [m["id"] for m in history["data"]] == [old["id"], new["id"]]
    assert [m["id"] for m in (await alice.get("/v1/memories")).json()["data"]] == [new["id"]]
    every = (await alice.get("/v1/memories", params={"include_inactive": "true"})).json()["data"]
    assert {m["id"] for m in every} == {old["id"], new["id"]}
    hits = (await alice.post("/v1/memories/search", json={"query": "Where do I live?"})).json()["data"]
    assert [h["id"] for h in hits] == [new["id"]]
    again = await alice.patch(f"/v1/memories/{old['id']}", json={"text": "I live in Kyoto"})
    assert_error(again, 409, "memory_superseded")


async def test_delete_user_removes_everything_and_only_that_user(api: Api, empty_engine: MemoryEngine) -> None:
    alice, bob = api("acme-alice"), api("acme-bob")
    first = await add(alice, "My dog is called Pochi")
    await alice.patch(f"/v1/memories/{first['id']}", json={"text": "My dog is called Shiro"})
    await add(alice, "Alice met Bob in Tokyo")
    await empty_engine.remember("I collect stamps", user_id="alice", tenant="acme", wait=False)  # still queued
    kept = await add(bob, "Bob likes jazz")

    before = await state(empty_engine)
    assert_error(await alice.delete("/v1/memories"), 400, "confirmation_required")
    assert_error(await alice.delete("/v1/memories", params={"confirm": "false"}), 400, "confirmation_required")
    assert await state(empty_engine) == before

    response = await alice.delete("/v1/memories", params={"confirm": "true"})
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "memory.user_deleted" and response.json()["deleted"] >= 3
    await empty_engine.flush()
    assert (await alice.get("/v1/memories", params={"include_inactive": "true"})).json()["data"] == []
    for query in ("dog", "stamps", "Tokyo"):
        assert (await alice.post("/v1/memories/search", json={"query": query})).json()["data"] == []
    assert (await alice.get("/v1/memories/export")).json() == {
        "object": "memory.export", "memories": [], "entities": [], "relationships": []
    }
    assert (await alice.get("/v1/memories/graph")).json()["nodes"] == []
    assert [m["id"] for m in (await bob.get("/v1/memories")).json()["data"]] == [kept["id"]]
    assert (await bob.post("/v1/memories/search", json={"query": "jazz"})).json()["data"][0]["id"] == kept["id"]


# --- scopes ------------------------------------------------------------------------------------------------------


async def test_keys_reach_only_the_scopes_they_grant(api: Api, empty_engine: MemoryEngine) -> None:
    alice, bob, svc = api("acme-alice"), api("acme-bob"), api("acme-svc")
    globex, admin = api("globex-alice"), api("ops-admin")
    secret = await add(bob, "My PIN hint is the blue door")
    mine = await add(alice, "I live in Sapporo")
    before = await state(empty_engine)

    # An untrusted key naming another user, by parameter, body or header: 403, nothing read or written.
    denied = [
        await alice.get("/v1/memories", params={"user": "bob"}),
        await alice.get("/v1/memories", headers={"x-openwebui-user-id": "bob"}),
        await alice.post("/v1/memories", json={"content": "Bob owes me money", "user": "bob"}),
        await alice.post("/v1/memories/search", json={"query": "PIN", "user": "bob"}),
        await alice.delete("/v1/memories", params={"user": "bob", "confirm": "true"}),
        await alice.get(f"/v1/memories/{secret['id']}", params={"user": "bob"}),
        await alice.get("/v1/memories/export", params={"user": "bob"}),
        await alice.get("/v1/memories", params={"tenant": "globex"}),
        await svc.get("/v1/memories", params={"tenant": "globex", "user": "alice"}),
    ]
    for response in denied:
        assert_error(response, 403, "permission_denied")
    # Another scope's id answers exactly like an unknown id.
    for client in (alice, globex, admin):
        for request in ("GET", "DELETE", "PATCH"):
            body = {"importance": 0.1} if request == "PATCH" else None
            other = await client.request(request, f"/v1/memories/{secret['id']}", json=body)
            unknown = await client.request(request, "/v1/memories/no-such-id", json=body)
            assert other.status_code == unknown.status_code == 404
            assert other.json()["error"] | {"message": ""} == unknown.json()["error"] | {"message": ""}
        assert_error(await client.get(f"/v1/memories/{secret['id']}/history"), 404, "not_found")
    assert await state(empty_engine) == before
    assert (await globex.get("/v1/memories")).json()["data"] == []

    # Naming oneself is fine; a trusted key names any user of its tenant; an admin any tenant (with the user).
    assert [m["id"] for m in (await alice.get("/v1/memories", params={"user": "alice"})).json()["data"]] == [mine["id"]]
    assert (await svc.get(f"/v1/memories/{secret['id']}", params={"user": "bob"})).json()["text"] == secret["text"]
    by_header = (await svc.get("/v1/memories", headers={"x-openwebui-user-id": "bob"})).json()["data"]
    assert [m["id"] for m in by_header] == [secret["id"]]
    scoped = {"tenant": "acme", "user": "bob"}
    assert (await admin.get(f"/v1/memories/{secret['id']}", params=scoped)).json()["user"] == "bob"
    assert_error(await admin.get("/v1/memories", params={"tenant": "acme"}), 400)


# --- refused requests change nothing -----------------------------------------------------------------------------

BAD_REQUESTS: list[tuple[str, str, dict[str, Any], str | None]] = [
    ("POST", "/v1/memories", {"content": b"{not json"}, None),
    ("POST", "/v1/memories", {"json": ["My dog is called Pochi"]}, None),
    ("POST", "/v1/memories", {"json": {}}, "content"),
    ("POST", "/v1/memories", {"json": {"content": ""}}, "content"),
    ("POST", "/v1/memories", {"json": {"content": "   "}}, "content"),
    ("POST", "/v1/memories", {"json": {"content": 42}}, "content"),
    ("POST", "/v1/memories", {"json": {"content": "x y z", "importance": 1.5}}, "importance"),
    ("POST", "/v1/memories", {"json": {"content": "x y z", "importance": "high"}}, "importance"),
    ("POST", "/v1/memories", {"json": {"content": "x y z", "colour": "red"}}, "colour"),
    ("POST", "/v1/memories", {"json": {"content": "x y z", "kind": "rumour"}}, "kind"),
    ("POST", "/v1/memories", {"json": {"content": "x y z", "metadata": [1, 2]}}, "metadata"),
    ("POST", "/v1/memories", {"json": {"content": "x y z", "metadata": {"core": "pinned"}}}, "metadata.core"),
    ("POST", "/v1/memories", {"json": {"content": "x y z"}, "params": {"user": ""}}, "user"),
    ("POST", "/v1/memories", {"json": {"content": "x y z"}, "params": {"usr": "alice"}}, "usr"),
    ("GET", "/v1/memories", {"params": {"cursor": "not-a-cursor"}}, "cursor"),
    ("GET", "/v1/memories", {"params": {"limit": 0}}, "limit"),
    ("GET", "/v1/memories", {"params": {"limit": 100000}}, "limit"),
    ("GET", "/v1/memories", {"params": {"limit": "ten"}}, "limit"),
    ("GET", "/v1/memories", {"params": {"kind": "rumour"}}, "kind"),
    ("GET", "/v1/memories", {"params": {"query": "dog"}}, "query"),
    ("DELETE", "/v1/memories", {}, "confirm"),
    ("DELETE", "/v1/memories", {"params": {"confirm": "yes please"}}, "confirm"),
    ("DELETE", "/v1/memories", {"params": {"usr": "alice", "confirm": "true"}}, "usr"),
    ("POST", "/v1/memories/search", {"json": {"query": "dog", "top_k": 0}}, "top_k"),
    ("POST", "/v1/memories/search", {"json": {"query": ""}}, "query"),
    ("PATCH", "/v1/memories/{id}", {"json": {}}, None),
    ("PATCH", "/v1/memories/{id}", {"json": {"importance": None}}, "importance"),
    ("PATCH", "/v1/memories/{id}", {"json": {"importance": -0.1}}, "importance"),
    ("PATCH", "/v1/memories/{id}", {"json": {"text": ""}}, "text"),
    ("PATCH", "/v1/memories/{id}", {"json": {"pinned": "yes"}}, "pinned"),
    ("PATCH", "/v1/memories/{id}", {"json": {"importance": 0.2, "owner": "bob"}}, "owner"),
    ("PATCH", "/v1/memories/{id}", {"json": {"retention_period": "next tuesday"}}, "retention_period"),
    ("PATCH", "/v1/memories/{id}", {"json": {"retention_period": -5}}, "retention_period"),
    ("PATCH", "/v1/memories/{id}", {"json": {"metadata": {"core_since": 1}}}, "metadata.core_since"),
    ("PATCH", "/v1/memories/{id}", {"json": {"metadata": None}}, "metadata"),
    ("POST", "/v1/memories/import", {"json": {"memories": [{"id": "m1"}]}}, "memories.0"),
    ("POST", "/v1/memories/import", {"json": {"memories": [{"id": "m1", "text": "x", "created_at": "soon"}]}}, None),
    # A time no export can write back (the fuzz found it: stored, it made every later export of the user a 500).
    ("POST", "/v1/memories/import", {"json": {"memories": [{"id": "m1", "text": "x", "created_at": -6.4e16}]}}, None),
    ("POST", "/v1/memories/import", {"json": {"memories": [{"id": "m", "text": "x", "created_at": 0, "use_count": 2**64}]}},
     None),  # fmt: skip
    (
        "POST",
        "/v1/memories/import",
        {"json": {"memories": [], "relationships": [{"source_id": "a", "target_id": "b", "type": "RELATED_TO"}]}},
        "relationships.0",
    ),
    ("POST", "/v1/memories/import", {"json": {"memories": [], "extra": 1}}, "extra"),
    ("GET", "/v1/memories/graph", {"params": {"limit": 0}}, "limit"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "param"), BAD_REQUESTS)
async def test_malformed_requests_are_400_and_change_nothing(
    api: Api, empty_engine: MemoryEngine, method: str, path: str, kwargs: dict[str, Any], param: str | None
) -> None:
    alice = api("acme-alice")
    existing = await add(alice, "I live in Sapporo", importance=0.6)
    before = await state(empty_engine)
    response = await alice.request(method, path.replace("{id}", existing["id"]), **kwargs)
    error = assert_error(response, 400)
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
    assert await state(empty_engine) == before


async def test_memory_off_is_503_with_an_openai_error(settings: Settings) -> None:
    app = build_app(settings.model_copy(update={"chat": settings.chat.model_copy(update={"enabled": False})}), None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as client:
        client.headers["authorization"] = "Bearer acme-alice"
        for method, path, body in (
            ("GET", "/v1/memories", None),
            ("POST", "/v1/memories", {"content": "hello there"}),
            ("POST", "/v1/memories/search", {"query": "hello"}),
            ("GET", "/v1/memories/abc", None),
            ("DELETE", "/v1/memories?confirm=true", None),
        ):
            error = assert_error(await client.request(method, path, json=body), 503, "memory_unavailable")
            assert error["type"] == "server_error"
        assert_error(await client.get("/v1/memories", headers={"authorization": "Bearer nope"}), 401)
        assert_error(await client.get("/v1/memories?usr=x", headers={"authorization": "Bearer nope"}), 401)


# --- graph, export / import, OpenAPI -----------------------------------------------------------------------------


async def test_graph_has_memories_entities_and_edges(api: Api) -> None:
    alice = api("acme-alice")
    met = await add(alice, "Alice met Bob in Tokyo")
    old = await add(alice, "I work at Acme Corp")
    new = (await alice.patch(f"/v1/memories/{old['id']}", json={"text": "I work at Globex now"})).json()
    graph = (await alice.get("/v1/memories/graph")).json()
    assert graph["object"] == "memory.graph" and graph["user"] == "alice" and not graph["truncated"]
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert {met["id"], old["id"], new["id"], "entity:tokyo"} <= set(nodes)
    assert nodes["entity:tokyo"]["type"] == "entity" and nodes[old["id"]]["active"] is False
    edges = {(e["source"], e["target"], e["type"]) for e in graph["edges"]}
    assert (met["id"], "entity:tokyo", "MENTIONS") in edges
    assert (new["id"], old["id"], "SUPERSEDES") in edges
    assert all(e["source"] in nodes and e["target"] in nodes for e in graph["edges"])
    small = (await alice.get("/v1/memories/graph", params={"limit": 1})).json()
    assert small["truncated"] and len([n for n in small["nodes"] if n["type"] == "memory"]) == 1


async def test_export_then_import_into_another_user(api: Api) -> None:
    alice, svc = api("acme-alice"), api("acme-svc")
    await add(alice, "My dog is called Pochi", category="pets")
    await add(alice, "I live in Sapporo")
    exported = (await alice.get("/v1/memories/export")).json()
    assert exported["object"] == "memory.export" and len(exported["memories"]) == 2
    assert "tenant" not in json.dumps(exported)
    response = await svc.post("/v1/memories/import", params={"user": "carol"}, json=exported)
    assert response.status_code == 200, response.text
    assert response.json() == {"object": "memory.import", "user": "carol", "imported": 2}
    carol = (await svc.get("/v1/memories", params={"user": "carol"})).json()["data"]
    assert sorted(m["text"] for m in carol) == ["I live in Sapporo", "My dog is called Pochi"]
    hits = (await svc.post("/v1/memories/search", json={"query": "dog's name", "user": "carol"})).json()["data"]
    assert hits[0]["text"] == "My dog is called Pochi"
    assert len((await alice.get("/v1/memories")).json()["data"]) == 2


async def test_openapi_documents_the_memory_api(api: Api) -> None:
    spec = (await api("acme-alice").get("/openapi.json")).json()
    paths = spec["paths"]
    assert set(paths["/v1/memories"]) == {"get", "post", "delete"}
    assert set(paths["/v1/memories/{memory_id}"]) == {"get", "patch", "delete"}
    for path in ("/v1/memories/search", "/v1/memories/graph", "/v1/memories/export", "/v1/memories/import",
                 "/v1/memories/{memory_id}/history"):
        assert path in paths
    schemas = spec["components"]["schemas"]
    assert {"MemoryObject", "MemoryList", "CreateMemoryRequest", "UpdateMemoryRequest", "ErrorResponse"} <= set(schemas)
    assert schemas["CreateMemoryRequest"]["additionalProperties"] is False
    responses = paths["/v1/memories"]["get"]["responses"]
    assert {"200", "400", "403", "503"} <= set(responses) and "422" not in responses
