"""Answered means remembered (issue 17 §1), in-process: the end of an answer waits until its exchange is queued
durably. The real app and engine; the queue write is held at a gate (standing in for a slow disk) to see the order:
the JSON body, or a stream's finish frame and ``[DONE]``, leave only once the write is done, while the stream's
first tokens go at once. A queue slower than ``queue_timeout_ms`` lets the answer go and counts a late write."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from memory import MemoryEngine, QueueError
from tests.support.chat_memory import app_of, auth, chat, settle
from tests.support.upstreams import chunk, completion, sse, stream_response


def gate_queue_writes(engine: MemoryEngine, monkeypatch) -> tuple[asyncio.Event, list[str]]:
    """Queue writes wait for the returned event; the list gets "queued" as each one is on disk."""
    gate, done = asyncio.Event(), []
    queue_exchange = engine.remember_exchange

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await gate.wait()
        result = await queue_exchange(*args, **kwargs)
        done.append("queued")
        return result

    monkeypatch.setattr(engine, "remember_exchange", slow)
    return gate, done


async def test_the_json_answer_leaves_once_the_exchange_is_on_disk(proxy, engine, upstream, monkeypatch) -> None:
    upstream.respond = lambda request: httpx.Response(200, json=completion("Noted, the blue door."))
    gate, done = gate_queue_writes(engine, monkeypatch)
    client = proxy()
    answer = asyncio.ensure_future(chat(client, "acme-svc", "My front door is blue", user="alice"))
    await asyncio.sleep(0.3)
    assert not answer.done() and done == []  # held: the write has not happened
    gate.set()
    response = await answer
    assert response.status_code == 200 and done == ["queued"]
    await settle(client, engine)
    assert any("blue" in m.text for m in (await engine.list("alice", tenant="acme")).items)


async def test_a_stream_s_end_waits_for_the_write_but_its_first_tokens_do_not(proxy, engine, upstream, monkeypatch):
    events = [sse(chunk("Noted,")), sse(chunk(" the blue door.")), sse(chunk(finish_reason="stop")), sse("[DONE]")]
    upstream.respond = lambda request: stream_response(events)[0]
    gate, done = gate_queue_writes(engine, monkeypatch)
    app = app_of(proxy())
    sent: list[bytes] = []
    body = json.dumps({"stream": True, "user": "alice", "messages": [{"role": "user", "content": "My door is blue"}]})
    call = asyncio.ensure_future(app(http_scope(), receiver(body.encode()), collect(sent)))
    await asyncio.sleep(0.5)
    relayed = b"".join(sent)
    assert b"Noted," in relayed and b"the blue door." in relayed  # the tokens went as they came
    assert b"finish_reason\": \"stop" not in relayed and b"[DONE]" not in relayed and done == []
    gate.set()
    await asyncio.wait_for(call, 10)
    relayed = b"".join(sent)
    assert done == ["queued"] and relayed.endswith(b"data: [DONE]\n\n") and b"\"stop\"" in relayed


async def test_a_queue_slower_than_its_timeout_lets_the_answer_go(proxy, engine, upstream, monkeypatch) -> None:
    upstream.respond = lambda request: httpx.Response(200, json=completion("Noted."))
    gate, done = gate_queue_writes(engine, monkeypatch)
    client = proxy(memory_queue_timeout_ms=100)
    response = await asyncio.wait_for(chat(client, "acme-svc", "My cat is called Miso", user="alice"), 10)
    assert response.status_code == 200 and done == []
    assert app_of(client).state.chat_memory.stats.late_writes == 1
    gate.set()  # the write went on in the background and lands
    await settle(client, engine)
    assert done == ["queued"]
    assert any("Miso" in m.text for m in (await engine.list("alice", tenant="acme")).items)


def http_scope() -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in {**auth("acme-svc"), "content-type": "application/json"}.items()],
        "server": ("proxy.test", 80), "client": ("127.0.0.1", 40000),
    }  # fmt: skip


def receiver(body: bytes) -> Any:
    """The request body, then a client that stays (never disconnects while the test runs)."""
    given = False

    async def receive() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


def collect(sent: list[bytes]) -> Any:
    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(message.get("body", b""))

    return send


async def test_a_full_disk_holds_the_exchange_until_the_queue_takes_it(proxy, engine, upstream, monkeypatch) -> None:
    """ENOSPC, as SQLite reports it (the disk cannot be filled portably here, so the queue's refusal is injected
    at the engine's door): the chat answers, the exchange waits in the proxy, and once the disk has room again it is
    queued and applied."""
    upstream.respond = lambda request: httpx.Response(200, json=completion("Noted, the red kettle."))
    full = {"refusals": 2}
    queue_exchange = engine.remember_exchange

    async def disk_full_for_a_while(*args: Any, **kwargs: Any) -> Any:
        if full["refusals"] > 0:
            full["refusals"] -= 1
            raise QueueError("write queue queue.sqlite3: database or disk is full")
        return await queue_exchange(*args, **kwargs)

    monkeypatch.setattr(engine, "remember_exchange", disk_full_for_a_while)
    client = proxy(memory_queue_timeout_ms=300)  # the answer goes before the retries (0.5 s, then 1 s) succeed
    response = await asyncio.wait_for(chat(client, "acme-svc", "My kettle is red", user="alice"), 10)
    assert response.status_code == 200
    stats = app_of(client).state.chat_memory.stats
    assert stats.waiting_writes == 1 and stats.failed_writes == 0 and stats.late_writes == 1
    await settle(client, engine)  # the retries back off 0.5 s, then 1 s: the third try is taken
    assert full["refusals"] == 0 and stats.waiting_writes == 0 and stats.queued_writes == 1
    assert any("kettle" in m.text for m in (await engine.list("alice", tenant="acme")).items)
