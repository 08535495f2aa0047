"""/metrics, request ids (returned, forwarded upstream, in JSON logs) and several upstream replicas with user
affinity and fail-over — against scripted upstreams (httpx.MockTransport; the real vLLM is in tests/integration)."""

from __future__ import annotations

import json
import logging
from collections import Counter

import httpx
import pytest

from proxy.app import create_app
from proxy.observability import JsonFormatter, request_id
from proxy.settings import Settings
from proxy.upstream import UpstreamClient
from proxy.upstream_pool import UpstreamPool
from tests.support.chat_memory import chat, settle
from tests.support.upstreams import RecordingUpstream, chunk, completion, sse, stream_response

CHAT = {"messages": [{"role": "user", "content": "Hi"}]}
VLLM_METRICS = (
    "# TYPE vllm:prefix_cache_hits_total counter\n"
    'vllm:prefix_cache_hits_total{engine="0",model_name="m"} 900.0\n'
    'vllm:prefix_cache_queries_total{engine="0",model_name="m"} 1000.0\n'
)


def metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()) and (head == name or head.startswith(name + "{")):
            return float(value)
    return None


async def test_metrics_count_requests_phases_memory_status_and_upstream_cache(make_client, upstream) -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/metrics":
            return httpx.Response(200, text=VLLM_METRICS)
        return httpx.Response(200, json=completion())

    upstream.respond = respond
    client = make_client()
    for _ in range(3):
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    await client.post("/v1/chat/completions", content=b"{bad")
    text = (await client.get("/metrics")).text
    assert metric(text, "memproxy_http_requests_total", route="/v1/chat/completions", status="200") == 3
    assert metric(text, "memproxy_http_requests_total", route="/v1/chat/completions", status="400") == 1
    assert metric(text, "memproxy_chat_phase_seconds_count", phase="upstream_ttfb") == 3
    assert metric(text, "memproxy_chat_phase_seconds_count", phase="identity") == 3
    assert metric(text, "memproxy_chat_memory_total", status="off") == 3
    assert metric(text, "memproxy_upstream_up", upstream="http://upstream.test/v1") == 1
    assert metric(text, "memproxy_upstream_prefix_cache_hit_ratio", upstream="http://upstream.test/v1") == 0.9


async def test_request_id_is_returned_forwarded_and_sane(make_client, upstream) -> None:
    client = make_client()
    response = await client.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"
    assert upstream.requests[-1].headers["x-request-id"] == "trace-42"
    response = await client.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "bad id\nwith\x01"})
    generated = response.headers["x-request-id"]
    assert generated != "bad id\nwith\x01" and len(generated) == 32
    assert upstream.requests[-1].headers["x-request-id"] == generated
    first = (await client.get("/healthz")).headers["x-request-id"]
    assert first != (await client.get("/healthz")).headers["x-request-id"]


def test_json_logs_carry_the_request_id() -> None:
    record = logging.LogRecord("proxy.chat", logging.WARNING, __file__, 1, "upstream %s failed", ("x",), None)
    token = request_id.set("rid-7")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert line["request_id"] == "rid-7" and line["message"] == "upstream x failed" and line["level"] == "warning"


@pytest.fixture
def replicas() -> dict[str, RecordingUpstream]:
    return {name: RecordingUpstream() for name in ("a", "b", "c")}


def pool_app(replicas: dict[str, RecordingUpstream], tmp_path) -> tuple[httpx.AsyncClient, UpstreamPool]:
    def route(request: httpx.Request) -> httpx.Response:
        return replicas[request.url.host.split(".")[0]](request)

    urls = [f"http://{name}.test/v1" for name in replicas]
    settings = Settings(upstream_urls=",".join(urls), data_dir=tmp_path, default_model="m")
    app = create_app(settings, http_client=httpx.AsyncClient(transport=httpx.MockTransport(route)))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test")
    return client, app.state.upstreams


async def test_each_user_sticks_to_one_replica_and_users_spread(replicas, tmp_path) -> None:
    client, _ = pool_app(replicas, tmp_path)
    placement = {}
    for user in (f"user-{i}" for i in range(60)):
        for _ in range(2):
            await client.post("/v1/chat/completions", json={**CHAT, "user": user})
            host = next(name for name, r in replicas.items() if r.requests and r.requests[-1].content and
                        json.loads(r.requests[-1].content).get("user") == user)
            assert placement.setdefault(user, host) == host
    spread = Counter(placement.values())
    assert len(spread) == 3 and min(spread.values()) >= 10, spread


async def test_a_refusing_replica_fails_over_and_comes_back(replicas, tmp_path) -> None:
    client, pool = pool_app(replicas, tmp_path)
    home = pool.for_key("default\x00victim").base_url.split("//")[1].split(".")[0]
    refuse_home = True

    def refuse(request: httpx.Request) -> httpx.Response:
        if refuse_home:
            raise httpx.ConnectError("connection refused")
        return httpx.Response(200, json=completion())

    replicas[home].respond = refuse
    response = await client.post("/v1/chat/completions", json={**CHAT, "user": "victim"})
    assert response.status_code == 200
    assert not next(r for r in pool.replicas if home in r.url).healthy
    # Streams fail over the same way (nothing was sent to the client yet).
    for name, replica in replicas.items():
        if name != home:
            replica.respond = lambda request: stream_response([sse(chunk("ok", finish_reason="stop")), sse("[DONE]")])[0]
    response = await client.post("/v1/chat/completions", json={**CHAT, "user": "victim", "stream": True})
    assert response.status_code == 200 and response.content.endswith(b"data: [DONE]\n\n")
    refuse_home = False
    await pool.probe_once()
    assert all(r.healthy for r in pool.replicas)
    before = len(replicas[home].requests)
    await client.post("/v1/chat/completions", json={**CHAT, "user": "victim"})
    assert len(replicas[home].requests) == before + 1


async def test_a_timeout_is_not_retried_elsewhere(replicas, tmp_path) -> None:
    """A replica that timed out may have done the work: the client gets the 504, no second replica is asked."""
    client, pool = pool_app(replicas, tmp_path)
    home = pool.for_key("default\x00slow").base_url.split("//")[1].split(".")[0]

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    replicas[home].respond = slow
    response = await client.post("/v1/chat/completions", json={**CHAT, "user": "slow"})
    assert response.status_code == 504
    assert sum(len(r.requests) for name, r in replicas.items() if name != home) == 0


def test_rendezvous_moves_only_the_removed_replicas_users() -> None:
    clients = [UpstreamClient(httpx.AsyncClient(), f"http://r{i}.test/v1") for i in range(4)]
    pool = UpstreamPool(clients)
    before = {f"u{i}": pool.for_key(f"u{i}") for i in range(400)}
    pool.mark_down(clients[2], "test")
    after = {u: pool.for_key(u) for u in before}
    moved = {u for u in before if before[u] is not after[u]}
    assert moved == {u for u in before if before[u] is clients[2]}


async def test_metrics_read_the_memory_engine(proxy, engine) -> None:
    """With memory on: the write queue, the indexes' lag behind the store and the extraction outcomes at scrape."""
    client = proxy()
    response = await chat(client, "acme-svc", "My dog is called Pochi", user="alice")
    assert response.headers["x-memproxy-memory"] == "ok"
    await settle(client, engine)
    text = (await client.get("/metrics")).text
    assert metric(text, "memproxy_write_queue_depth") == 0 and metric(text, "memproxy_write_dead_letters") == 0
    assert metric(text, "memproxy_memory_index_lag_changes") == 0
    assert metric(text, "memproxy_chat_memory_total", status="ok") == 1
    assert "# TYPE memproxy_extractions_total counter" in text
