"""OpenAI's Responses API (``POST /v1/responses``) as a :class:`~proxy.chat.dialect.Dialect`.

The view: ``instructions`` as a leading system message, then ``input`` (a string is one user message; a list gives
one entry per item: a message item as itself, with ``input_text`` / ``output_text`` parts read as text parts; any
other item, a function call, its output, a reasoning item, as an empty ``tool`` entry that memory leaves alone).
Memory's core block goes into ``instructions`` (appended, or as the whole of it when the client sent none), a
recalled block before the newest user message's text. ``previous_response_id``, ``tools``, ``store``, reasoning and
every other field reach the upstream as sent.

A stream's events pass as they come; the answer is whole at ``response.completed`` or ``response.incomplete`` (cut
at ``max_output_tokens``, as a chat's ``length`` finish: remembered as answered), held until the exchange is queued;
a ``response.failed`` or ``error`` event ends it unremembered.
"""

from __future__ import annotations

import json
from typing import Any

from proxy.chat.dialect import EventTranscript, Message, RequestFields, changed_entries, json_object, validated
from proxy.errors import ProxyError
from proxy.responses.protocol import ResponsesRequest

MESSAGE_ROLES = ("system", "developer", "user", "assistant")
_TEXT_PARTS = ("input_text", "output_text", "text")
TERMINAL = {"response.completed", "response.failed", "response.incomplete", "error"}
ANSWERED = ("completed", "incomplete")


class ResponsesDialect:
    name = "responses"
    path = "/responses"
    prefills = False

    def parse(self, raw: bytes) -> tuple[dict[str, Any], RequestFields]:
        payload, request = validated(raw, ResponsesRequest)
        return payload, RequestFields(request.model, request.stream, request.user or request.safety_identifier)

    def view(self, payload: dict[str, Any]) -> list[Message]:
        entries: list[Message] = []
        if isinstance(payload.get("instructions"), str):
            entries.append({"role": "system", "content": payload["instructions"]})
        items = payload.get("input")
        if isinstance(items, str):
            return [*entries, {"role": "user", "content": items}]
        for item in items or ():
            entries.append(_entry(item))
        return entries

    def with_memory(self, payload: dict[str, Any], view: list[Message], laid_out: list[Message]) -> dict[str, Any]:
        inserted, changed = changed_entries(view, laid_out)
        result = dict(payload)
        has_instructions = isinstance(payload.get("instructions"), str)
        if inserted is not None:
            result["instructions"] = inserted["content"]
        items = list(payload["input"]) if isinstance(payload.get("input"), list) else None
        for index, entry in changed:
            if has_instructions and index == 0:
                result["instructions"] = entry["content"]
                continue
            at = index - has_instructions
            if items is None:
                result["input"] = entry["content"]
            else:
                items[at] = {**items[at], "content": _content_back(entry["content"], items[at])}
        if items is not None:
            result["input"] = items
        return result

    def read_answer(self, content: bytes) -> tuple[str, str | None] | None:
        data = json_object(content)
        if data is None or data.get("status") not in (None, *ANSWERED):
            return None
        answer = output_text(data.get("output"))
        return (answer, data.get("id") if isinstance(data.get("id"), str) else None) if answer is not None else None

    def transcript(self) -> ResponsesTranscript:
        return ResponsesTranscript()

    def error_frames(self, error: ProxyError) -> bytes:
        event = {"type": "error", "code": error.code, "message": error.message, "param": error.param}
        return b"event: error\ndata: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"


class ResponsesTranscript(EventTranscript):
    def __init__(self) -> None:
        super().__init__()
        self._final: str | None = None

    def observe(self, data: str | None) -> None:
        event = json_object(data)
        if event is None:
            return
        kind = event.get("type")
        response = event.get("response")
        if isinstance(response, dict) and isinstance(response.get("id"), str):
            self._id = response["id"]
        if kind == "response.output_text.delta" and isinstance(event.get("delta"), str):
            self._texts.append(event["delta"])
        if kind in ("response.completed", "response.incomplete") and isinstance(response, dict):
            self._final = output_text(response.get("output"))
        if kind in TERMINAL:
            self._last = kind

    @property
    def ending(self) -> bool:
        return self._last is not None

    @property
    def complete(self) -> bool:
        return self._last in ("response.completed", "response.incomplete")

    @property
    def answer(self) -> str:
        return self._final if self._final is not None else super().answer


def output_text(output: Any) -> str | None:
    """The text of a response's message items (what the SDK's ``output_text`` joins); None if not a list."""
    if not isinstance(output, list):
        return None
    texts = []
    for item in output:
        if isinstance(item, dict) and item.get("type") == "message" and isinstance(item.get("content"), list):
            texts.extend(
                part["text"] for part in item["content"]
                if isinstance(part, dict) and part.get("type") == "output_text" and isinstance(part.get("text"), str)
            )  # fmt: skip
    return "".join(texts)


def _entry(item: Any) -> Message:
    if not isinstance(item, dict) or item.get("role") not in MESSAGE_ROLES or item.get("type", "message") != "message":
        return {"role": "tool", "content": ""}
    content = item.get("content")
    if isinstance(content, list):
        content = [
            {"type": "text", "text": part["text"]}
            if isinstance(part, dict) and part.get("type") in _TEXT_PARTS and isinstance(part.get("text"), str)
            else part
            for part in content
        ]
    return {"role": item["role"], "content": content}


def _content_back(content: Any, item: dict[str, Any]) -> Any:
    """A laid-out entry's content in the item's own part types."""
    if not isinstance(content, list):
        return content
    kind = "output_text" if item.get("role") == "assistant" else "input_text"
    original = item.get("content") if isinstance(item.get("content"), list) else []
    back = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "text":
            same = next((p for p in original if isinstance(p, dict) and p.get("text") == part["text"]), None)
            back.append(same if same is not None else {"type": kind, "text": part["text"]})
        else:
            back.append(part)
    return back


RESPONSES = ResponsesDialect()
