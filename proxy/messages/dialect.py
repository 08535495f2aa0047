"""Anthropic's Messages API (``POST /v1/messages``) as a :class:`~proxy.chat.dialect.Dialect`.

The view: ``system`` as a leading system message, then each message as itself (Anthropic's ``{"type": "text"}``
blocks are chat's text parts; images, ``tool_use`` and ``thinking`` blocks stay as they are). A user message that
carries ``tool_result`` blocks is a ``tool`` entry that memory leaves alone (those blocks must come first). Memory's
core block goes into ``system``, a recalled block before the newest user message's text.

A stream's events pass as they come; the answer is whole at the ``message_delta`` that gives its stop reason (held,
with ``message_stop``, until the exchange is queued); an ``error`` event ends it unremembered. Errors are in
Anthropic's shape (:func:`proxy.errors.anthropic_error_body`).
"""

from __future__ import annotations

import json
from typing import Any

from proxy.chat.dialect import EventTranscript, Message, RequestFields, changed_entries, json_object, validated
from proxy.errors import ProxyError, anthropic_error_body
from proxy.messages.protocol import MessagesRequest


class MessagesDialect:
    name = "messages"
    path = "/messages"
    prefills = False

    def parse(self, raw: bytes) -> tuple[dict[str, Any], RequestFields]:
        payload, request = validated(raw, MessagesRequest)
        user = request.metadata.user_id if request.metadata is not None else None
        return payload, RequestFields(request.model, request.stream, user)

    def view(self, payload: dict[str, Any]) -> list[Message]:
        entries: list[Message] = []
        if isinstance(payload.get("system"), (str, list)):
            entries.append({"role": "system", "content": payload["system"]})
        for message in payload["messages"]:
            content = message.get("content")
            tool_results = isinstance(content, list) and any(
                isinstance(block, dict) and block.get("type") == "tool_result" for block in content
            )
            entries.append({"role": "tool" if tool_results else message["role"], "content": content})
        return entries

    def with_memory(self, payload: dict[str, Any], view: list[Message], laid_out: list[Message]) -> dict[str, Any]:
        inserted, changed = changed_entries(view, laid_out)
        result = dict(payload)
        has_system = isinstance(payload.get("system"), (str, list))
        if inserted is not None:
            result["system"] = inserted["content"]
        messages = list(payload["messages"])
        for index, entry in changed:
            if has_system and index == 0:
                result["system"] = entry["content"]
            else:
                at = index - has_system
                messages[at] = {**messages[at], "content": entry["content"]}
        result["messages"] = messages
        return result

    def read_answer(self, content: bytes) -> tuple[str, str | None] | None:
        data = json_object(content)
        if data is None or data.get("type") != "message" or not isinstance(data.get("content"), list):
            return None
        answer = "".join(
            block["text"] for block in data["content"]
            if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
        )  # fmt: skip
        return answer, data.get("id") if isinstance(data.get("id"), str) else None

    def transcript(self) -> MessagesTranscript:
        return MessagesTranscript()

    def error_frames(self, error: ProxyError) -> bytes:
        return b"event: error\ndata: " + json.dumps(anthropic_error_body(error), ensure_ascii=False).encode() + b"\n\n"


class MessagesTranscript(EventTranscript):
    def __init__(self) -> None:
        super().__init__()
        self._stopped = False

    def observe(self, data: str | None) -> None:
        event = json_object(data)
        if event is None:
            return
        kind = event.get("type")
        if kind == "message_start" and isinstance(event.get("message"), dict):
            self._id = event["message"].get("id") if isinstance(event["message"].get("id"), str) else None
        delta = event.get("delta") if isinstance(event.get("delta"), dict) else {}
        if kind == "content_block_delta" and delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
            self._texts.append(delta["text"])
        if kind == "message_delta" and delta.get("stop_reason"):
            self._stopped = True
        if kind in ("message_stop", "error"):
            self._last = kind

    @property
    def ending(self) -> bool:
        return self._stopped or self._last is not None

    @property
    def complete(self) -> bool:
        return self._last == "message_stop"


MESSAGES = MessagesDialect()
