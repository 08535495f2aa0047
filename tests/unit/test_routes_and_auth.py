"""API keys, /v1/models, /healthz, /readyz, unknown routes — against a scripted upstream."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.support.upstreams import RecordingUpstream

CHAT = {"messages": [{"role": "user", "content": "Hi"}]}
MODELS = {"object": "list", "data": [{"id": "SmolLM2-135M-Instruct", "object": "model", "owned_by": "vllm"}]}


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"authorization": "Bearer wrong"}, "invalid_api_key"),
        ({"authorization": "Basic a2V5LTE6"}, "invalid_api_key"),
        ({"authorization": "Bearer "}, "invalid_api_key"),
        ({"authorization": "key-1"}, "invalid_api_key"),
    ],
)
async def test_bad_or_missing_key_is_401_and_nothing_goes_upstream(make_client, upstream, headers, code) -> None:
    client = make_client(api_keys=["key-1", "key-2"])
    for path, method in (("/v1/chat/completions", "POST"), ("/v1/models", "GET")):
        response = await client.request(method, path, json=CHAT, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        error = response.json()["error"]
        assert error["code"] == code
        assert error["type"] == "invalid_request_error"
    assert upstream.requests == []


async def test_any_configured_key_is_accepted(make_client, upstream) -> None:
    client = make_client(api_keys="key-1, key-2")
    for key in ("key-1", "key-2"):
        response = await client.post("/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {key}"})
        assert response.status_code == 200
    assert len(upstream.requests) == 2


async def test_bad_key_is_checked_before_the_body(make_client, upstream) -> None:
    client = make_client(api_keys=["key-1"])
    response = await client.post("/v1/chat/completions", content=b"{broken", headers={"authorization": "Bearer no"})
    assert response.status_code == 401


async def test_open_mode_needs_no_key(client, upstream) -> None:
    response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200


def test_open_mode_warning_is_loud(caplog) -> None:
    from proxy.auth import KeyRing

    with caplog.at_level("WARNING"):
        KeyRing([]).warn_if_open()
    assert "NO API KEYS CONFIGURED" in caplog.text


async def test_models_come_from_the_upstream(client, upstream: RecordingUpstream) -> None:
    upstream.respond = lambda request: httpx.Response(200, json=MODELS)
    response = await client.get("/v1/models")
    assert response.status_code == 200
    assert response.json() == MODELS
    assert str(upstream.requests[-1].url) == "http://upstream.test/v1/models"


async def test_models_with_upstream_down_is_502(client, upstream) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    upstream.respond = refuse
    response = await client.get("/v1/models")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreachable"


async def test_health_needs_neither_key_nor_upstream(make_client, upstream) -> None:
    client = make_client(api_keys=["key-1"])
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert upstream.requests == []


async def test_readiness_follows_the_upstream(make_client, upstream) -> None:
    client = make_client(api_keys=["key-1"])
    upstream.respond = lambda request: httpx.Response(200, json=MODELS)
    assert (await client.get("/readyz")).status_code == 200

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    upstream.respond = refuse
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "upstream_unreachable"
    upstream.respond = lambda request: httpx.Response(500, text="boom")
    assert (await client.get("/readyz")).status_code == 503


async def test_unknown_route_and_wrong_method_are_openai_shaped(client) -> None:
    response = await client.get("/nothing-here")  # any other /v1/* path goes upstream (test_passthrough.py)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    response = await client.get("/v1/chat/completions")
    assert response.status_code == 405
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


async def test_openapi_documents_the_chat_body(client) -> None:
    schema = (await client.get("/openapi.json")).json()
    body = schema["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ChatCompletionRequest"}
    assert "messages" in schema["components"]["schemas"]["ChatCompletionRequest"]["properties"]


async def test_the_openapi_document_validates_and_every_reference_resolves(client) -> None:
    """A dangling ``#/$defs/ChatMessage`` (the chat body's own definitions, left inline) stopped client generators."""
    from openapi_spec_validator import validate

    document = (await client.get("/openapi.json")).json()
    validate(document)
    references = set(re.findall(r'"\$ref": "([^"]+)"', json.dumps(document)))
    assert references
    for reference in references:
        node = document
        for part in reference.removeprefix("#/").split("/"):
            assert part in node, f"{reference} does not resolve"
            node = node[part]
