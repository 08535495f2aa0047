"""The Responses API (official ``openai`` SDK) and Anthropic's Messages API (official ``anthropic`` SDK) through the
proxy to the real vLLM CPU server, streamed and not, with memory: a fact told in one API is in the prompt vLLM
receives in another (no history sent), for that user only; the exchange is remembered once the answer is whole;
what the proxy cannot honour, or a wrong key, is an error in the API's own shape. Assertions are on what vLLM
received (the wiretap), not on the 135M model's wording."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import anthropic
import openai
import pytest

from tests.integration.conftest import API_KEY, MODEL, proxy_url, start_proxy
from tests.support.wiretap import Wiretap

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def memory_proxy(wiretap: Wiretap, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("dialects-proxy")
    process = start_proxy(f"{wiretap.url}/v1", tmp / "proxy.log", api_keys_trusted="true")
    try:
        yield proxy_url(process)
    finally:
        process.stop()


def openai_sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=120)


def anthropic_sdk(url: str, key: str = API_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, timeout=120)


def sent_to_vllm(wiretap: Wiretap, path: str) -> str:
    return next(c.body.decode() for c in reversed(wiretap.captured) if c.path == path)


def until_sent(wiretap: Wiretap, path: str, ask: Callable[[], object], must_contain: str, timeout_s: float = 90) -> str:
    """Ask until the body vLLM receives on ``path`` holds ``must_contain`` (an exchange is written after its answer)."""
    deadline = time.monotonic() + timeout_s
    while True:
        ask()
        body = sent_to_vllm(wiretap, path)
        if must_contain in body or time.monotonic() > deadline:
            return body
        time.sleep(1)


NO_WRITE = {"X-Memproxy-Write": "off"}


def test_responses_api_remembers_and_recalls(memory_proxy: str, wiretap: Wiretap) -> None:
    client = openai_sdk(memory_proxy)
    raw = client.responses.with_raw_response.create(
        model=MODEL, input="My cat is called Tamago and she is orange.", user="rin", max_output_tokens=24,
        temperature=0,
    )  # fmt: skip
    told = raw.parse()
    assert told.status in ("completed", "incomplete") and told.output_text.strip()  # incomplete: max_output_tokens
    assert raw.headers["x-memproxy-memory"] == "ok"
    body = until_sent(wiretap, "/v1/responses", lambda: client.responses.create(
        model=MODEL, input=[{"role": "user", "content": [{"type": "input_text", "text": "What is my cat called?"}]}],
        instructions="Answer briefly.", user="rin", max_output_tokens=16, temperature=0, extra_headers=NO_WRITE,
    ), "Tamago")  # fmt: skip
    sent = json.loads(body)
    assert "Tamago" in json.dumps(sent["input"]) and "<memproxy-recalled-memories>" in json.dumps(sent["input"])
    assert sent["instructions"].startswith("Answer briefly.")  # the client's own instructions first, as sent
    assert sent["input"][0]["content"][0]["type"] == "input_text"  # in the API's own part types
    assert sent["cache_salt"]
    other = client.responses.create(model=MODEL, input="What is my cat called?", user="ken", max_output_tokens=8,
                                    extra_headers=NO_WRITE)  # fmt: skip
    assert other.status in ("completed", "incomplete") and "Tamago" not in sent_to_vllm(wiretap, "/v1/responses")


def test_responses_stream_passes_events_through_and_is_remembered(memory_proxy: str, wiretap: Wiretap) -> None:
    client = openai_sdk(memory_proxy)
    with client.responses.stream(
        model=MODEL, input="I play the bassoon in a brass band called Kumo.", user="sora", max_output_tokens=24,
        temperature=0,
    ) as stream:  # fmt: skip
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] in ("response.completed", "response.incomplete")
    assert kinds.count("response.output_text.delta") >= 2 and final.output_text.strip()
    body = until_sent(wiretap, "/v1/messages", lambda: anthropic_sdk(memory_proxy).messages.create(
        model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "Which instrument do I play?"}],
        metadata={"user_id": "sora"}, extra_headers=NO_WRITE,
    ), "bassoon")  # fmt: skip
    assert "bassoon" in body  # told through the Responses API, recalled through Anthropic's


def test_anthropic_messages_remember_and_recall(memory_proxy: str, wiretap: Wiretap) -> None:
    client = anthropic_sdk(memory_proxy)
    told = client.messages.create(
        model=MODEL, max_tokens=24, system="You are terse.", metadata={"user_id": "yui"},
        messages=[{"role": "user", "content": "My locker number is 4417 at the Shibuya gym."}],
    )  # fmt: skip
    assert told.type == "message" and told.content[0].type == "text" and told.stop_reason
    with client.messages.stream(
        model=MODEL, max_tokens=16, system="You are terse.", metadata={"user_id": "yui"},
        messages=[{"role": "user", "content": [{"type": "text", "text": "What is my locker number?"}]}],
        extra_headers=NO_WRITE,
    ) as stream:  # fmt: skip
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.stop_reason and streamed == "".join(b.text for b in final.content if b.type == "text")
    body = until_sent(wiretap, "/v1/chat/completions", lambda: openai_sdk(memory_proxy).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What is my locker number?"}], user="yui", max_tokens=8,
        extra_headers=NO_WRITE,
    ), "4417")  # fmt: skip
    assert "4417" in body  # told through Anthropic's API, recalled through chat completions
    sent = json.loads(until_sent(wiretap, "/v1/messages", lambda: client.messages.create(
        model=MODEL, max_tokens=8, system="You are terse.", metadata={"user_id": "yui"},
        messages=[{"role": "user", "content": "What is my locker number?"}], extra_headers=NO_WRITE,
    ), "4417"))  # fmt: skip
    assert sent["system"].startswith("You are terse.") and "4417" in sent["messages"][-1]["content"]


def test_errors_are_in_each_apis_shape(memory_proxy: str) -> None:
    with pytest.raises(anthropic.AuthenticationError) as denied:
        anthropic_sdk(memory_proxy, key="wrong-key").messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert denied.value.body["type"] == "error" and denied.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.BadRequestError) as malformed:
        anthropic_sdk(memory_proxy).messages.create(model=MODEL, max_tokens=8, messages=[])
    assert malformed.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as background:
        openai_sdk(memory_proxy).responses.create(model=MODEL, input="hi", background=True)
    assert background.value.body["param"] == "background"  # refused, never silently answered in the foreground
