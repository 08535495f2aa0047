"""Request limits. The body's size (:class:`BodyLimitMiddleware`): a body over ``max_body_mb`` is refused 413
before it is read whole, whether its length is declared or not.

Per API key limits on the ``/v1`` routes: a request rate (a token bucket: ``requests_per_minute``, up to
``burst`` at once) and a number in flight (streams count until their last byte). Over either, the request is
answered 429 as OpenAI answers it, with ``Retry-After``, before any work is done, and counted in the metrics
(``memproxy_rate_limited_total{code}``). Off by default.

A key is told apart by the SHA-256 of its ``Authorization`` header (unknown keys too: they share nothing with a
real key, and a flood of them is limited like any other); requests without one (open dev mode) share one budget.
At most ``MAX_KEYS`` keys are tracked, the least recently seen dropped first."""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from proxy.errors import PayloadTooLargeError, RateLimitError, error_json
from proxy.metrics import Metrics
from proxy.settings import LimitSettings

MAX_KEYS = 65_536
LIMITED_PREFIXES = ("/v1/", "/mcp")


class KeyLimiter:
    def __init__(self, settings: LimitSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = settings.requests_per_minute / 60.0
        self.burst = float(settings.burst or max(1, math.ceil(settings.requests_per_minute)))
        self.max_concurrent = settings.max_concurrent
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._in_flight: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0 or self.max_concurrent > 0

    def admit(self, key: str) -> None:
        """Take one request of ``key`` in, or raise ``RateLimitError``. A request taken in is :meth:`done` later."""
        if self.max_concurrent and self._in_flight.get(key, 0) >= self.max_concurrent:
            raise RateLimitError(
                f"Too many requests in flight for this API key (at most {self.max_concurrent} at once).",
                retry_after_s=1.0, code="concurrency_limit_exceeded",
            )  # fmt: skip
        if self.rate > 0:
            self._take(key)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1

    def done(self, key: str) -> None:
        left = self._in_flight.get(key, 0) - 1
        if left > 0:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)

    def _take(self, key: str) -> None:
        now = self._clock()
        tokens, then = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
            raise RateLimitError(
                f"Rate limit reached for this API key: {self.rate * 60:g} requests per minute. "
                f"Try again in {wait:.1f} s.", retry_after_s=wait,
            )  # fmt: skip
        self._buckets[key] = (tokens - 1.0, now)
        while len(self._buckets) > MAX_KEYS:
            self._buckets.popitem(last=False)


class LimitsMiddleware:
    """Pure ASGI, so a stream keeps its slot until its last byte and passes through untouched."""

    def __init__(self, app: Any, limiter: KeyLimiter, metrics: Metrics) -> None:
        self.app = app
        self.limiter = limiter
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.limiter.enabled or not scope["path"].startswith(LIMITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        authorization = headers.get(b"authorization") or headers.get(b"x-api-key", b"")
        key = hashlib.sha256(authorization).hexdigest() if authorization else "open"
        try:
            self.limiter.admit(key)
        except RateLimitError as exc:
            self.metrics.rate_limited(str(exc.code))
            retry = str(max(1, math.ceil(exc.retry_after_s)))
            headers = [(b"content-type", b"application/json"), (b"retry-after", retry.encode())]
            await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
            await send({"type": "http.response.body", "body": error_json(exc, scope["path"])})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.limiter.done(key)


class BodyLimitMiddleware:
    """Pure ASGI. A declared ``Content-Length`` over the limit is answered at once; an undeclared body is counted
    as it arrives, and at the limit the 413 is sent and the app is told the client left (what it sends after is
    dropped)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, scope["path"])
            return
        state = {"received": 0, "refused": False, "started": False}

        async def counted_receive() -> dict[str, Any]:
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes and not state["started"]:
                    state["refused"] = True
                    await self._refuse(send, scope["path"])
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if state["refused"]:
                return
            state["started"] = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not state["refused"]:
                raise
            # The app, told the client left mid-body, gave up on it (Starlette's ClientDisconnect): answered already.

    async def _refuse(self, send: Any, path: str) -> None:
        """The 413, in the shape of the API at ``path`` (Anthropic's under ``/v1/messages``)."""
        error = PayloadTooLargeError(f"The request body is over {self.max_bytes / 2**20:g} MiB (MEMPROXY_MAX_BODY_MB).")
        await send({"type": "http.response.start", "status": error.status_code,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})  # fmt: skip
        await send({"type": "http.response.body", "body": error_json(error, path)})
