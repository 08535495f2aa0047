"""A fast local OpenAI-compatible upstream, for isolating the proxy's own cost in benchmarks and for exercising
connection-level behaviour (client disconnects) over real sockets in tests.

It is not a model: it answers ``/v1/chat/completions`` (and ``/v1/responses``, ``/v1/messages``, in those APIs'
shapes) with a fixed text, streamed as one SSE chunk per word, with
an optional delay per chunk; ``/v1/models`` lists one model; ``/stats`` counts finished and abandoned requests.

    python -m proxy.bench.stub_upstream --port 9001 [--chunk-delay-ms 0] [--answer-delay-ms 0] [--die-after-words N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MODEL = "stub-model"
ANSWER_WORDS = "This is a fixed answer from the stub upstream used to measure proxy overhead .".split()


class StubUpstream:
    def __init__(self, *, chunk_delay_s: float = 0.0, answer_delay_s: float = 0.0, die_after: int | None = None) -> None:
        """``die_after``: a stream drops its connection after this many words (a fault for the reliability
        bench); None: never."""
        self.chunk_delay_s = chunk_delay_s
        self.answer_delay_s = answer_delay_s
        self.die_after = die_after
        self.stats = {"completed": 0, "abandoned": 0}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/v1/models":
            await _json(send, 200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "stub"}]})
        elif method == "GET" and path == "/stats":
            await _json(send, 200, self.stats)
        elif method == "POST" and path in ("/v1/chat/completions", "/v1/responses", "/v1/messages"):
            await self._chat(receive, send, api=path.rsplit("/", 1)[-1])
        else:
            await _json(send, 404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    async def _chat(self, receive: Receive, send: Send, *, api: str = "completions") -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body)
        limit = request.get("max_output_tokens" if api == "responses" else "max_tokens")
        words = ANSWER_WORDS[: limit if isinstance(limit, int) and limit > 0 else len(ANSWER_WORDS)]
        if api == "responses":
            work = _response_stream(send, words) if request.get("stream") else _json(send, 200, _response(words))
        elif api == "messages":
            work = _message_stream(send, words) if request.get("stream") else _json(send, 200, _message(words))
        else:
            work = self._stream(send, request, words) if request.get("stream") else self._whole(send, request, words)
        answer = asyncio.ensure_future(work)
        gone = asyncio.ensure_future(_wait_disconnect(receive))
        await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
        if answer.done():
            gone.cancel()
            answer.result()
            self.stats["completed"] += 1
        else:
            answer.cancel()
            self.stats["abandoned"] += 1

    async def _whole(self, send: Send, request: dict[str, Any], words: list[str]) -> None:
        if self.answer_delay_s:
            await asyncio.sleep(self.answer_delay_s)
        await _json(
            send,
            200,
            {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": request.get("model", MODEL),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": " ".join(words)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": len(words), "total_tokens": 10 + len(words)},
            },
        )

    async def _stream(self, send: Send, request: dict[str, Any], words: list[str]) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
        )
        model = request.get("model", MODEL)
        for i, word in enumerate(words):
            if i == self.die_after:
                raise ConnectionResetError("the stub upstream dies mid-stream, as asked (--die-after-words)")
            if self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
            delta = {"content": (" " if i else "") + word}
            if i == 0:
                delta["role"] = "assistant"
            await _event(send, _chunk(model, delta, None))
        await _event(send, _chunk(model, {}, "stop"))
        if (request.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 10, "completion_tokens": len(words), "total_tokens": 10 + len(words)}
            await _event(send, {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "choices": [], "usage": usage})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


def _response(words: list[str]) -> dict[str, Any]:
    """A Responses API response object with the answer as one message item."""
    item = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": " ".join(words)}]}
    return {"id": "resp_stub", "object": "response", "model": MODEL, "status": "completed", "output": [item]}


async def _response_stream(send: Send, words: list[str]) -> None:
    """The Responses API's typed events: created, one text delta per word, completed."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    created = {"id": "resp_stub", "object": "response", "status": "in_progress", "output": []}
    await _typed_event(send, {"type": "response.created", "response": created})
    for i, word in enumerate(words):
        await _typed_event(send, {"type": "response.output_text.delta", "delta": (" " if i else "") + word})
    await _typed_event(send, {"type": "response.completed", "response": _response(words)})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _typed_event(send: Send, payload: dict[str, Any]) -> None:
    frame = f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()
    await send({"type": "http.response.body", "body": frame, "more_body": True})


def _message(words: list[str]) -> dict[str, Any]:
    """An Anthropic Messages API message with the answer as one text block."""
    return {"id": "msg_stub", "type": "message", "role": "assistant", "model": MODEL, "stop_reason": "end_turn",
            "content": [{"type": "text", "text": " ".join(words)}]}  # fmt: skip


async def _message_stream(send: Send, words: list[str]) -> None:
    """The Messages API's events: message_start, one text delta per word, message_delta (the stop), message_stop."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    await _typed_event(send, {"type": "message_start", "message": {**_message([]), "content": []}})
    for i, word in enumerate(words):
        delta = {"type": "text_delta", "text": (" " if i else "") + word}
        await _typed_event(send, {"type": "content_block_delta", "index": 0, "delta": delta})
    await _typed_event(send, {"type": "message_delta", "delta": {"stop_reason": "end_turn"}})
    await _typed_event(send, {"type": "message_stop"})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _chunk(model: str, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


async def _event(send: Send, payload: dict[str, Any]) -> None:
    await send({"type": "http.response.body", "body": b"data: " + json.dumps(payload).encode() + b"\n\n", "more_body": True})


async def _json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="fast local OpenAI-compatible stub upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0)
    parser.add_argument("--answer-delay-ms", type=float, default=0.0)
    parser.add_argument("--die-after-words", type=int, default=None, help="drop each stream after N words")
    args = parser.parse_args()
    app = StubUpstream(
        chunk_delay_s=args.chunk_delay_ms / 1000, answer_delay_s=args.answer_delay_ms / 1000,
        die_after=args.die_after_words,
    )  # fmt: skip
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
