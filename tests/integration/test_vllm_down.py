"""vLLM stopped under a running proxy: clear OpenAI errors, then recovery once it is back."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.integration.conftest import MODEL, VllmServer

pytestmark = pytest.mark.vllm


def test_stopped_vllm_is_502_and_recovery_follows(client: openai.OpenAI, proxy: str, vllm: VllmServer) -> None:
    assert client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
    vllm.stop()
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
        assert caught.value.status_code == 502
        assert caught.value.body["code"] == "upstream_unreachable"
        assert caught.value.body["type"] == "upstream_error"
        with pytest.raises(openai.APIStatusError) as caught:
            list(
                client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3, stream=True
                )
            )
        assert caught.value.status_code == 502
        assert httpx.get(f"{proxy}/readyz", trust_env=False).status_code == 503
        assert httpx.get(f"{proxy}/healthz", trust_env=False).status_code == 200
    finally:
        vllm.start()
    assert httpx.get(f"{proxy}/readyz", trust_env=False).status_code == 200
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
    assert reply.choices[0].message.content is not None
