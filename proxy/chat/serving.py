"""The logic of ``POST /v1/chat/completions`` (and of ``/v1/responses`` and ``/v1/messages``, the same steps in
their dialects, see :mod:`proxy.chat.dialect`): validate, fill in defaults, lay out memory, forward, relay.

The body is forwarded as the client sent it (same keys and values; only ``model`` is filled in when missing),
so fields memproxy does not know (``tools``, ``response_format``, vendor extensions) reach the upstream unchanged.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from adapters.registry import is_foreign_adapter
from adapters.routing import AdapterRouter, RoutedModel
from proxy.auth import KeyRecord
from proxy.chat.dialect import CHAT_COMPLETIONS, Dialect, Transcript
from proxy.chat.memory import ChatMemory, PreparedChat
from proxy.chat.memory_controls import read_controls
from proxy.chat.prefill import ForwardedChat, NextTurnPrefill
from proxy.chat.streaming import SSEDecoder
from proxy.errors import (
    NotFoundError,
    PermissionDeniedError,
    ProxyError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamUnreachable,
)
from proxy.identity import IdentityRules, cache_salt, resolve_identity
from proxy.metrics import Metrics
from proxy.upstream import UpstreamClient, encode_body, translate_transport_error
from proxy.upstream_pool import Replica, UpstreamPool, is_failover_safe

logger = logging.getLogger(__name__)

FAILOVER_ATTEMPTS = 2
R = TypeVar("R")


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
    transcript: Transcript
    headers: dict[str, str] = field(default_factory=dict)


class ChatCompletionsService:
    def __init__(
        self,
        upstreams: UpstreamPool,
        *,
        default_model: str,
        memory: ChatMemory,
        prefill: NextTurnPrefill,
        identity_rules: IdentityRules,
        metrics: Metrics,
        cache_salt_secret: bytes | None = None,
        adapters: AdapterRouter | None = None,
    ) -> None:
        """``cache_salt_secret`` None: no ``cache_salt`` is added (the upstream's prefix cache is shared).
        ``adapters`` None: per-user LoRA adapters are off (every chat goes to the model it names)."""
        self._upstreams = upstreams
        self._default_model = default_model
        self._memory = memory
        self.prefill = prefill
        self._rules = identity_rules
        self._metrics = metrics
        self._salt_secret = cache_salt_secret
        self._adapters = adapters

    async def create(
        self, raw_body: bytes, key: KeyRecord, headers: Mapping[str, str], dialect: Dialect = CHAT_COMPLETIONS
    ) -> ChatCompletion | ChatCompletionStream:
        started = time.perf_counter()
        payload, request = dialect.parse(raw_body)
        identity = resolve_identity(key, request.user, headers, self._rules)
        controls = read_controls(headers, payload)
        if controls.timestamp is not None and not (key.trusted or key.admin):
            raise PermissionDeniedError(
                "Only a trusted or admin key may say when an exchange happened (X-Memproxy-Timestamp).",
                param="X-Memproxy-Timestamp",
            )
        self._metrics.phase("identity", time.perf_counter() - started)
        if not request.model:
            payload["model"] = self._default_model
        if isinstance(payload["model"], str) and is_foreign_adapter(payload["model"], identity.scope):
            # Another user's adapter (its name is derivable): answered like any model that does not exist.
            raise NotFoundError(
                f"The model '{payload['model']}' does not exist.", param="model", code="model_not_found"
            )
        routed = await self._adapters.model_for(identity.scope, payload["model"]) if self._adapters else None
        if routed is not None:
            payload["model"] = routed.model
        if self._salt_secret is not None:
            salt = cache_salt(self._salt_secret, identity)
            # A client's own salt narrows sharing further but can never select another tenant's cache.
            client_salt = payload.get("cache_salt")
            payload["cache_salt"] = f"{salt}:{client_salt}" if isinstance(client_salt, str) and client_salt else salt
        client_messages = dialect.view(payload)
        prepared = await self._memory.prepare(identity, client_messages, controls)
        self._metrics.prepared(prepared)
        forwarded = dialect.with_memory(payload, client_messages, prepared.messages)
        replicas = self._upstreams.ranked(f"{identity.tenant}\x00{identity.user}")

        exchange = ForwardedChat(identity, client_messages, prepared, forwarded, replicas[0].client)
        answered = functools.partial(self._after_answer, exchange, dialect)

        if not request.stream:
            response = await self._send_fitted(
                exchange, payload, routed, replicas, lambda upstream, body: upstream.post_json(dialect.path, body)
            )
            self._metrics.phase("upstream_ttfb", time.perf_counter() - started)
            read = dialect.read_answer(response.content)
            if read is None:
                logger.warning("upstream answer has no readable message; not remembered")
            else:
                await answered(*read)
            media_type = response.headers.get("content-type", "application/json")
            return ChatCompletion(response.content, media_type, _headers(prepared, routed))
        transcript = dialect.transcript()

        async def open_stream(upstream: UpstreamClient, body: bytes) -> AsyncIterator[bytes]:
            events = self._relay(upstream, dialect, body, transcript, answered, started)
            # Run up to the upstream's response headers now: a refused connection or a 4xx becomes a proper HTTP
            # error instead of a 200 stream that carries one.
            await anext(events)
            return events

        events = await self._send_fitted(exchange, payload, routed, replicas, open_stream)
        return ChatCompletionStream(events, transcript, _headers(prepared, routed))

    async def _send_fitted(
        self,
        exchange: ForwardedChat,
        plain: dict[str, Any],
        routed: RoutedModel | None,
        replicas: list[Replica],
        attempt: Callable[[UpstreamClient, bytes], Awaitable[R]],
    ) -> R:
        """``_send_routed`` with the prepared chat. If the upstream refuses it as longer than the model's context
        and memory made it longer, it is sent again as the client sent it, with memory degraded
        (``context-overflow``): memory never turns a chat that fits into one that fails. (A prompt that does not
        fit even so gets the upstream's own error.) ``plain``: the body without memory (model and salt set)."""
        payload = exchange.forwarded
        try:
            return await self._send_routed(replicas, routed, payload, attempt)
        except UpstreamStatusError as exc:
            if not exc.exceeds_context or exchange.prepared.messages == exchange.messages:
                raise
        self._memory.withdraw(exchange.identity, exchange.prepared, exchange.messages, "context-overflow")
        self._metrics.count_degraded(exchange.prepared)
        payload.clear()
        payload.update(plain)  # the body without memory
        return await self._send_routed(replicas, routed, payload, attempt)

    async def _send_routed(
        self,
        replicas: list[Replica],
        routed: RoutedModel | None,
        payload: dict[str, Any],
        attempt: Callable[[UpstreamClient, bytes], Awaitable[R]],
    ) -> R:
        """``_send`` with ``payload`` as the body. If vLLM says the user's adapter does not exist (404: it restarted
        and lost it), the adapter is loaded again (or the base model taken) and the request retried once."""
        body = encode_body(payload)
        try:
            return await self._send(replicas, lambda upstream: attempt(upstream, body))
        except UpstreamStatusError as exc:
            if self._adapters is None or routed is None or routed.adapter is None or exc.upstream_status != 404:
                raise
        payload["model"] = (await self._adapters.after_model_missing(routed)).model
        retry = encode_body(payload)
        return await self._send(replicas, lambda upstream: attempt(upstream, retry))

    async def _send(self, replicas: list[Replica], attempt: Callable[[UpstreamClient], Awaitable[R]]) -> R:
        """The user's replica first; if it refused the connection (so did no work), the next one, once."""
        for index, replica in enumerate(replicas[:FAILOVER_ATTEMPTS]):
            try:
                return await attempt(replica.client)
            except UpstreamError as exc:
                if not is_failover_safe(exc) or len(self._upstreams.replicas) == 1:
                    raise
                self._upstreams.mark_down(replica.client, exc.message)
                if index + 1 >= min(FAILOVER_ATTEMPTS, len(replicas)):
                    raise
                self._metrics.failover()
        raise AssertionError("unreachable")

    async def _after_answer(
        self, exchange: ForwardedChat, dialect: Dialect, answer: str, answer_id: str | None
    ) -> None:
        """A complete answer, before its last bytes leave: the exchange is queued durably (one small fsync'd
        commit; bounded, see ``ChatMemory.remember_exchange``), then the next turn's anticipated memories are
        prefilled in the background."""
        if exchange.prepared.remember:
            at = exchange.prepared.plan.at
            await self._memory.remember_exchange(exchange.identity, exchange.messages, answer, answer_id, at)
        if dialect.prefills:
            self.prefill.after_answer(exchange, answer)

    async def _relay(
        self,
        upstream: UpstreamClient,
        dialect: Dialect,
        body: bytes,
        transcript: Transcript,
        answered: Callable[[str, str | None], Awaitable[None]],
        started: float,
    ) -> AsyncIterator[bytes]:
        """The upstream's events as they come, except the answer's end: from the first finish reason on, the frames
        (usage, ``[DONE]``) are held until the exchange is queued, so a client never sees a whole answer that a
        crash could still lose. The first token's time does not change."""
        async with upstream.stream(dialect.path, body) as response:
            yield b""  # primed: the upstream accepted the request
            decoder = SSEDecoder()
            first = True
            ending: list[bytes] = []
            try:
                async for chunk in response.aiter_raw():
                    events = decoder.feed(chunk)
                    if not events:
                        continue
                    if first:
                        self._metrics.phase("upstream_ttfb", time.perf_counter() - started)
                        first = False
                    for event in events:
                        transcript.observe(event.data)
                    # One upstream chunk, one downstream write: the cadence the client sees is the upstream's.
                    raw = events[0].raw if len(events) == 1 else b"".join(event.raw for event in events)
                    if ending or transcript.ending:
                        ending.append(raw)
                    else:
                        yield raw
                if not transcript.done:
                    raise UpstreamUnreachable("The upstream model server ended the stream before it was complete.")
                if transcript.complete:
                    # Only a whole answer is remembered: a client that left mid-stream never gets here.
                    await answered(transcript.answer, transcript.answer_id)
                yield b"".join(ending)
            except httpx.TransportError as exc:
                error: ProxyError = translate_transport_error(exc, during="stream")
            except ProxyError as exc:
                error = exc
            else:
                return
            logger.warning("stream from upstream failed: %s", error.message)
            yield b"".join(ending) + dialect.error_frames(error)


def _headers(prepared: PreparedChat, routed: RoutedModel | None) -> dict[str, str]:
    return {**prepared.headers(), **routed.headers()} if routed is not None else prepared.headers()
