"""Serving logic of /v1/chat/completions against a scripted upstream (httpx.MockTransport)."""

from __future__ import annotations

import json

import httpx
import pytest

from proxy.auth import DEV_RECORD
from proxy.chat.memory import ChatMemory
from proxy.chat.prefill import NextTurnPrefill
from proxy.chat.serving import ChatCompletionsService, ChatCompletionStream
from proxy.identity import IdentityRules
from proxy.memory_access import MemoryAccess
from proxy.metrics import Metrics
from proxy.settings import ChatMemorySettings, PrefillSettings
from proxy.upstream import UpstreamClient
from proxy.upstream_pool import UpstreamPool
from tests.support.upstreams import (
    RecordingUpstream,
    chunk,
    sse,
    stream_response,
)

MESSAGES = [{"role": "user", "content": "Hi"}]


def big_tools(count: int = 40) -> list[dict]:
    """An Open WebUI-sized tools array (~25 KB)."""
    return [
        {
            "type": "function",
            "function": {
                "name": f"tool_{i}",
                "description": "Does a thing. " * 30,
                "parameters": {
                    "type": "object",
                    "properties": {"q": {"type": "string", "description": "query " * 10}, "n": {"type": "integer"}},
                    "required": ["q"],
                },
            },
        }
        for i in range(count)
    ]


async def test_body_is_forwarded_unchanged_including_unknown_fields(client, upstream: RecordingUpstream) -> None:
    payload = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}], "name": "alice"},
        ],
        "tools": big_tools(),
        "tool_choice": "auto",
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        "temperature": 0.25,
        "top_k": 5,
        "max_tokens": 7,
        "user": "alice",
        "x_vendor_field": {"nested": [1, 2.5, None, "ü"]},
        "logit_bias": {"50256": -100},
    }
    assert len(json.dumps(payload)) > 20_000
    response = await client.post("/v1/chat/completions", json=payload)
    assert response.status_code == 200
    forwarded = dict(upstream.last_json)
    # The one addition: the tenant's prefix-cache salt (tests/unit/test_chat_memory.py covers it).
    assert len(forwarded.pop("cache_salt")) == 32
    assert forwarded == payload
    assert str(upstream.requests[-1].url) == "http://upstream.test/v1/chat/completions"


async def test_answer_bytes_are_returned_as_the_upstream_sent_them(client, upstream: RecordingUpstream) -> None:
    raw = b'{"id":"x","object":"chat.completion","choices":[],"vendor":{"kept":true}}'
    upstream.respond = lambda request: httpx.Response(200, content=raw, headers={"content-type": "application/json"})
    response = await client.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES})
    assert response.content == raw


async def test_missing_model_gets_the_default(client, upstream: RecordingUpstream) -> None:
    await client.post("/v1/chat/completions", json={"messages": MESSAGES})
    assert upstream.last_json["model"] == "default-model"
    await client.post("/v1/chat/completions", json={"model": "chosen", "messages": MESSAGES})
    assert upstream.last_json["model"] == "chosen"


async def test_client_key_is_not_forwarded_and_upstream_key_is(make_client, upstream: RecordingUpstream) -> None:
    client = make_client(api_keys=["client-key"], upstream_api_key="upstream-secret")
    response = await client.post(
        "/v1/chat/completions", json={"messages": MESSAGES}, headers={"authorization": "Bearer client-key"}
    )
    assert response.status_code == 200
    assert upstream.requests[-1].headers["authorization"] == "Bearer upstream-secret"


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"", None, "not valid JSON"),
        (b"[1, 2]", None, "must be a JSON object"),
        (b'{"model": "m"}', "messages", "messages"),
        (b'{"messages": []}', "messages", "at least 1"),
        (b'{"messages": "hi"}', "messages", "messages"),
        (b'{"messages": [{"role": "wizard", "content": "x"}]}', "messages.0.role", "role"),
        (b'{"messages": [{"role": "user", "content": 5}]}', "messages.0.content", "content"),
        (b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream", "stream"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}', "max_tokens", "max_tokens"),
        (b'{"messages": [{"role": "user", "content": "x"}], "model": 7}', "model", "model"),
        (b"\xff\xfe garbage", None, "not valid JSON"),
    ],
)
async def test_bad_input_is_a_400_in_openai_shape_and_nothing_goes_upstream(
    client, upstream: RecordingUpstream, body: bytes, param: str | None, fragment: str
) -> None:
    response = await client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert fragment in error["message"]
    assert upstream.requests == []


@pytest.mark.parametrize(
    "upstream_body",
    [
        # vLLM's shape, then OpenAI's nested shape
        {"object": "error", "message": "max_tokens is too large", "type": "BadRequestError", "param": "max_tokens", "code": 400},
        {"error": {"message": "max_tokens is too large", "type": "BadRequestError", "param": "max_tokens", "code": 400}},
    ],
)
async def test_upstream_4xx_is_passed_through_with_its_message(client, upstream, upstream_body) -> None:
    upstream.respond = lambda request: httpx.Response(400, json=upstream_body)
    response = await client.post("/v1/chat/completions", json={"messages": MESSAGES})
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "max_tokens is too large",
            "type": "invalid_request_error",
            "param": "max_tokens",
            "code": 400,
        }
    }


async def test_upstream_404_keeps_its_status(client, upstream) -> None:
    upstream.respond = lambda request: httpx.Response(
        404, json={"error": {"message": "The model `x` does not exist.", "type": "NotFoundError", "code": 404}}
    )
    response = await client.post("/v1/chat/completions", json={"model": "x", "messages": MESSAGES})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "The model `x` does not exist."


@pytest.mark.parametrize(
    "respond",
    [
        lambda request: httpx.Response(500, json={"error": {"message": "engine dead", "type": "InternalServerError"}}),
        lambda request: httpx.Response(503, content=b"<html>Service Unavailable</html>"),
    ],
)
async def test_upstream_5xx_becomes_502(client, upstream, respond) -> None:
    upstream.respond = respond
    response = await client.post("/v1/chat/completions", json={"messages": MESSAGES})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "upstream_error"
    assert "HTTP 5" in error["message"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused to 10.1.2.3:8000"), 502, "upstream_unreachable"),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), 502, "upstream_unreachable"),
        (httpx.ReadTimeout("timed out"), 504, "upstream_timeout"),
        (httpx.ConnectTimeout("timed out"), 504, "upstream_timeout"),
    ],
)
async def test_transport_failures_map_to_502_and_504(client, upstream, exc, status, code, stream) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    upstream.respond = fail
    response = await client.post("/v1/chat/completions", json={"messages": MESSAGES, "stream": stream})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert "10.1.2.3" not in response.text and "Errno" not in response.text


async def test_secrets_never_reach_an_error_body(make_client, upstream) -> None:
    client = make_client(upstream_api_key="sk-upstream-SECRET", api_keys=["sk-client-SECRET"])

    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused; headers were {dict(request.headers)}")

    upstream.respond = fail
    for body in ({"messages": MESSAGES}, {"messages": MESSAGES, "stream": True}):
        response = await client.post(
            "/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-client-SECRET"}
        )
        assert response.status_code == 502
        assert "SECRET" not in response.text


async def test_unexpected_bug_is_a_generic_500(make_client, upstream, monkeypatch) -> None:
    client = make_client()

    def boom(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("internal detail: password=hunter2")

    upstream.respond = boom
    response = await client.post("/v1/chat/completions", json={"messages": MESSAGES})
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert "hunter2" not in response.text


# --- streaming -------------------------------------------------------------------------------------------------


async def test_stream_is_relayed_event_for_event(client, upstream) -> None:
    events = [sse(chunk("Hel")), sse(chunk("lo")), sse(chunk(finish_reason="stop")), sse("[DONE]")]
    upstream.respond = lambda request: stream_response(events)[0]
    response = await client.post("/v1/chat/completions", json={"messages": MESSAGES, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.content == b"".join(events)
    assert upstream.last_json["stream"] is True


async def test_stream_error_status_before_any_byte_is_a_plain_http_error(client, upstream) -> None:
    upstream.respond = lambda request: httpx.Response(
        400, json={"object": "error", "message": "bad temperature", "type": "BadRequestError", "code": 400}
    )
    response = await client.post("/v1/chat/completions", json={"messages": MESSAGES, "stream": True})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "bad temperature"


async def test_failure_mid_stream_is_one_error_frame_then_done(client, upstream) -> None:
    # The upstream dies after one whole event and half of the next: the half event must not reach the client.
    chunks = [sse(chunk("Hel")), b'data: {"id": "chatcmpl-1", "obj']
    upstream.respond = lambda request: stream_response(chunks, httpx.ReadError("connection reset"))[0]
    response = await client.post("/v1/chat/completions", json={"messages": MESSAGES, "stream": True})
    assert response.status_code == 200
    frames = response.content.split(b"\n\n")
    assert frames[0] + b"\n\n" == sse(chunk("Hel"))
    error = json.loads(frames[1].removeprefix(b"data: "))
    assert set(error["error"]) == {"message", "type", "param", "code"}
    assert error["error"]["code"] == "upstream_unreachable"
    assert frames[2:] == [b"data: [DONE]", b""]


async def test_timeout_mid_stream_is_an_error_frame(client, upstream) -> None:
    upstream.respond = lambda request: stream_response([sse(chunk("a"))], httpx.ReadTimeout("slow"))[0]
    response = await client.post("/v1/chat/completions", json={"messages": MESSAGES, "stream": True})
    assert b'"code": "upstream_timeout"' in response.content
    assert response.content.endswith(b"data: [DONE]\n\n")


async def test_stream_that_ends_without_done_is_reported(client, upstream) -> None:
    upstream.respond = lambda request: stream_response([sse(chunk("a"))])[0]
    response = await client.post("/v1/chat/completions", json={"messages": MESSAGES, "stream": True})
    assert b"ended the stream before it was complete" in response.content
    assert response.content.endswith(b"data: [DONE]\n\n")


async def test_upstream_error_frames_pass_through_untouched(client, upstream) -> None:
    frame = sse({"error": {"message": "engine overloaded", "type": "InternalServerError", "code": 500}})
    upstream.respond = lambda request: stream_response([sse(chunk("a")), frame, sse("[DONE]")])[0]
    response = await client.post("/v1/chat/completions", json={"messages": MESSAGES, "stream": True})
    assert response.content == sse(chunk("a")) + frame + sse("[DONE]")


async def test_cadence_one_upstream_chunk_is_one_downstream_write(upstream) -> None:
    """Complete events are relayed as soon as their chunk arrives; several in one chunk stay one write."""
    e1, e2, e3, e4 = (sse(chunk(text)) for text in ("a", "b", "c", "d"))
    upstream_chunks = [e1, e2 + e3, e4[:10], e4[10:] + sse("[DONE]")]
    scripted, stream_body = stream_response(upstream_chunks)
    upstream.respond = lambda request: scripted
    service = service_without_memory(upstream)
    result = await service.create(json.dumps({"messages": MESSAGES, "stream": True}).encode(), DEV_RECORD, {})
    assert isinstance(result, ChatCompletionStream)
    writes = [piece async for piece in result.events]
    assert writes == [e1, e2 + e3, e4 + sse("[DONE]")]
    assert result.transcript.content() == "abcd"
    assert result.transcript.complete
    assert stream_body.closed


async def test_stream_usage_is_relayed_and_seen(upstream) -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    events = [sse(chunk("x", finish_reason="stop")), sse({"choices": [], "usage": usage}), sse("[DONE]")]
    upstream.respond = lambda request: stream_response(events)[0]
    service = service_without_memory(upstream)
    body = {"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    result = await service.create(json.dumps(body).encode(), DEV_RECORD, {})
    assert b"".join([piece async for piece in result.events]) == b"".join(events)
    assert result.transcript.usage == usage
    assert result.transcript.finish_reasons == {0: "stop"}
    assert upstream.last_json["stream_options"] == {"include_usage": True}


def service_without_memory(upstream) -> ChatCompletionsService:
    """The chat service on its own, memory turned off, in front of the scripted upstream."""
    memory = ChatMemory(MemoryAccess(), ChatMemorySettings())
    return ChatCompletionsService(
        UpstreamPool([UpstreamClient(httpx.AsyncClient(transport=upstream.transport()), "http://upstream.test/v1")]),
        default_model="m",
        memory=memory,
        prefill=NextTurnPrefill(memory, PrefillSettings()),
        identity_rules=IdentityRules(),
        metrics=Metrics(),
    )
