"""``/v1/responses`` and ``/v1/messages`` on the real app and memory engine, in front of a scripted upstream
(httpx.MockTransport, which answers in each API's shape as vLLM does): memory laid out in the API's own fields,
everything else forwarded as sent, the exchange remembered once the answer is whole (streamed or not) and not when
it failed, each API's error shapes, and Anthropic's ``x-api-key``. The real vLLM and the official SDKs:
tests/integration/test_vllm_responses_messages.py."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from proxy.chat.prompt_layout import RECALL_OPEN
from proxy.messages.dialect import MESSAGES
from proxy.responses.dialect import RESPONSES
from tests.support.chat_memory import auth, settle
from tests.support.upstreams import sse, stream_response

KEY = "acme-svc"


def response_body(text: str, status: str = "completed") -> dict[str, Any]:
    item = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
    return {"id": "resp_1", "object": "response", "status": status, "output": [item]}


def message_body(text: str) -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn"}  # fmt: skip


def answering(upstream: Any) -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/responses"):
            return httpx.Response(200, json=response_body("Noted."))
        return httpx.Response(200, json=message_body("Noted."))

    upstream.respond = respond


async def texts(engine: Any, user: str) -> list[str]:
    return [m["text"] for m in (await engine.export(user, tenant="acme"))["memories"]]


async def test_a_fact_told_in_responses_is_recalled_in_messages(proxy, upstream, engine) -> None:
    answering(upstream)
    client = proxy()
    told = await client.post("/v1/responses", headers=auth(KEY), json={"input": "My cat is called Tamago.",
                                                                        "user": "rin"})  # fmt: skip
    assert told.status_code == 200 and told.json()["output"][0]["content"][0]["text"] == "Noted."
    assert told.headers["x-memproxy-memory"] == "ok"
    await settle(client, engine)
    assert any("Tamago" in text for text in await texts(engine, "rin"))
    body = {"max_tokens": 16, "system": [{"type": "text", "text": "Be terse."}], "metadata": {"user_id": "rin"},
            "tools": [{"name": "t", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "What is my cat called?"}]}]}  # fmt: skip
    asked = await client.post("/v1/messages", headers={"x-api-key": KEY}, json=body)
    assert asked.status_code == 200 and asked.json()["type"] == "message"
    sent = json.loads(upstream.requests[-1].content)
    assert upstream.requests[-1].url.path == "/v1/messages"
    assert sent["tools"] == body["tools"] and sent["system"][0] == body["system"][0]  # the client's own, as sent
    first = sent["messages"][-1]["content"]
    assert first[0]["type"] == "text" and RECALL_OPEN in first[0]["text"] and "Tamago" in first[0]["text"]
    assert first[-1] == body["messages"][0]["content"][0] and sent["cache_salt"]


async def test_responses_input_items_keep_their_shape(proxy, upstream, engine) -> None:
    answering(upstream)
    client = proxy()
    await client.post("/v1/responses", headers=auth(KEY), json={"input": "I live in Hakodate.", "user": "mio"})
    await settle(client, engine)
    items = [
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"role": "user", "content": [{"type": "input_text", "text": "Where do I live?"}]},
    ]
    body = {"input": items, "instructions": "Be brief.", "user": "mio", "previous_response_id": "resp_0",
            "tools": [{"type": "function", "name": "weather"}]}  # fmt: skip
    assert (await client.post("/v1/responses", headers=auth(KEY), json=body)).status_code == 200
    sent = json.loads(upstream.requests[-1].content)
    assert (
        sent["input"][:2] == items[:2] and sent["previous_response_id"] == "resp_0" and sent["tools"] == body["tools"]
    )
    parts = sent["input"][2]["content"]
    assert [p["type"] for p in parts] == ["input_text", "input_text"] and "Hakodate" in parts[0]["text"]
    assert parts[1] == items[2]["content"][0] and sent["instructions"].startswith("Be brief.")


@pytest.mark.parametrize("failed", [False, True])
async def test_a_streamed_response_is_remembered_only_when_whole(proxy, upstream, engine, failed) -> None:
    done = response_body("Hi Kumo.", status="failed" if failed else "completed")
    events = [sse({"type": "response.created", "response": {"id": "resp_9"}}),
              sse({"type": "response.output_text.delta", "delta": "Hi "}),
              sse({"type": "response.output_text.delta", "delta": "Kumo."}),
              sse({"type": "response.failed" if failed else "response.completed", "response": done})]  # fmt: skip
    upstream.respond = lambda request: stream_response(events)[0]
    client = proxy()
    body = {"input": "My band is called Kumo.", "user": "sora", "stream": True}
    streamed = await client.post("/v1/responses", headers=auth(KEY), json=body)
    assert streamed.status_code == 200 and streamed.content == b"".join(events)  # every event, as sent
    await settle(client, engine)
    assert any("Kumo" in text for text in await texts(engine, "sora")) is not failed


async def test_a_streamed_message_is_remembered(proxy, upstream, engine) -> None:
    events = [sse({"type": "message_start", "message": {"id": "msg_7"}}),
              sse({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Got it."}}),
              sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}),
              sse({"type": "message_stop"})]  # fmt: skip
    upstream.respond = lambda request: stream_response(events)[0]
    client = proxy()
    body = {"max_tokens": 8, "stream": True, "metadata": {"user_id": "yui"},
            "messages": [{"role": "user", "content": "My locker is number 4417."}]}  # fmt: skip
    streamed = await client.post("/v1/messages", headers={"x-api-key": KEY}, json=body)
    assert streamed.content == b"".join(events)
    await settle(client, engine)
    assert any("4417" in text for text in await texts(engine, "yui"))


async def test_errors_come_in_each_apis_shape(proxy, upstream) -> None:
    client = proxy()
    denied = await client.post("/v1/messages", headers={"x-api-key": "nope"}, json={"max_tokens": 1, "messages": []})
    assert denied.status_code == 401 and denied.json()["error"]["type"] == "authentication_error"
    assert denied.json()["type"] == "error"
    malformed = await client.post("/v1/messages", headers={"x-api-key": KEY}, json={"messages": []})
    assert malformed.status_code == 400 and malformed.json()["error"]["type"] == "invalid_request_error"
    background = await client.post("/v1/responses", headers=auth(KEY), json={"input": "hi", "background": True})
    assert background.status_code == 400 and background.json()["error"]["param"] == "background"
    assert upstream.requests == []  # nothing refused reached the upstream


def test_a_view_written_back_unchanged_is_the_body_as_sent() -> None:
    bodies = [
        (
            RESPONSES,
            {"input": [{"role": "user", "content": [{"type": "input_text", "text": "a"}]}], "instructions": "i"},
        ),
        (RESPONSES, {"input": "just text"}),
        (MESSAGES, {"system": "s", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}),
    ]
    for dialect, body in bodies:
        view = dialect.view(body)
        assert dialect.with_memory(body, view, view) == body


def test_the_core_block_becomes_the_instructions_or_system_the_client_did_not_send() -> None:
    core = {"role": "system", "content": "<core>"}
    body = {"input": "hi"}
    assert RESPONSES.with_memory(body, RESPONSES.view(body), [core, *RESPONSES.view(body)])["instructions"] == "<core>"
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    assert MESSAGES.with_memory(body, MESSAGES.view(body), [core, *MESSAGES.view(body)])["system"] == "<core>"


async def test_a_body_over_the_limit_is_refused_in_each_apis_shape(proxy, upstream) -> None:
    client = proxy(max_body_mb=0.001)  # about 1 KB
    big = {"max_tokens": 8, "messages": [{"role": "user", "content": "x" * 4096}]}
    anthropic_shaped = await client.post("/v1/messages", headers={"x-api-key": KEY}, json=big)
    assert anthropic_shaped.status_code == 413
    assert anthropic_shaped.json() == {"type": "error", "error": {"type": "request_too_large",
                                                                  "message": anthropic_shaped.json()["error"]["message"]}}  # fmt: skip
    openai_shaped = await client.post("/v1/responses", headers=auth(KEY), json={"input": "x" * 4096})
    assert openai_shaped.status_code == 413 and openai_shaped.json()["error"]["type"] == "invalid_request_error"
    assert upstream.requests == []
