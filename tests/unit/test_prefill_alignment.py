"""Padding the next-turn prefill to a KV block boundary: vLLM caches whole blocks only, so a prefill that ends
mid-block would leave its last tokens for the next turn to compute while the user waits.

The padding rule on plain lists with stand-in token counters; then the proxy with the real memory engine in front of
a scripted upstream whose ``/tokenize`` counts words (the real vLLM's ``/tokenize`` and cache are used in
tests/integration/test_next_turn_prefill.py).
"""

from __future__ import annotations

import json

import httpx
import pytest

from proxy.chat.prefill import MAX_PADDED_SHARE, TokenCount, align_block, tokenize_body
from proxy.chat.prompt_layout import PAD_UNIT, pad_block, quoted_texts, render_recalled
from tests.support.chat_memory import app_of
from tests.support.upstreams import completion
from tests.unit.test_next_turn_prefill import ABOUT_HANA, DOG, JOB, SISTER, prefilled_turn, remember, then, turn

BLOCK = render_recalled([("The user's dog Pochi hates the rain.", None)])


def words(messages: list[dict]) -> int:
    """A stand-in tokenizer: one token a whitespace-separated word (so one pad unit is one token)."""
    return sum(len(str(m["content"]).split()) for m in messages)


def counter(tokens=words, calls: list | None = None, limit: int | None = None):
    async def count(messages: list[dict]) -> TokenCount:
        if calls is not None:
            calls.append(messages)
        return TokenCount(tokens(messages), limit)

    return count


def test_pad_block_adds_a_line_that_is_no_memory() -> None:
    padded = pad_block(BLOCK, 5)
    assert padded.endswith(f"{PAD_UNIT * 5}\n</memproxy-recalled-memories>")
    assert quoted_texts(padded) == quoted_texts(BLOCK) == {"The user's dog Pochi hates the rain."}
    assert pad_block(BLOCK, 0) == BLOCK
    assert pad_block("not a block", 3) == "not a block"


@pytest.mark.parametrize("block_tokens", [8, 16, 128])
async def test_the_prefill_is_padded_to_a_whole_number_of_blocks(block_tokens: int) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": BLOCK}]
    aligned = await align_block(messages, counter(), block_tokens)
    assert aligned is not None
    assert words(aligned) % block_tokens == 0
    assert 0 < words(aligned) - words(messages) < block_tokens
    assert aligned[:-1] == messages[:-1]
    assert aligned[-1]["content"].startswith(BLOCK.removesuffix("</memproxy-recalled-memories>"))


async def test_an_aligned_prefill_is_left_as_it_is() -> None:
    messages = [{"role": "user", "content": BLOCK}]
    calls: list = []
    assert await align_block(messages, counter(calls=calls), words(messages)) == messages
    assert len(calls) == 1


async def test_a_line_that_costs_more_than_its_units_is_corrected() -> None:
    # A tokenizer where the pad line's newline is a token of its own: the first guess overshoots by one.
    def with_newline(messages: list[dict]) -> int:
        return words(messages) + (1 if PAD_UNIT in messages[-1]["content"] else 0)

    messages = [{"role": "user", "content": BLOCK}]
    for block_tokens in (9, 10, 11, 12):  # needing 1 unit included: then only the next boundary is reachable
        aligned = await align_block(messages, counter(with_newline), block_tokens)
        assert aligned is not None and with_newline(aligned) % block_tokens == 0


async def test_no_padding_that_lands_gives_none() -> None:
    # A counter that never lands on a boundary (it always reports one past): the caller prefills unpadded.
    def odd(messages: list[dict]) -> int:
        return 16 * words(messages) + 1

    assert await align_block([{"role": "user", "content": BLOCK}], counter(odd), 16) is None


async def test_no_padding_near_the_end_of_the_context() -> None:
    messages = [{"role": "user", "content": BLOCK}]
    assert words(messages) < 128  # padded, it is one whole block of 128
    roomy = await align_block(messages, counter(limit=4096), 128)
    assert roomy is not None and words(roomy) == 128
    crowded = int(128 / MAX_PADDED_SHARE)  # 128 tokens would be more than the share of a 169-token context
    assert await align_block(messages, counter(limit=crowded - 1), 128) is None


def test_the_tokenize_request_renders_as_the_prefill_does() -> None:
    forwarded = {"model": "m", "tools": [{"type": "function"}], "stream": True, "max_tokens": 9, "cache_salt": "s"}
    body = tokenize_body(forwarded, [{"role": "user", "content": "x"}])
    assert body == {
        "model": "m",
        "tools": [{"type": "function"}],
        "messages": [{"role": "user", "content": "x"}],
        "add_generation_prompt": False,
        "continue_final_message": True,
    }


def tokenizing_upstream(answer: str):
    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tokenize":  # on the server's root, not under /v1
            count = words(json.loads(request.content)["messages"])
            return httpx.Response(200, json={"count": count, "max_model_len": 8192, "tokens": []})
        return httpx.Response(200, json=completion(answer))

    return respond


async def test_the_proxy_pads_the_prefill_and_the_next_turn_opens_with_it(proxy, upstream, engine) -> None:
    client = proxy(recall_top_k=1, prefill_align_tokens=128)
    await remember(engine, SISTER, DOG, JOB)
    answer = "Hana is well. Did you take your dog Pochi out in the rain today?"
    upstream.respond = tokenizing_upstream(answer)
    anticipated = await prefilled_turn(client, upstream, engine, ABOUT_HANA)
    assert words(json.loads(upstream.prefills[0].content)["messages"]) % 128 == 0
    assert PAD_UNIT in anticipated and "Pochi" in anticipated
    assert upstream.tokenizes and all(r.url.path == "/tokenize" for r in upstream.tokenizes)
    # The block logged for the next turn is the padded one, byte for byte.
    await turn(client, then(ABOUT_HANA, answer, "What is my dog called?"))
    assert upstream.last_json["messages"][-1]["content"].startswith(anticipated + "\n\n")
    assert app_of(client).state.chat_service.prefill.runner.stats.unaligned == 0


async def test_an_upstream_that_cannot_count_gets_the_prefill_unpadded(proxy, upstream, engine) -> None:
    client = proxy(recall_top_k=1)
    await remember(engine, SISTER, DOG)
    answer = "Hana is well; is Pochi?"

    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/tokenize"):
            return httpx.Response(404, json={"detail": "Not Found"})
        return httpx.Response(200, json=completion(answer))

    upstream.respond = respond
    anticipated = await prefilled_turn(client, upstream, engine, ABOUT_HANA)
    assert PAD_UNIT not in anticipated and "Pochi" in anticipated
    assert app_of(client).state.chat_service.prefill.runner.stats.unaligned == 1
    await turn(client, then(ABOUT_HANA, answer, "And my dog?"))
    assert upstream.last_json["messages"][-1]["content"].startswith(anticipated + "\n\n")
