"""Per-key limits (issue 17 §3): a request rate and a number in flight, off by default; over either a request is
answered 429 as OpenAI answers it, with ``Retry-After``, before the upstream is called, and counted in the metrics.
The real app; the upstream a scripted one (httpx.MockTransport): the model is not what is tried here."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from proxy.errors import RateLimitError
from proxy.limits import KeyLimiter
from proxy.settings import LimitSettings
from tests.support.upstreams import completion

BODY = {"model": "m", "messages": [{"role": "user", "content": "Hello"}]}


async def test_limits_are_off_by_default(make_client, upstream) -> None:
    upstream.respond = lambda request: httpx.Response(200, json=completion())
    client = make_client(api_keys="k1")
    statuses = [(await client.post("/v1/chat/completions", json=BODY, headers=auth("k1"))).status_code
                for _ in range(30)]  # fmt: skip
    assert statuses == [200] * 30


async def test_over_the_rate_a_key_gets_429_with_retry_after_and_another_key_does_not(make_client, upstream) -> None:
    upstream.respond = lambda request: httpx.Response(200, json=completion())
    client = make_client(api_keys="k1,k2", limit_requests_per_minute=3)
    statuses = [(await client.post("/v1/chat/completions", json=BODY, headers=auth("k1"))).status_code
                for _ in range(4)]  # fmt: skip
    assert statuses == [200, 200, 200, 429]
    refused = await client.post("/v1/chat/completions", json=BODY, headers=auth("k1"))
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"] == {
        "message": refused.json()["error"]["message"], "type": "requests", "param": None, "code": "rate_limit_exceeded",
    }  # fmt: skip
    assert len(upstream.chats) == 3  # the refused ones never reached the upstream
    assert (await client.get("/v1/models", headers=auth("k2"))).status_code == 200
    metrics = (await client.get("/metrics")).text
    assert 'memproxy_rate_limited_total{code="rate_limit_exceeded"} 2.0' in metrics


async def test_a_key_may_have_only_so_many_requests_in_flight(make_client, upstream) -> None:
    gate = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        return httpx.Response(200, json=completion())

    upstream.respond = slow
    client = make_client(api_keys="k1", limit_max_concurrent=2)
    first = [asyncio.ensure_future(client.post("/v1/chat/completions", json=BODY, headers=auth("k1")))
             for _ in range(2)]  # fmt: skip
    await asyncio.sleep(0.2)
    third = await client.post("/v1/chat/completions", json=BODY, headers=auth("k1"))
    assert third.status_code == 429 and third.json()["error"]["code"] == "concurrency_limit_exceeded"
    gate.set()
    assert [(await f).status_code for f in first] == [200, 200]
    assert (await client.post("/v1/chat/completions", json=BODY, headers=auth("k1"))).status_code == 200


def test_the_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    limiter = KeyLimiter(LimitSettings(requests_per_minute=60, burst=2), clock=lambda: now[0])
    for _ in range(2):
        limiter.admit("k")
        limiter.done("k")
    with pytest.raises(RateLimitError) as refused:
        limiter.admit("k")
    assert 0.9 <= refused.value.retry_after_s <= 1.0
    now[0] = 1.0
    limiter.admit("k")  # one second later: one more


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}
