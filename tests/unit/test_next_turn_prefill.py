"""The turn after an answer: memories already in the prompt are not repeated, the block anticipated from the last
exchange is prefilled upstream in the background and opens the next user message byte for byte, and recall for
the newest message adds only a little on top.

Real memory engine; the model server is scripted (httpx.MockTransport), so the assertions are on exactly what the
upstream receives. That real vLLM accepts the prefill and then serves the next turn from its cache is checked in
tests/integration/test_memory_loop.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from proxy.chat.prefill import PrefillRunner, prefill_body
from proxy.chat.prompt_layout import RECALL_OPEN, anticipation_query, quoted_texts, render_core, render_recalled
from tests.support.chat_memory import auth, settle
from tests.support.upstreams import completion

SISTER = "The user's sister Hana lives in Kyoto and works as a nurse."
DOG = "The user's dog Pochi is a shiba inu who hates the rain."
JOB = "The user works as a baker at a small bakery near the station."


def answering(text: str):
    return lambda request: httpx.Response(200, json=completion(text))


async def turn(client: httpx.AsyncClient, messages: list[dict[str, Any]], **headers: str) -> httpx.Response:
    response = await client.post(
        "/v1/chat/completions", json={"messages": messages, "user": "alice"}, headers=auth("acme-svc", **headers)
    )
    assert response.status_code == 200, response.text
    return response


ABOUT_HANA = [{"role": "user", "content": "Tell me about my sister Hana"}]


async def prefilled_turn(client: httpx.AsyncClient, upstream, engine, first: list[dict[str, Any]]) -> str:
    """Chat ``first`` and let the next-turn prefill run; the anticipated block it sent upstream."""
    await turn(client, first)
    await settle(client, engine)
    [prefill] = upstream.prefills
    return json.loads(prefill.content)["messages"][-1]["content"]


def then(first: list[dict[str, Any]], answer: str, text: str) -> list[dict[str, Any]]:
    """``first``, the answer to it and the user's next message."""
    return [*first, {"role": "assistant", "content": answer}, {"role": "user", "content": text}]


async def remember(engine, *texts: str) -> None:
    for text in texts:
        await engine.remember(text, user_id="alice", tenant="acme")


# --- pure parts ---------------------------------------------------------------------------------------------------


def test_quoted_texts_reads_only_memproxy_blocks() -> None:
    block = render_recalled([('She said "hi"\nthen left </memproxy-recalled-memories>', None), ("Pochi", 0.0)])
    core = render_core([("Lives in Sapporo", None)])
    client_text = '- "not a memory"\nplain words'
    found = quoted_texts(f"{client_text}\n{core}\n\n{block}\n{client_text}")
    assert found == {'She said "hi" then left </memproxy-recalled-memories>', "Pochi", "Lives in Sapporo"}


def test_anticipation_query_is_the_question_and_the_start_of_the_answer() -> None:
    messages = then([{"role": "user", "content": "old"}], "x", "How is my dog?")
    query = anticipation_query(messages, "Pochi   is fine. " + "a" * 1000)
    assert query.startswith("How is my dog?\nPochi is fine. ")
    assert len(query) < 400


def test_prefill_body_keeps_what_shapes_the_prompt_and_drops_the_rest() -> None:
    forwarded = {
        "model": "m", "messages": [], "cache_salt": "s", "tools": [{"type": "function"}], "stream": True,
        "stream_options": {"include_usage": True}, "n": 3, "response_format": {"type": "json_object"},
        "max_completion_tokens": 900, "temperature": 0.2, "min_tokens": 5, "guided_json": {"type": "object"},
    }  # fmt: skip
    body = prefill_body(forwarded, [{"role": "user", "content": "block"}])
    assert body == {
        "model": "m", "messages": [{"role": "user", "content": "block"}], "cache_salt": "s",
        "tools": [{"type": "function"}], "temperature": 0.2, "max_tokens": 1, "add_generation_prompt": False,
        "continue_final_message": True,
    }  # fmt: skip


async def test_a_full_runner_skips_and_a_failure_is_only_counted() -> None:
    runner = PrefillRunner(max_in_flight=1)

    async def fails() -> bool:
        raise RuntimeError("upstream gone")

    assert runner.has_room()
    runner.start(fails())
    assert not runner.has_room()  # one in flight: the next answer's prefill is skipped
    await runner.drain()
    assert runner.stats.failed == 1 and runner.stats.skipped_busy == 1 and runner.in_flight == 0
    assert not PrefillRunner(max_in_flight=0).has_room()


async def test_a_prefill_stands_down_when_a_chat_arrives_while_it_waits() -> None:
    runner = PrefillRunner(delay_s=0.05)
    chats = [0]
    assert await runner.idle_for(lambda: chats[0])  # nothing happened: idle

    async def chat_arrives() -> None:
        await asyncio.sleep(0.01)
        chats[0] += 1

    arrival = asyncio.ensure_future(chat_arrives())
    assert not await runner.idle_for(lambda: chats[0])
    await arrival
    assert runner.stats.skipped_busy == 1


# --- through the proxy --------------------------------------------------------------------------------------------


async def test_a_memory_already_in_the_prompt_is_not_recalled_again(proxy, upstream, engine) -> None:
    client = proxy(recall_anticipate=False)
    await remember(engine, SISTER)
    first = [{"role": "user", "content": "Tell me about my sister"}]
    await turn(client, first)
    assert SISTER in json.dumps(upstream.last_json["messages"])
    second = then(first, "Hello there.", "Where does my sister work?")
    response = await turn(client, second)
    sent = upstream.last_json["messages"]
    assert json.dumps(sent).count("Hana") == 1  # in turn 1's block, repeated as it was; not again in turn 2's
    assert RECALL_OPEN not in sent[-1]["content"]
    assert response.headers["x-memproxy-recalled"] == "0"


async def test_core_facts_are_not_repeated_in_the_recalled_block(proxy, upstream, engine) -> None:
    client = proxy(recall_anticipate=False)
    await remember(engine, SISTER)
    [memory] = (await engine.list("alice", tenant="acme")).items
    await engine.pin(memory.id, user_id="alice", tenant="acme")
    await turn(client, [{"role": "user", "content": "Tell me about my sister"}])
    sent = upstream.last_json["messages"]
    assert "Hana" in sent[0]["content"]  # the core block, after (here: as) the system prompt
    assert "Hana" not in sent[-1]["content"]


async def test_the_next_turns_memories_are_prefilled_and_open_the_next_message(proxy, upstream, engine) -> None:
    client = proxy(recall_top_k=1)
    await remember(engine, SISTER, DOG, JOB)
    answer = "Hana is well. Did you take your dog Pochi out in the rain today?"
    upstream.respond = answering(answer)
    first = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me about my sister Hana"}]
    await turn(client, first)
    chat_one = upstream.last_json
    await settle(client, engine)

    [prefill] = upstream.prefills
    body = json.loads(prefill.content)
    assert body["max_tokens"] == 1 and body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert "stream" not in body
    assert body["cache_salt"] == chat_one["cache_salt"] and body["model"] == chat_one["model"]
    # The prompt as it was sent, the answer, then the anticipated block as the open start of the next message.
    assert body["messages"][:-2] == chat_one["messages"]
    assert body["messages"][-2] == {"role": "assistant", "content": answer}
    anticipated = body["messages"][-1]["content"]
    assert "Pochi" in anticipated and "Hana" not in anticipated  # Hana is in the prompt already

    second = [*first, {"role": "assistant", "content": answer}, {"role": "user", "content": "What is my job again?"}]
    response = await turn(client, second)
    chat_two = upstream.last_json["messages"]
    assert chat_two[:-1] == body["messages"][:-1]
    newest = chat_two[-1]["content"]
    assert newest.startswith(anticipated + "\n\n")  # byte for byte: vLLM has this prefix cached
    late = newest[len(anticipated):]
    assert "baker" in late  # late recall for the newest message, after the prefilled part
    assert late.count(RECALL_OPEN) == 1 and "Possibly relevant" not in late  # fenced, no second preamble
    assert newest.endswith("What is my job again?")
    assert response.headers["x-memproxy-recalled"] == "2"

    # Turn 3 repeats turn 2's whole block where it was.
    await settle(client, engine)
    third = [*second, {"role": "assistant", "content": "You bake."}, {"role": "user", "content": "Thanks"}]
    await turn(client, third)
    assert upstream.last_json["messages"][:4] == chat_two


async def test_late_recall_adds_at_most_late_top_k(proxy, upstream, engine) -> None:
    client = proxy(recall_top_k=1, recall_late_top_k=0)
    await remember(engine, SISTER, DOG, JOB)
    answer = "Hana is well. Did you take your dog Pochi out in the rain today?"
    upstream.respond = answering(answer)
    anticipated = await prefilled_turn(client, upstream, engine, ABOUT_HANA)
    response = await turn(client, then(ABOUT_HANA, answer, "What is my job again?"))
    assert upstream.last_json["messages"][-1]["content"] == f"{anticipated}\n\nWhat is my job again?"
    assert response.headers["x-memproxy-recalled"] == "1"


async def test_late_recall_adds_nothing_the_prompt_already_covers(proxy, upstream, engine) -> None:
    # The newest message's best memory is the prefilled one: it takes its place in the late top k, so nothing is
    # added after the prefilled block (no tokens for the user to wait on). A memory the prompt lacks would be.
    client = proxy(recall_top_k=1, recall_late_top_k=1)
    await remember(engine, SISTER, DOG, JOB)
    answer = "Hana is well. Did you take your dog Pochi out in the rain today?"
    upstream.respond = answering(answer)
    anticipated = await prefilled_turn(client, upstream, engine, ABOUT_HANA)
    assert "Pochi" in anticipated and "baker" not in anticipated
    await turn(client, then(ABOUT_HANA, answer, "What is my dog called?"))
    assert upstream.last_json["messages"][-1]["content"] == f"{anticipated}\n\nWhat is my dog called?"
    await turn(client, then(ABOUT_HANA, answer, "Where do I work?"))
    assert "baker" in upstream.last_json["messages"][-1]["content"][len(anticipated):]


async def test_no_prefill_without_recall(proxy, upstream, engine) -> None:
    client = proxy()
    await remember(engine, SISTER, DOG)
    upstream.respond = answering("Pochi and Hana send their regards.")
    await turn(client, [{"role": "user", "content": "Hello"}], **{"X-Memproxy-Recall": "off"})
    await turn(client, [{"role": "user", "content": "### Task: suggest a title for this chat"}])
    await settle(client, engine)
    assert upstream.prefills == []
    plain = proxy(recall_anticipate=False)
    await turn(plain, [{"role": "user", "content": "Hello"}])
    await settle(plain, engine)
    assert upstream.prefills == []


async def test_a_failed_prefill_changes_nothing_for_the_next_turn(proxy, upstream, engine) -> None:
    client = proxy(recall_top_k=1)
    await remember(engine, SISTER, DOG)
    answer = "Hana is well; is Pochi?"

    def respond(request: httpx.Request) -> httpx.Response:
        if b'"continue_final_message":true' in request.content:
            return httpx.Response(500, json={"error": {"message": "boom"}})
        return httpx.Response(200, json=completion(answer))

    upstream.respond = respond
    first = [{"role": "user", "content": "Tell me about my sister Hana"}]
    await turn(client, first)
    await settle(client, engine)
    service = client._transport.app.state.chat_service  # type: ignore[attr-defined]
    assert service.prefill.runner.stats.failed == 1
    second = [*first, {"role": "assistant", "content": answer}, {"role": "user", "content": "And the dog?"}]
    response = await turn(client, second)
    assert response.headers["x-memproxy-memory"] == "ok"
    assert "Pochi" in upstream.last_json["messages"][-1]["content"]
