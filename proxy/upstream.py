"""The connection to the OpenAI-compatible upstream (vLLM): one shared, injected ``httpx.AsyncClient``.

Transport failures are translated here, once, into :mod:`proxy.errors`: refused / reset -> ``UpstreamUnreachable``
(502), no bytes in time -> ``UpstreamTimeout`` (504), an error status -> ``UpstreamStatusError``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import anyio
import httpx

from proxy.errors import UpstreamError, UpstreamStatusError, UpstreamTimeout, UpstreamUnreachable
from proxy.observability import REQUEST_ID_HEADER, current_request_id
from proxy.settings import UpstreamSettings

logger = logging.getLogger(__name__)

JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}
SSE_HEADERS = {"content-type": "application/json", "accept": "text/event-stream"}


URL_PATH_SAFE = "/:@!$&'()*+,;=-._~"
"""What a URL path keeps as it is (RFC 3986 ``pchar`` and ``/``); the rest is percent-encoded."""
CHAT_PATH = "chat/completions"
TOKENIZE_PATH = "tokenize"


@dataclass(frozen=True, slots=True)
class TokenCount:
    count: int
    """The rendered prompt's length in tokens."""
    limit: int | None = None
    """The model's context length, if the upstream says (vLLM's ``max_model_len``)."""


def build_http_client(settings: UpstreamSettings) -> httpx.AsyncClient:
    """The pooled client the app factory shares between all requests (tests inject their own)."""
    timeout = httpx.Timeout(
        connect=settings.connect_timeout_s,
        read=settings.read_timeout_s,
        write=settings.write_timeout_s,
        pool=settings.pool_timeout_s,
    )
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_connections,
        keepalive_expiry=KEEPALIVE_EXPIRY_S,
    )
    return httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False)


KEEPALIVE_EXPIRY_S = 4.0
"""An idle upstream connection is dropped after this, before the upstream closes it: uvicorn (vLLM's server)
closes one idle for 5 s, httpx would keep it 5 s too, and a request sent on a connection the server is closing
at that instant fails as "server disconnected" without an answer (a 502 for the chat)."""


def encode_body(body: Mapping[str, Any]) -> bytes:
    """A body as sent upstream: compact JSON, UTF-8 as is."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def translate_transport_error(exc: httpx.TransportError, *, during: str) -> UpstreamError:
    """Map an httpx failure to the error a client sees. Details (host, errno) go to the log only."""
    logger.warning("upstream %s failed: %s: %s", during, type(exc).__name__, exc)
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"The upstream model server did not respond in time ({during}).")
    return UpstreamUnreachable(f"The upstream model server is unreachable ({during}).")


class UpstreamClient:
    """Talks to one OpenAI-compatible base URL (``…/v1``). Holds no per-request state."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, *, api_key: str | None = None) -> None:
        self._http = http
        self.base_url = base_url.rstrip("/")
        self._auth = {"authorization": f"Bearer {api_key}"} if api_key else {}

    async def post_json(self, path: str, body: bytes, *, at_root: bool = False) -> httpx.Response:
        """POST a JSON body and read the whole answer; an error status raises ``UpstreamStatusError``. ``at_root``:
        ``path`` is on the server's root, not under the API's ``/v1`` (vLLM's ``/tokenize``)."""
        url = f"{self.base_url.removesuffix('/v1')}/{path.lstrip('/')}" if at_root else self._url(path)
        try:
            response = await self._http.post(url, content=body, headers=self._headers(JSON_HEADERS))
        except httpx.TransportError as exc:
            raise translate_transport_error(exc, during="request") from exc
        if response.status_code >= 400:
            raise UpstreamStatusError.from_response(response.status_code, response.content)
        return response

    @asynccontextmanager
    async def stream(self, path: str, body: bytes) -> AsyncIterator[httpx.Response]:
        """POST and yield the response once its headers arrive, body unread. Always closes the connection's use.

        An error status is read and raised as ``UpstreamStatusError`` before anything is yielded, so the caller
        can still answer with a proper HTTP status instead of a stream.
        """
        request = self._http.build_request("POST", self._url(path), content=body, headers=self._headers(SSE_HEADERS))
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise translate_transport_error(exc, during="request") from exc
        try:
            if response.status_code >= 400:
                try:
                    content = await response.aread()
                except httpx.TransportError as exc:
                    raise translate_transport_error(exc, during="error body") from exc
                raise UpstreamStatusError.from_response(response.status_code, content)
            yield response
        finally:
            # Shielded: when the client went away we are inside a cancelled scope, and closing is exactly what
            # tells the upstream to stop generating.
            with anyio.CancelScope(shield=True):
                await response.aclose()

    @asynccontextmanager
    async def exchange(
        self, method: str, path: str, *, query: bytes, headers: list[tuple[str, str]], content: bytes
    ) -> AsyncIterator[httpx.Response]:
        """Send a request as the caller built it (its ``headers`` plus the upstream's key and the request id) and
        yield the response once its headers arrive, whatever its status, body unread. Always closes it. ``path`` is
        decoded (a ``?`` or ``%`` in it is part of the path); ``query`` is raw, as it was sent."""
        url = httpx.URL(self._url(quote(path, safe=URL_PATH_SAFE)))
        if query:
            url = url.copy_with(query=query)
        sent = [*headers, *self._headers({}).items()]
        request = self._http.build_request(method, url, content=content, headers=sent)
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise translate_transport_error(exc, during="request") from exc
        try:
            yield response
        finally:
            with anyio.CancelScope(shield=True):  # as in ``stream``: closing is what stops the upstream's work
                await response.aclose()

    async def count_tokens(self, body: bytes) -> TokenCount:
        """The prompt a chat-shaped ``body`` renders, counted by the upstream's tokenizer (vLLM's ``/tokenize``).
        An upstream that cannot count raises ``UpstreamError`` (no such route) or ValueError (another answer)."""
        answer = (await self.post_json(TOKENIZE_PATH, body, at_root=True)).json()
        try:
            limit = answer.get("max_model_len")
            return TokenCount(int(answer["count"]), limit if isinstance(limit, int) else None)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a token count: {type(exc).__name__}") from None

    async def get(self, path: str, *, timeout: float | None = None) -> httpx.Response:
        kwargs = {"timeout": timeout} if timeout is not None else {}
        try:
            response = await self._http.get(self._url(path), headers=self._headers({}), **kwargs)
        except httpx.TransportError as exc:
            raise translate_transport_error(exc, during="request") from exc
        if response.status_code >= 400:
            raise UpstreamStatusError.from_response(response.status_code, response.content)
        return response

    def _headers(self, base: dict[str, str]) -> dict[str, str]:
        rid = current_request_id()
        return base | self._auth | ({REQUEST_ID_HEADER: rid} if rid else {})

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"
