"""The logic of ``POST /v1/chat/completions``: validate, fill in defaults, forward, relay.

The body is forwarded as the client sent it (same keys and values; only ``model`` is filled in when missing),
so fields memproxy does not know (``tools``, ``response_format``, vendor extensions) reach the upstream unchanged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import ValidationError

from proxy.chat.memory_controls import read_controls
from proxy.chat.protocol import ChatCompletionRequest
from proxy.chat.streaming import DONE_FRAME, SSEDecoder, StreamTranscript, frame_sse
from proxy.errors import InvalidRequestError, ProxyError, UpstreamUnreachable, invalid_request_from_validation
from proxy.auth import KeyRecord
from proxy.identity import Identity, IdentityRules, cache_salt, resolve_identity
from proxy.memory_gateway import MemoryGateway, PreparedChat
from proxy.upstream import UpstreamClient, translate_transport_error

logger = logging.getLogger(__name__)

CHAT_PATH = "chat/completions"


@dataclass(slots=True, frozen=True)
class ChatCompletion:
    """A whole (non-streamed) answer, as the upstream's bytes."""

    content: bytes
    media_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ChatCompletionStream:
    """A streamed answer: SSE bytes to relay as they come, and the transcript filled in as they pass."""

    events: AsyncIterator[bytes]
    transcript: StreamTranscript
    headers: dict[str, str] = field(default_factory=dict)


def parse_chat_request(raw: bytes) -> tuple[dict[str, Any], ChatCompletionRequest]:
    """The body as sent (for forwarding) and as validated (for reading). Raises ``InvalidRequestError``."""
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise InvalidRequestError(f"The request body is not valid JSON{where}.") from None
    if not isinstance(payload, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    try:
        request = ChatCompletionRequest.model_validate(payload)
    except ValidationError as exc:
        raise invalid_request_from_validation(exc.errors(include_url=False, include_input=False), payload) from None
    return payload, request


class ChatCompletionsService:
    def __init__(
        self,
        upstream: UpstreamClient,
        *,
        default_model: str,
        memory: MemoryGateway,
        identity_rules: IdentityRules | None = None,
        cache_salt_secret: bytes | None = None,
    ) -> None:
        """``cache_salt_secret`` None: no ``cache_salt`` is added (the upstream's prefix cache is shared)."""
        self._upstream = upstream
        self._default_model = default_model
        self._memory = memory
        self._rules = identity_rules or IdentityRules()
        self._salt_secret = cache_salt_secret

    async def create(
        self, raw_body: bytes, key: KeyRecord, headers: Mapping[str, str]
    ) -> ChatCompletion | ChatCompletionStream:
        payload, request = parse_chat_request(raw_body)
        identity = resolve_identity(key, request.user, headers, self._rules)
        controls = read_controls(headers, payload)
        if not request.model:
            payload["model"] = self._default_model
        client_messages = payload["messages"]
        prepared = await self._memory.prepare(identity, client_messages, controls)
        payload["messages"] = prepared.messages
        if self._salt_secret is not None:
            salt = cache_salt(self._salt_secret, identity)
            # A client's own salt narrows sharing further but can never select another tenant's cache.
            client_salt = payload.get("cache_salt")
            payload["cache_salt"] = f"{salt}:{client_salt}" if isinstance(client_salt, str) and client_salt else salt
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        if not request.stream:
            response = await self._upstream.post_json(CHAT_PATH, body)
            if prepared.remember:
                self._remember_answer(identity, client_messages, response.content)
            media_type = response.headers.get("content-type", "application/json")
            return ChatCompletion(response.content, media_type, prepared.headers())
        transcript = StreamTranscript()
        events = self._relay(body, transcript, identity, client_messages, prepared)
        # Run up to the upstream's response headers now: a refused connection or a 4xx becomes a proper HTTP error
        # instead of a 200 stream that carries one.
        await anext(events)
        return ChatCompletionStream(events, transcript, prepared.headers())

    def _remember_answer(self, identity: Identity, messages: list[dict[str, Any]], content: bytes) -> None:
        try:
            data = json.loads(content)
            answer = data["choices"][0]["message"].get("content") or ""
            answer_id = data.get("id")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            logger.warning("upstream answer has no readable message; not remembered")
            return
        if isinstance(answer, str):
            self._memory.remember_exchange(identity, messages, answer, answer_id if isinstance(answer_id, str) else None)

    async def _relay(
        self,
        body: bytes,
        transcript: StreamTranscript,
        identity: Identity,
        messages: list[dict[str, Any]],
        prepared: PreparedChat,
    ) -> AsyncIterator[bytes]:
        async with self._upstream.stream(CHAT_PATH, body) as response:
            yield b""  # primed: the upstream accepted the request
            decoder = SSEDecoder()
            try:
                async for chunk in response.aiter_raw():
                    events = decoder.feed(chunk)
                    if not events:
                        continue
                    for event in events:
                        transcript.observe(event.data)
                    # One upstream chunk, one downstream write: the cadence the client sees is the upstream's.
                    yield events[0].raw if len(events) == 1 else b"".join(event.raw for event in events)
                if not transcript.done:
                    raise UpstreamUnreachable("The upstream model server ended the stream before it was complete.")
                if prepared.remember and transcript.complete:
                    # Only a whole answer is remembered: a client that left mid-stream never gets here.
                    self._memory.remember_exchange(identity, messages, transcript.content(0), transcript.completion_id)
            except httpx.TransportError as exc:
                error: ProxyError = translate_transport_error(exc, during="stream")
            except ProxyError as exc:
                error = exc
            else:
                return
            logger.warning("stream from upstream failed: %s", error.message)
            yield frame_sse(error.to_body()) + DONE_FRAME
