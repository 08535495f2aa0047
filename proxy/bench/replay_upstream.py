"""The upstream a ``memproxy bench chat-recall`` proxy talks to: it answers each chat with the text the bench scripted
for it (``bench_answer`` in the body, which the proxy forwards like any field it does not know), and keeps the
prompt of every chat by its request id, so the bench scores what the upstream really received.

A chat without a scripted answer is forwarded to a real upstream if one is given (``--upstream-url``), else
answered with a fixed sentence; next-turn prefills (``continue_final_message``) are answered with one token and not
kept. It runs in a thread of the bench's process, on loopback.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import uvicorn

from proxy.observability import REQUEST_ID_HEADER
from proxy.upstream import encode_body

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MODEL = "replay-model"
SCRIPT_FIELD = "bench_answer"
FALLBACK_ANSWER = "I am not sure; tell me more."


class ReplayUpstream:
    def __init__(self, forward_url: str | None = None) -> None:
        self.forward_url = forward_url.rstrip("/") if forward_url else None
        self.prompts: dict[str, list[dict[str, Any]]] = {}
        self.forwarded_s: list[float] = []
        """Seconds each forwarded chat took at the real upstream."""
        self._http = httpx.AsyncClient(timeout=600, trust_env=False) if forward_url else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        body = await _body(receive)
        if method == "GET" and path == "/v1/models":
            await _json(send, 200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]})
        elif method == "POST" and path == "/v1/chat/completions":
            headers = {key.decode().lower(): value.decode() for key, value in scope["headers"]}
            await self._chat(json.loads(body), headers.get(REQUEST_ID_HEADER), send)
        elif method == "POST" and path == "/tokenize" and self._http is not None and self.forward_url is not None:
            answer = await self._http.post(self.forward_url.removesuffix("/v1") + "/tokenize", content=body)
            await _json(send, answer.status_code, answer.json())
        else:
            await _json(send, 404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    async def _chat(self, request: dict[str, Any], request_id: str | None, send: Send) -> None:
        scripted = request.pop(SCRIPT_FIELD, None)
        if request.get("continue_final_message"):  # a next-turn prefill: one token, not a chat
            await _json(send, 200, _completion(request, "."))
            return
        if request_id:
            self.prompts[request_id] = request.get("messages", [])
        if isinstance(scripted, str) or self._http is None or self.forward_url is None:
            await _json(send, 200, _completion(request, scripted if isinstance(scripted, str) else FALLBACK_ANSWER))
            return
        started = time.perf_counter()
        answer = await self._http.post(f"{self.forward_url}/chat/completions", content=encode_body(request))
        self.forwarded_s.append(time.perf_counter() - started)
        await _json(send, answer.status_code, answer.json())


class RunningUpstream:
    """A :class:`ReplayUpstream` served by uvicorn in a thread of its own; a context manager."""

    def __init__(self, app: ReplayUpstream, port: int) -> None:
        self.app = app
        self.url = f"http://127.0.0.1:{port}/v1"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="replay-upstream", daemon=True)

    def __enter__(self) -> RunningUpstream:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the replay upstream did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


def _completion(request: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-replay-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", MODEL),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": len(text.split()), "total_tokens": len(text.split())},
    }


async def _body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

