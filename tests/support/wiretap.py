"""A transparent HTTP relay that records what crosses it, for asserting on exactly what vLLM received.

It sits between the proxy and the real vLLM in the integration tier: every byte of every request is forwarded
unchanged and the response is streamed back as it arrives. It replaces nothing; it only lets a test read the wire.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from proxy.bench.processes import free_port

HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"host"}


@dataclass(frozen=True)
class Captured:
    method: str
    path: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def is_prefill(self) -> bool:
        """A next-turn prefill memproxy sends after an answer (proxy.chat.prefill), not a chat."""
        return b'"continue_final_message":true' in self.body


class Wiretap:
    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.captured: list[Captured] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.captured.append(Captured(scope["method"], scope["path"], body))
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
        async with httpx.AsyncClient(timeout=None, trust_env=False) as client:
            request = client.build_request(scope["method"], self.target + scope["path"], content=body, headers=headers)
            response = await client.send(request, stream=True)
            try:
                out_headers = [(k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP]
                await send({"type": "http.response.start", "status": response.status_code, "headers": out_headers})
                async for piece in response.aiter_raw():
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                await response.aclose()

    def chat_requests(self) -> list[Captured]:
        """The chats forwarded, in order (next-turn prefills left out: see :meth:`prefills`)."""
        return [c for c in self.captured if c.path.endswith("/chat/completions") and not c.is_prefill]

    def prefills(self) -> list[Captured]:
        return [c for c in self.captured if c.path.endswith("/chat/completions") and c.is_prefill]


class ThreadedServer:
    """Runs an ASGI app with uvicorn on 127.0.0.1 in a background thread of the test process."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="wiretap", daemon=True)

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("wiretap did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
