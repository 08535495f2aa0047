"""Memory never turns a chat that fits the model's context window into one that fails.

The upstream is a stand-in (httpx.MockTransport) with a context window measured in characters of the prompt: it
answers as vLLM does when a prompt is too long (HTTP 400, "This model's maximum context length is ..."). The real
vLLM's answer to an over-long prompt is checked against the same classifier in
tests/integration/test_vllm_chat.py. The memory engine is the real one.
"""

from __future__ import annotations

import json

import httpx
import pytest

from proxy.errors import UpstreamStatusError
from tests.support.chat_memory import auth, chat, settle
from tests.support.upstreams import RecordingUpstream, chunk, completion, sse, stream_response

FACT = "The user's cat is called Mikan and sleeps on the piano"


def too_long(prompt_chars: int) -> httpx.Response:
    return httpx.Response(400, json={
        "error": {
            "message": "This model's maximum context length is 8192 tokens. However, your prompt contains "
            f"{prompt_chars} input tokens, which exceeds this limit even without any output tokens. "
            "Please reduce the length of the input prompt.",
            "type": "BadRequestError",
            "param": "input_tokens",
            "code": 400,
        }
    })  # fmt: skip


def window(upstream: RecordingUpstream, chars: int) -> None:
    """The upstream refuses prompts whose messages take more than ``chars`` characters of JSON."""

    def respond(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        size = len(json.dumps(body["messages"], ensure_ascii=False))
        if size > chars:
            return too_long(size)
        if body.get("stream"):
            return stream_response([sse(chunk("Noted.")), sse(chunk(finish_reason="stop")), b"data: [DONE]\n\n"])[0]
        return httpx.Response(200, json=completion("Noted."))

    upstream.respond = respond


def messages_size(messages: list[dict[str, str]]) -> int:
    return len(json.dumps(messages, ensure_ascii=False))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_memory_that_overflows_the_window_is_withdrawn_and_the_chat_answers(
    proxy, upstream, engine, stream
) -> None:
    await engine.remember(FACT, user_id="alice", tenant="acme")
    client = proxy()
    question = "Where does my cat sleep? " + "Please answer in detail. " * 20
    window(upstream, messages_size([{"role": "user", "content": question}]) + 20)

    response = await chat(client, "acme-svc", question, user="alice", stream=stream)

    assert response.status_code == 200, response.text
    assert "Noted." in response.text
    assert response.headers["x-memproxy-memory"] == "degraded"
    assert response.headers["x-memproxy-degraded-reason"] == "context-overflow"
    assert response.headers["x-memproxy-recalled"] == "0"
    first, second = (json.loads(r.content) for r in upstream.chats)
    assert "Mikan" in json.dumps(first["messages"])  # memory was tried first ...
    assert second["messages"] == [{"role": "user", "content": question}]  # ... then the chat as the client sent it
    assert second.get("stream", False) == stream
    metrics = (await client.get("/metrics")).text
    assert 'memproxy_memory_degraded_total{reason="context-overflow"} 1.0' in metrics
    await settle(client, engine)
    assert not upstream.prefills  # a degraded turn anticipates nothing
    # The exchange is still remembered: only recall stood down.
    hits = await engine.recall("answer in detail", user_id="alice", tenant="acme", top_k=10)
    assert any("Where does my cat sleep?" in hit.memory.text for hit in hits)


async def test_a_prompt_too_long_without_memory_gets_the_upstreams_error_once(proxy, upstream, engine) -> None:
    client = proxy()
    question = "Tell me everything. " * 30
    window(upstream, 50)

    response = await chat(client, "acme-svc", question, user="nobody-yet")  # nothing to recall: nothing added

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "maximum context length" in error["message"]
    assert len(upstream.chats) == 1
    await settle(client, engine)
    assert await engine.count("nobody-yet", tenant="acme") == 0


async def test_other_upstream_errors_are_not_retried_without_memory(proxy, upstream, engine) -> None:
    await engine.remember(FACT, user_id="alice", tenant="acme")
    client = proxy()
    upstream.respond = lambda request: httpx.Response(
        400, json={"error": {"message": "temperature must be non-negative", "type": "BadRequestError", "code": 400}}
    )

    response = await chat(client, "acme-svc", "Where does my cat sleep?", user="alice", temperature=-1)

    assert response.status_code == 400
    assert "temperature" in response.json()["error"]["message"]
    assert len(upstream.chats) == 1


async def test_a_withdrawn_block_is_not_repeated_in_later_turns(proxy, upstream, engine) -> None:
    await engine.remember(FACT, user_id="alice", tenant="acme")
    client = proxy()
    turn1 = [{"role": "user", "content": "Where does my cat sleep? " + "Be thorough. " * 20}]
    window(upstream, messages_size(turn1) + 20)
    response = await client.post(
        "/v1/chat/completions", json={"messages": turn1, "user": "alice"}, headers=auth("acme-svc")
    )
    assert response.headers["x-memproxy-degraded-reason"] == "context-overflow"
    await settle(client, engine)

    window(upstream, 100_000)  # a turn that fits, memory and all
    turn2 = turn1 + [{"role": "assistant", "content": "Noted."}, {"role": "user", "content": "And its name?"}]
    response = await client.post(
        "/v1/chat/completions", json={"messages": turn2, "user": "alice"}, headers=auth("acme-svc")
    )
    assert response.headers["x-memproxy-memory"] == "ok"
    sent = upstream.last_json["messages"]
    assert sent[0] == turn1[0]  # the block the upstream refused is not put back into the first turn
    assert "Mikan" in sent[-1]["content"]  # this turn recalls afresh


@pytest.mark.parametrize(
    ("status", "message", "code", "expected"),
    [
        (400, "This model's maximum context length is 8192 tokens. However, your prompt contains 9000", 400, True),
        (400, "Input length (9000) exceeds model's maximum context length (8192).", None, True),
        (400, "Your messages resulted in too many tokens.", "context_length_exceeded", True),
        (400, "temperature must be non-negative", None, False),
        (404, "This model's maximum context length is 8192 tokens.", None, False),
        (500, "maximum context length", None, False),
    ],
)
def test_what_counts_as_a_prompt_over_the_context_window(status, message, code, expected) -> None:
    assert UpstreamStatusError(status, message, code=code).exceeds_context is expected
