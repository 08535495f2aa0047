"""Every other ``/v1/*`` route passes through to the upstream unchanged — against a scripted upstream
(``httpx.MockTransport``); tests/integration/test_vllm_passthrough.py does the same against the real vLLM."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from proxy.app import create_app
from proxy.settings import Settings
from tests.support.upstreams import RecordingUpstream, ScriptedStream, completion, sse, stream_response

PROMPT = {"model": "m", "prompt": "Once upon a time", "max_tokens": 5}
UPSTREAM_ERROR = b'{"object":"error","message":"max_tokens must be at least 1","type":"BadRequestError","code":400}'


def answer(status: int, content: bytes = b"{}", **headers: str) -> httpx.Response:
    """An upstream answer with its body still to read, as a server's arrives: the proxy relays the raw bytes as they
    stream, and an ``httpx.Response(content=…)`` has read its stream when it is built."""
    headers.setdefault("content_type", "application/json")
    fields = {name.replace("_", "-"): value for name, value in headers.items()}
    return httpx.Response(
        status, headers=fields | {"content-length": str(len(content))}, stream=ScriptedStream([content])
    )


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused")


async def test_a_request_goes_upstream_and_its_answer_comes_back_unchanged(make_client, upstream) -> None:
    body = b'{"id":"cmpl-1","object":"text_completion","choices":[{"text":" there was","index":0}]}'
    upstream.respond = lambda request: answer(
        201, body, content_type="application/json; charset=utf-8", x_upstream="yes"
    )
    client = make_client(api_keys=["key-1"], upstream_api_key="upstream-secret")
    sent_body = json.dumps(PROMPT, separators=(",", ":")).encode() + b"  "
    response = await client.post(
        "/v1/completions?a=1&b=%20x&flag",
        content=sent_body,
        headers={"authorization": "Bearer key-1", "content-type": "application/json", "x-client": "kept"},
    )
    assert (response.status_code, response.content) == (201, body)
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.headers["x-upstream"] == "yes"
    assert response.headers["content-length"] == str(len(body))
    sent = upstream.requests[-1]
    assert (sent.method, sent.url.raw_path) == ("POST", b"/v1/completions?a=1&b=%20x&flag")
    assert sent.url.host == "upstream.test" and sent.headers["host"] == "upstream.test"
    assert sent.content == sent_body and sent.headers["content-length"] == str(len(sent_body))
    assert sent.headers["x-client"] == "kept"
    # The upstream's key replaces the client's, which never leaves the proxy.
    assert sent.headers.get_list("authorization") == ["Bearer upstream-secret"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/responses/resp_1"),
        ("POST", "/v1/embeddings"),
        ("DELETE", "/v1/files/file-1"),
        ("PUT", "/v1/some/vendor/extension"),
        ("PATCH", "/v1/chat/completions/render"),
        ("POST", "/v1/audio/transcriptions"),
    ],
)
async def test_any_method_and_path_under_v1_passes(client, upstream, method: str, path: str) -> None:
    upstream.respond = lambda request: answer(200, json.dumps({"path": request.url.path}).encode())
    response = await client.request(method, path, content=b"raw bytes, not JSON")
    assert response.status_code == 200 and response.json() == {"path": path}
    assert upstream.requests[-1].method == method
    assert upstream.requests[-1].content == b"raw bytes, not JSON"


async def test_an_encoded_path_reaches_the_upstream_as_sent(client, upstream) -> None:
    upstream.respond = lambda request: answer(200)
    await client.get("/v1/files/a%3Fb%20c%25/content?x=%3F&y")
    assert upstream.requests[-1].url.raw_path == b"/v1/files/a%3Fb%20c%25/content?x=%3F&y"


async def test_an_upstream_error_is_relayed_as_it_is(client, upstream) -> None:
    upstream.respond = lambda request: answer(400, UPSTREAM_ERROR)
    response = await client.post("/v1/completions", json={**PROMPT, "max_tokens": 0})
    assert (response.status_code, response.content) == (400, UPSTREAM_ERROR)
    assert response.headers["content-type"] == "application/json"
    upstream.respond = lambda request: answer(503, b"overloaded", content_type="text/plain", retry_after="3")
    response = await client.post("/v1/embeddings", json={"input": "x"})
    assert (response.status_code, response.text, response.headers["retry-after"]) == (503, "overloaded", "3")


async def test_hop_by_hop_headers_stay_on_their_own_leg(client, upstream) -> None:
    upstream.respond = lambda request: answer(
        200, connection="x-hop-back", x_hop_back="1", keep_alive="timeout=5", server="uvicorn"
    )
    response = await client.post(
        "/v1/completions",
        json=PROMPT,
        headers={"connection": "x-hop", "x-hop": "1", "proxy-authorization": "Basic eDp5", "te": "trailers"},
    )
    sent = upstream.requests[-1].headers
    assert not {"x-hop", "proxy-authorization", "te"} & set(sent)
    assert not {"x-hop-back", "keep-alive", "server"} & set(response.headers)
    assert response.headers["x-request-id"] == sent["x-request-id"]  # the proxy's own, once each way


async def test_a_stream_is_relayed_chunk_by_chunk_as_it_comes(tmp_path) -> None:
    """Driven at the ASGI level (httpx's ASGITransport reads a whole response before returning it): the upstream
    sends its next chunk only once the client has received the previous one, so a proxy that buffered would hang."""
    frames = [sse({"choices": [{"text": word, "index": 0}]}) for word in ("Once", " upon", " a")] + [sse("[DONE]")]
    seen = [asyncio.Event() for _ in frames]

    class Paced(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for index, frame in enumerate(frames):
                if index:
                    await seen[index - 1].wait()
                yield frame

    upstream = RecordingUpstream()
    upstream.respond = lambda request: httpx.Response(
        200, headers={"content-type": "text/event-stream; charset=utf-8"}, stream=Paced()
    )
    app = _app(tmp_path, httpx.MockTransport(upstream))
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        for index, frame in enumerate(frames):
            if message.get("body") == frame:
                seen[index].set()

    body = json.dumps({**PROMPT, "stream": True}).encode()
    await asyncio.wait_for(app(_scope("POST", "/v1/completions"), _receive(body), send), timeout=10)
    start, *parts = messages
    assert start["status"] == 200
    assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"]
    assert [m["body"] for m in parts if m["body"]] == frames
    assert json.loads(upstream.requests[-1].content)["stream"] is True


async def test_a_stream_that_breaks_ends_with_one_error_frame(client, upstream) -> None:
    first = sse({"choices": [{"text": "Once", "index": 0}]})
    upstream.respond = lambda request: stream_response([first], fail_with=httpx.ReadError("reset"))[0]
    response = await client.post("/v1/completions", json={**PROMPT, "stream": True})
    assert response.status_code == 200
    events = [block for block in response.text.split("\n\n") if block]
    assert events[0] + "\n\n" == first.decode()
    assert json.loads(events[1].removeprefix("data: "))["error"]["code"] == "upstream_unreachable"
    assert events[2:] == ["data: [DONE]"]


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong"}])
async def test_a_valid_key_is_needed_and_nothing_goes_upstream_without_one(make_client, upstream, headers) -> None:
    client = make_client(api_keys=["key-1"])
    for method, path in (("POST", "/v1/completions"), ("GET", "/v1/anything"), ("DELETE", "/v1/files/f")):
        response = await client.request(method, path, json=PROMPT, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert upstream.requests == []
    upstream.respond = lambda request: answer(200)
    response = await client.post("/v1/completions", json=PROMPT, headers={"authorization": "Bearer key-1"})
    assert response.status_code == 200
    assert "authorization" not in upstream.requests[-1].headers  # no upstream key configured: none is sent


async def test_the_proxys_own_routes_are_never_forwarded(client, upstream) -> None:
    for method, path, status in [
        ("GET", "/v1/memories/mem-1/history/extra", 404),
        ("POST", "/v1/memories/unknown/sub/path", 404),
        ("GET", "/v1/adapters/1/2/3", 404),
        ("GET", "/v1/chat/completions", 405),
        ("PUT", "/v1/models", 405),
        ("PUT", "/v1/memories/search", 405),
        ("GET", "/v1/models/", 307),  # the proxy's redirect to its own /v1/models
        ("GET", "/v1/memories/", 307),
        ("GET", "/nothing-here", 404),  # outside /v1: nothing passes
        ("POST", "/tokenize", 404),
    ]:
        response = await client.request(method, path, follow_redirects=False)
        assert response.status_code == status, (method, path)
        if status != 307:
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert upstream.requests == []
    chat = await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}]})
    assert chat.json() == completion()  # still the chat path (it fills in the default model)
    assert json.loads(upstream.requests[-1].content)["model"] == "default-model"


async def test_upstream_down_is_the_chat_paths_error(client, upstream) -> None:
    upstream.respond = refuse
    chat = await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}]})
    response = await client.post("/v1/completions", json=PROMPT)
    assert (response.status_code, response.json()) == (chat.status_code, chat.json())
    assert response.json()["error"]["code"] == "upstream_unreachable" and response.status_code == 502

    def too_slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    upstream.respond = too_slow
    response = await client.get("/v1/anything")
    assert (response.status_code, response.json()["error"]["code"]) == (504, "upstream_timeout")


async def test_each_user_goes_to_their_chat_replica(tmp_path) -> None:
    replicas = {name: RecordingUpstream() for name in ("a", "b", "c")}
    for replica in replicas.values():
        replica.respond = lambda request: (
            httpx.Response(200, json=completion()) if request.url.path.endswith("/chat/completions") else answer(200)
        )

    def route(request: httpx.Request) -> httpx.Response:
        return replicas[request.url.host.split(".")[0]](request)

    app = _app(tmp_path, httpx.MockTransport(route), upstream_urls="http://a.test/v1,http://b.test/v1,http://c.test/v1")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as client:

        async def host_of(path: str, **kwargs: Any) -> str:
            await client.post(path, **kwargs)
            return next(name for name, r in replicas.items() if r.requests and r.requests[-1].url.path == path)

        for user in (f"user-{i}" for i in range(12)):
            chat = {"messages": [{"role": "user", "content": "Hi"}], "user": user}
            home = await host_of("/v1/chat/completions", json=chat)
            assert await host_of("/v1/completions", json={**PROMPT, "user": user}) == home
            header = {"x-openwebui-user-id": user}
            assert await host_of("/v1/embeddings", content=b"not json", headers=header) == home
            for replica in replicas.values():
                replica.requests.clear()


async def test_passthrough_requests_are_counted_under_one_route_label(make_client, upstream) -> None:
    client = make_client()
    upstream.respond = lambda request: answer(404 if request.url.path.endswith("/embeddings") else 200)
    await client.post("/v1/completions", json=PROMPT)
    await client.post("/v1/embeddings", json={"input": "x"})
    upstream.respond = lambda request: httpx.Response(200, text="")
    text = (await client.get("/metrics")).text
    assert 'memproxy_http_requests_total{method="POST",route="/v1/{path:path}",status="200"} 1.0' in text
    assert 'memproxy_http_requests_total{method="POST",route="/v1/{path:path}",status="404"} 1.0' in text


async def test_the_catch_all_is_not_in_the_openapi_document(client) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/v1/chat/completions" in paths and not any("{path" in path for path in paths)


def _app(tmp_path, transport: httpx.AsyncBaseTransport, **settings: Any) -> FastAPI:
    settings.setdefault("upstream_url", "http://upstream.test/v1")
    config = Settings(data_dir=tmp_path / "data", memory_enabled=False, default_model="m", **settings)
    return create_app(config, http_client=httpx.AsyncClient(transport=transport))


def _scope(method: str, path: str) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"proxy.test"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000), "server": ("proxy.test", 80),
    }  # fmt: skip


def _receive(body: bytes) -> Any:
    """The body in one message, then nothing until the end: the client stays connected."""
    sent = False
    forever = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await forever.wait()
        return {"type": "http.disconnect"}

    return receive


def test_idle_upstream_connections_are_dropped_before_uvicorn_drops_them() -> None:
    """uvicorn, which serves vLLM and the stub, closes a connection idle for 5 s (its default ``timeout_keep_alive``);
    a pooled connection kept as long races that close."""
    import inspect

    import uvicorn

    from proxy.upstream import KEEPALIVE_EXPIRY_S

    assert KEEPALIVE_EXPIRY_S < inspect.signature(uvicorn.Config).parameters["timeout_keep_alive"].default
