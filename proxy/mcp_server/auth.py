"""Who is calling ``/mcp``. The ``Authorization`` header is checked by the memory API's own dependency
(:func:`proxy.routes.require_api_key`) before the MCP SDK reads a byte: a missing or unknown key is a 401 with the
OpenAI error body, from the app's error handler, and never reaches a tool.

The key's record and the request's headers then go with every MCP message of that request: the SDK runs each
handler in the context (``contextvars``) of the HTTP request that carried its message, so a handler reads its own
caller with :func:`current_caller`, whichever session or connection the message arrived on. The scope a call may
touch is resolved from that caller by the memory API's rules, in the tools.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from proxy.auth import KeyRecord
from proxy.routes import require_api_key


@dataclass(frozen=True, slots=True)
class Caller:
    """The key of the HTTP request an MCP message came in, and that request's headers (a trusted key may name the
    end user in one, as in chats and the memory API)."""

    key: KeyRecord
    headers: Mapping[str, str]


_caller: ContextVar[Caller] = ContextVar("memproxy_mcp_caller")


def current_caller() -> Caller:
    """The caller of the MCP message being handled. Reached without a checked key (a bug), it raises LookupError:
    the SDK answers a generic error and logs it, and nothing is done for anyone."""
    return _caller.get()


class KeyCheck:
    """ASGI: checks the request's key, then hands the request to ``app`` with its caller set."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        key = await require_api_key(request)  # AuthenticationError: the app's handler answers 401
        token = _caller.set(Caller(key, request.headers))
        try:
            await self._app(scope, receive, send)
        finally:
            _caller.reset(token)
