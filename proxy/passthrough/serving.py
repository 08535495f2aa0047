"""The logic of every other ``/v1/*`` route: the request goes to the user's upstream replica as the client sent it,
and the upstream's answer (status, headers, body; an error too) comes back as it is, streamed as it arrives.

Only what a proxy must is changed: the client's key is replaced by the upstream's (as for chats, clients' keys are
never forwarded), hop-by-hop headers are dropped on both legs, and the host and body length are the proxy's to set.
The replica is the user's, picked as for chats: a trusted key's JSON ``user`` field or identity header, else the key's
own user. No memory: these routes carry no conversation to read or to remember (legacy ``/v1/completions`` sends a
bare prompt, embeddings and tokenizers no exchange at all).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import httpx

from proxy.auth import KeyRecord
from proxy.chat.streaming import DONE_FRAME, frame_sse
from proxy.identity import IdentityRules, resolve_identity
from proxy.upstream import UpstreamClient, translate_transport_error
from proxy.upstream_pool import UpstreamPool

logger = logging.getLogger(__name__)

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding",
     "upgrade"}
)  # fmt: skip
"""RFC 9110 §7.6.1: headers of one connection, never passed on (nor those the ``Connection`` header names)."""
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "authorization", "x-api-key", "x-request-id"}
"""Request headers the proxy sets itself toward the upstream: its host, the body's length, its key, the request id."""
NOT_RELAYED = HOP_BY_HOP | {"date", "server", "x-request-id"}
"""Response headers the proxy's own server sets (the request id is added by the proxy's middleware)."""


@dataclass(frozen=True, slots=True)
class ForwardedRequest:
    """A client's request as it arrived, for the upstream."""

    method: str
    path: str
    """Under the API's ``/v1`` (``completions``), decoded as routers give it; the upstream's base URL ends in /v1."""
    query: bytes
    """The raw query string, as sent (empty when there is none)."""
    headers: list[tuple[str, str]]
    """Every header as sent, names lower-case, repeated names kept."""
    body: bytes


@dataclass(frozen=True, slots=True)
class UpstreamAnswer:
    """The upstream's response: its status and end-to-end headers, and its body as it arrives (the upstream
    response is closed when the body ends, fails, or is dropped)."""

    status_code: int
    headers: list[tuple[str, str]]
    body: AsyncIterator[bytes]


class PassthroughService:
    def __init__(self, upstreams: UpstreamPool, *, identity_rules: IdentityRules) -> None:
        self._upstreams = upstreams
        self._rules = identity_rules

    async def forward(self, request: ForwardedRequest, key: KeyRecord) -> UpstreamAnswer:
        """Send ``request`` to the user's replica and return once the upstream's response headers arrive. Raises
        ``UpstreamUnreachable`` / ``UpstreamTimeout`` when there is no answer, ``InvalidRequestError`` for a
        malformed user id (as a chat would); any answer the upstream gives, an error status too, is returned."""
        identity = resolve_identity(key, _body_user(request), dict(request.headers), self._rules)
        upstream = self._upstreams.for_key(f"{identity.tenant}\x00{identity.user}")
        opened: list[httpx.Response] = []
        body = _relay(upstream, request, opened)
        # Run up to the upstream's response headers now (a refused connection raises here, before any status is
        # sent); the body generator, once started, closes the upstream response however it ends.
        await anext(body)
        response = opened[0]
        return UpstreamAnswer(response.status_code, end_to_end(response.headers.multi_items(), NOT_RELAYED), body)


async def _relay(
    upstream: UpstreamClient, request: ForwardedRequest, opened: list[httpx.Response]
) -> AsyncIterator[bytes]:
    """``b""`` once the response's headers are in (the response is left in ``opened``), then its raw bytes, one
    upstream chunk per item. A failure mid-body ends an event stream with one error frame and ``[DONE]``; any other
    body just ends short (its declared length, or the chunked framing, tells the client)."""
    headers = end_to_end(request.headers, NOT_FORWARDED)
    if not any(name == "accept-encoding" for name, _ in headers):
        headers.append(("accept-encoding", "identity"))  # a client that names none gets none (httpx would ask gzip)
    sent = upstream.exchange(request.method, request.path, query=request.query, headers=headers, content=request.body)
    async with sent as response:
        opened.append(response)
        yield b""
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        except httpx.TransportError as exc:
            error = translate_transport_error(exc, during="stream")
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                yield frame_sse(error.to_body()) + DONE_FRAME


def end_to_end(headers: Iterable[tuple[str, str]], drop: frozenset[str]) -> list[tuple[str, str]]:
    """``headers`` without those in ``drop`` and those the ``Connection`` header names (names compared lower-case)."""
    headers = [(name.lower(), value) for name, value in headers]
    named = {token.strip().lower() for name, value in headers if name == "connection" for token in value.split(",")}
    return [(name, value) for name, value in headers if name not in drop and name not in named]


def _body_user(request: ForwardedRequest) -> str | None:
    """A JSON body's ``user`` field, the end user as OpenAI requests name it; None for any other body."""
    content_type = next((value for name, value in request.headers if name == "content-type"), "")
    if "json" not in content_type or not request.body:
        return None
    try:
        payload = json.loads(request.body)
    except (ValueError, RecursionError):
        return None  # the upstream answers a malformed body itself
    user = payload.get("user") if isinstance(payload, dict) else None
    return user if isinstance(user, str) else None
