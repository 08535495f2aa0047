"""Scripted upstreams for the unit tier, as ``httpx.MockTransport`` handlers.

The unit tier isolates the proxy's serving logic; the real vLLM is exercised by tests/integration.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

CHAT_URL = "http://upstream.test/v1/chat/completions"


def sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def chunk(content: str | None = None, *, finish_reason: str | None = None, index: int = 0) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason}],
    }


def completion(content: str = "Hello there.") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


class ScriptedStream(httpx.AsyncByteStream):
    """Yields the given chunks, then raises ``fail_with`` if set; records whether it was closed."""

    def __init__(self, chunks: list[bytes], fail_with: Exception | None = None) -> None:
        self.chunks = chunks
        self.fail_with = fail_with
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.chunks:
            yield piece
        if self.fail_with is not None:
            raise self.fail_with

    async def aclose(self) -> None:
        self.closed = True


class RecordingUpstream:
    """Records every request the proxy sends and answers with ``respond`` (settable per test)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.respond: Callable[[httpx.Request], httpx.Response] = lambda request: httpx.Response(200, json=completion())

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request)

    @property
    def chats(self) -> list[httpx.Request]:
        """Chat requests, in order; next-turn prefills (``continue_final_message``) are in :attr:`prefills`, the
        token counts that pad them (vLLM's ``/tokenize``) in :attr:`tokenizes`."""
        return [r for r in self.requests if not _is_prefill(r) and not _is_tokenize(r)]

    @property
    def prefills(self) -> list[httpx.Request]:
        return [r for r in self.requests if _is_prefill(r)]

    @property
    def tokenizes(self) -> list[httpx.Request]:
        return [r for r in self.requests if _is_tokenize(r)]

    @property
    def last_json(self) -> dict[str, Any]:
        """The newest chat request's body (prefills, sent in the background after answers, are not chats)."""
        return json.loads(self.chats[-1].content)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def _is_prefill(request: httpx.Request) -> bool:
    return not _is_tokenize(request) and b'"continue_final_message":true' in request.content


def _is_tokenize(request: httpx.Request) -> bool:
    return request.url.path.endswith("/tokenize")


def stream_response(chunks: list[bytes], fail_with: Exception | None = None) -> tuple[httpx.Response, ScriptedStream]:
    stream = ScriptedStream(chunks, fail_with)
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=stream), stream
