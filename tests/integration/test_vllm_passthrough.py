"""Every other ``/v1/*`` route passes through to the real vLLM CPU server unchanged: what the proxy answers is what
vLLM answers when asked directly (greedy decoding, so the same text), driven with the official OpenAI Python SDK."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.integration.conftest import API_KEY, MODEL, VllmServer

pytestmark = pytest.mark.vllm

PROMPT = "The capital of France is"


@pytest.fixture
def direct(vllm: VllmServer) -> Iterator[openai.OpenAI]:
    """The same SDK talking to vLLM itself, for what the proxy's answer must equal."""
    with openai.OpenAI(base_url=f"{vllm.base_url}/v1", api_key="unused", max_retries=0, timeout=120) as sdk:
        yield sdk


def test_legacy_completion_is_vllms_own(client: openai.OpenAI, direct: openai.OpenAI) -> None:
    reply = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0)
    expected = direct.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0)
    assert reply.object == "text_completion" and reply.model == MODEL
    assert reply.choices[0].text.strip()
    assert reply.choices[0].text == expected.choices[0].text  # no memory: the prompt reached vLLM as sent
    assert reply.usage.prompt_tokens == expected.usage.prompt_tokens
    assert 0 < reply.usage.completion_tokens <= 8


def test_streamed_legacy_completion_is_relayed_token_by_token(client: openai.OpenAI, direct: openai.OpenAI) -> None:
    stream = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    texts = [c.choices[0].text for c in chunks if c.choices and c.choices[0].text]
    assert len(texts) >= 2  # one chunk per token, not one buffered answer
    whole = direct.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0)
    assert "".join(texts) == whole.choices[0].text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_vllms_errors_come_back_as_vllm_gave_them(proxy: str, vllm: VllmServer) -> None:
    """A model vLLM does not serve (its 404, OpenAI-shaped), and embeddings, which vLLM offers for pooling models only:
    whatever vLLM says to these, the proxy says too."""
    requests = [
        ("/v1/completions", {"model": "no-such-model", "prompt": PROMPT, "max_tokens": 2}),
        ("/v1/embeddings", {"model": MODEL, "input": PROMPT}),
    ]
    with httpx.Client(timeout=120, trust_env=False) as http:
        for path, body in requests:
            through = http.post(f"{proxy}{path}", json=body, headers={"authorization": f"Bearer {API_KEY}"})
            own = http.post(f"{vllm.base_url}{path}", json=body)
            assert through.status_code == own.status_code, path
            assert through.json() == own.json(), path
            assert through.headers["content-type"] == own.headers["content-type"], path


def test_sdk_errors_are_the_sdks_own_types(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.completions.create(model="no-such-model", prompt=PROMPT, max_tokens=2)
    assert "no-such-model" in raised.value.message


def test_passthrough_needs_the_key(proxy: str) -> None:
    response = httpx.post(
        f"{proxy}/v1/completions", json={"model": MODEL, "prompt": PROMPT, "max_tokens": 2}, timeout=30, trust_env=False
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"
