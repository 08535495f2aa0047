"""Server-sent events, in two layers: a decoder that turns upstream bytes into complete typed events (and watches
the answer go by), and a thin framer for the frames memproxy writes itself.

Relaying complete events only (never a half event) keeps the client's parser whole even when the upstream dies in
the middle of a frame: the error frame we add then starts on a clean boundary.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

DONE_DATA = "[DONE]"
DONE_FRAME = b"data: [DONE]\n\n"
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


@dataclass(slots=True, frozen=True)
class SSEEvent:
    raw: bytes
    """The event as received, terminator included: what is relayed."""
    data: str | None
    """Its ``data:`` lines joined by newlines, or None for a comment / keep-alive."""


class SSEDecoder:
    """Incremental: ``feed`` any chunk, get back the events it completed."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer + chunk
        events: list[SSEEvent] = []
        start = 0
        for match in _EVENT_END.finditer(buffer):
            block = buffer[start : match.start()]
            events.append(SSEEvent(raw=buffer[start : match.end()], data=_data_of(block)))
            start = match.end()
        self._buffer = buffer[start:]
        return events

    @property
    def pending(self) -> bytes:
        """Bytes of an event not yet terminated."""
        return self._buffer


def _data_of(block: bytes) -> str | None:
    lines = []
    for line in block.decode("utf-8", "replace").splitlines():
        if line.startswith("data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(" ") else value)
    return "\n".join(lines) if lines else None


def frame_sse(payload: dict[str, Any]) -> bytes:
    """One ``data:`` frame of JSON."""
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


@dataclass(slots=True)
class StreamTranscript:
    """What went by in a chat completion stream: the assistant's text per choice, finish reasons, usage, errors."""

    contents: dict[int, list[str]] = field(default_factory=dict)
    finish_reasons: dict[int, str] = field(default_factory=dict)
    usage: dict[str, Any] | None = None
    upstream_error: dict[str, Any] | None = None
    completion_id: str | None = None
    done: bool = False

    def observe(self, data: str | None) -> None:
        if data is None:
            return
        if data == DONE_DATA:
            self.done = True
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            return
        if not isinstance(chunk, dict):
            return
        if self.completion_id is None and isinstance(chunk.get("id"), str):
            self.completion_id = chunk["id"]
        if isinstance(chunk.get("error"), dict):
            self.upstream_error = chunk["error"]
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                self.contents.setdefault(index, []).append(delta["content"])
            if choice.get("finish_reason"):
                self.finish_reasons[index] = choice["finish_reason"]

    def content(self, index: int = 0) -> str:
        return "".join(self.contents.get(index, ()))

    @property
    def complete(self) -> bool:
        """The upstream finished normally: ``[DONE]`` seen, no error frame."""
        return self.done and self.upstream_error is None

    @property
    def ending(self) -> bool:
        """From the first finish reason on, the answer is whole."""
        return bool(self.finish_reasons) or self.done

    @property
    def answer(self) -> str:
        return self.content(0)

    @property
    def answer_id(self) -> str | None:
        return self.completion_id
