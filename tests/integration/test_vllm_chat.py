"""The proxy in front of the real vLLM CPU server, driven with the official OpenAI Python SDK."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from proxy.errors import UpstreamStatusError
from tests.integration.conftest import API_KEY, MODEL, VllmServer
from tests.support.wiretap import Wiretap

pytestmark = pytest.mark.vllm

HELLO = [{"role": "user", "content": "Say hello."}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def test_non_streamed_answer(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=20, temperature=0)
    assert reply.model == MODEL
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content.strip()
    assert 0 < reply.usage.completion_tokens <= 20


def test_streamed_answer_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=HELLO,
        max_tokens=20,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2  # relayed token by token
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
    assert usage_chunks[0].usage.completion_tokens > 0
    assert usage_chunks[0].usage.total_tokens == usage_chunks[0].usage.prompt_tokens + usage_chunks[0].usage.completion_tokens


def test_model_defaults_when_omitted(proxy: str) -> None:
    response = httpx.post(
        f"{proxy}/v1/chat/completions",
        json={"messages": HELLO, "max_tokens": 5},
        headers={"authorization": f"Bearer {API_KEY}"},
        timeout=120,
        trust_env=False,
    )
    assert response.status_code == 200
    assert response.json()["model"] == MODEL


def test_max_tokens_is_honoured(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Write a long story about a dragon who learns to cook."}],
        max_tokens=5,
        temperature=0,
    )
    assert reply.usage.completion_tokens == 5
    assert reply.choices[0].finish_reason == "length"


def test_unknown_and_vendor_fields_reach_vllm_unchanged(tapped_client: openai.OpenAI, wiretap: Wiretap) -> None:
    probe = {"nested": [1, 2.5, None, "ü"], "flag": True}
    reply = tapped_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say OK."}],
        max_tokens=12,
        temperature=0,
        extra_body={"memproxy_probe": probe, "min_tokens": 12, "ignore_eos": True},
    )
    received = wiretap.chat_requests()[-1].json()
    assert received["memproxy_probe"] == probe
    assert received["min_tokens"] == 12 and received["ignore_eos"] is True
    # vLLM acted on its vendor fields: exactly 12 tokens although "OK." alone would stop far earlier.
    assert reply.usage.completion_tokens == 12


def test_tools_reach_vllm_unchanged(tapped_client: openai.OpenAI, wiretap: Wiretap) -> None:
    tool_choice = {"type": "function", "function": {"name": "get_weather"}}
    reply = tapped_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the weather in Sapporo?"}],
        tools=[WEATHER_TOOL],
        tool_choice=tool_choice,
        max_tokens=60,
        temperature=0,
    )
    received = wiretap.chat_requests()[-1].json()
    assert received["tools"] == [WEATHER_TOOL]
    assert received["tool_choice"] == tool_choice
    calls = reply.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"


def test_response_format_reaches_vllm(tapped_client: openai.OpenAI, wiretap: Wiretap) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    reply = tapped_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Invent a person."}],
        response_format=response_format,
        max_tokens=60,
        temperature=0,
    )
    assert wiretap.chat_requests()[-1].json()["response_format"] == response_format
    person = json.loads(reply.choices[0].message.content)
    assert set(person) == {"name", "age"} and isinstance(person["age"], int)


def test_models_list_comes_from_vllm(client: openai.OpenAI) -> None:
    assert MODEL in [model.id for model in client.models.list()]


def test_malformed_json_is_400_and_nothing_reaches_vllm(tapped_proxy: str, wiretap: Wiretap) -> None:
    before = len(wiretap.chat_requests())
    response = httpx.post(
        f"{tapped_proxy}/v1/chat/completions",
        content=b'{"model": "x", "messages": [',
        headers={"authorization": f"Bearer {API_KEY}", "content-type": "application/json"},
        trust_env=False,
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert len(wiretap.chat_requests()) == before


def test_bad_key_is_401(proxy: str) -> None:
    bad = openai.OpenAI(base_url=f"{proxy}/v1", api_key="not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=5)
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "invalid_api_key"


def test_vllm_client_error_passes_through(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=HELLO, max_tokens=5)
    assert "no-such-model" in caught.value.body["message"]


def test_vllm_refusing_an_over_long_prompt_is_recognised_as_such(client: openai.OpenAI) -> None:
    """The proxy sends a chat again without memory when memory pushed it past the context window
    (tests/unit/test_context_overflow.py); that hinges on reading vLLM's refusal right, checked here."""
    too_long = [{"role": "user", "content": "memory " * 9000}]  # > 8192 tokens: refused before any compute
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=too_long, max_tokens=5)
    error = caught.value.body
    assert UpstreamStatusError(400, error["message"], code=error.get("code")).exceeds_context, error


def test_client_disconnect_aborts_generation_in_vllm(proxy: str, vllm: VllmServer) -> None:
    # ignore_eos: this would generate 4000 tokens (minutes on this CPU) if nobody stopped it.
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 4000, "stream": True, "ignore_eos": True}
    with httpx.Client(base_url=proxy, trust_env=False, timeout=60) as http:
        with http.stream(
            "POST", "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {API_KEY}"}
        ) as response:
            assert response.status_code == 200
            pieces = response.iter_raw()
            next(pieces)
            next(pieces)
            assert vllm.metric("vllm:num_requests_running") >= 1
    deadline = time.monotonic() + 10
    while vllm.metric("vllm:num_requests_running") > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert vllm.metric("vllm:num_requests_running") == 0
