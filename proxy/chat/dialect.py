"""The APIs a conversation arrives in, each a :class:`Dialect`: OpenAI's chat completions (here), OpenAI's Responses
(:mod:`proxy.responses.dialect`) and Anthropic's Messages (:mod:`proxy.messages.dialect`).

Memory reads and lays out a conversation in one shape, chat messages (``{"role", "content"}``, content a string or
a list of ``{"type": "text", "text"}`` parts). A dialect shows its request as such a list (a *view*: one entry per
system prompt, message or input item, in order) and writes the laid-out list back into its own request, touching
only the entries memory changed (the core block on the leading system entry, recalled blocks on user messages):
everything else the client sent (tools, reasoning items, images, vendor fields) is forwarded as sent. It reads the
answer out of the upstream's reply, whole or streamed, and says in its own shape what went wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from proxy.chat.protocol import ChatCompletionRequest
from proxy.chat.streaming import DONE_FRAME, StreamTranscript, frame_sse
from proxy.errors import InvalidRequestError, ProxyError, invalid_request_from_validation
from proxy.upstream import CHAT_PATH

Message = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RequestFields:
    """What the proxy reads from any dialect's request."""

    model: str | None
    stream: bool
    user: str | None


class Transcript(Protocol):
    """What went by in a streamed answer."""

    def observe(self, data: str | None) -> None:
        """One event's ``data``."""

    @property
    def ending(self) -> bool:
        """The answer is whole from here on: later frames are held until the exchange is queued."""

    @property
    def done(self) -> bool:
        """The stream's last event was seen."""

    @property
    def complete(self) -> bool:
        """Done, and without an error: the answer is remembered."""

    @property
    def answer(self) -> str: ...

    @property
    def answer_id(self) -> str | None: ...


class Dialect(Protocol):
    name: str
    path: str
    """The upstream path, under its ``/v1``."""
    prefills: bool
    """The next turn's anticipated memories are prefilled (the prefill renders chat messages as chat completions do)."""

    def parse(self, raw: bytes) -> tuple[dict[str, Any], RequestFields]:
        """The body as sent (to forward) and what the proxy reads of it. Raises ``InvalidRequestError``."""

    def view(self, payload: dict[str, Any]) -> list[Message]:
        """The conversation as chat messages, one per entry of the request."""

    def with_memory(self, payload: dict[str, Any], view: list[Message], laid_out: list[Message]) -> dict[str, Any]:
        """A new body: ``payload`` (which is not modified) with ``laid_out`` (``view`` with memory laid out in it)
        written back into its entries."""

    def read_answer(self, content: bytes) -> tuple[str, str | None] | None:
        """The answer's text and id from a whole reply; None if it has none."""

    def transcript(self) -> Transcript: ...

    def error_frames(self, error: ProxyError) -> bytes:
        """What ends a stream that failed."""


def load_json_object(raw: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except RecursionError:
        raise InvalidRequestError("The request body is nested too deeply.", code="nested_too_deeply") from None
    except ValueError as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise InvalidRequestError(f"The request body is not valid JSON{where}.") from None
    if not isinstance(payload, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    return payload


M = TypeVar("M", bound=BaseModel)


def validated(raw: bytes, model: type[M]) -> tuple[dict[str, Any], M]:
    """The body as sent and as ``model`` reads it. Raises ``InvalidRequestError``."""
    payload = load_json_object(raw)
    try:
        return payload, model.model_validate(payload)
    except ValidationError as exc:
        raise invalid_request_from_validation(exc.errors(include_url=False, include_input=False), payload) from None


def json_object(data: str | bytes | None) -> dict[str, Any] | None:
    """A body, or a stream event's ``data``, as a JSON object; None for anything else (a keep-alive, ``[DONE]``)."""
    if data is None:
        return None
    try:
        event = json.loads(data)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


class EventTranscript:
    """What the typed-event streams (Responses, Messages) share: the answer's id and text, and the last event that
    ended the stream (None while it runs)."""

    def __init__(self) -> None:
        self._texts: list[str] = []
        self._id: str | None = None
        self._last: str | None = None

    @property
    def done(self) -> bool:
        return self._last is not None

    @property
    def answer(self) -> str:
        return "".join(self._texts)

    @property
    def answer_id(self) -> str | None:
        return self._id


def changed_entries(view: list[Message], laid_out: list[Message]) -> tuple[Message | None, list[tuple[int, Message]]]:
    """How ``laid_out`` differs from ``view``: a system message memory inserted in first place (or None), and the
    entries it changed, by their index in ``view``."""
    inserted = laid_out[0] if len(laid_out) == len(view) + 1 else None
    body = laid_out[1:] if inserted is not None else laid_out
    return inserted, [(i, new) for i, (old, new) in enumerate(zip(view, body, strict=True)) if new != old]


class ChatCompletionsDialect:
    name = "chat.completions"
    path = CHAT_PATH
    prefills = True

    def parse(self, raw: bytes) -> tuple[dict[str, Any], RequestFields]:
        payload, request = validated(raw, ChatCompletionRequest)
        return payload, RequestFields(request.model, request.stream, request.user)

    def view(self, payload: dict[str, Any]) -> list[Message]:
        return payload["messages"]  # type: ignore[no-any-return]

    def with_memory(self, payload: dict[str, Any], view: list[Message], laid_out: list[Message]) -> dict[str, Any]:
        return {**payload, "messages": laid_out}

    def read_answer(self, content: bytes) -> tuple[str, str | None] | None:
        try:
            data = json.loads(content)
            answer = data["choices"][0]["message"].get("content") or ""
            answer_id = data.get("id")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return None
        if not isinstance(answer, str):
            return None
        return answer, answer_id if isinstance(answer_id, str) else None

    def transcript(self) -> StreamTranscript:
        return StreamTranscript()

    def error_frames(self, error: ProxyError) -> bytes:
        return frame_sse(error.to_body()) + DONE_FRAME


CHAT_COMPLETIONS = ChatCompletionsDialect()
