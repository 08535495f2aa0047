"""The ``/mcp`` endpoint: the SDK's ``MCPServer`` with memproxy's tools, over streamable HTTP, behind the key check.

Stateless, with JSON answers: each POST carries its messages and gets their answers, and no session is kept between
requests, so any replica answers any request (as for the REST API) and a restart loses nothing. Nothing here is
pushed to a client, so the SSE stream and the session would buy nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import Receive, Scope, Send

from proxy import __version__
from proxy.errors import ServiceUnavailableError
from proxy.mcp_server.auth import KeyCheck
from proxy.mcp_server.tools import PROFILE_URI, MemoryTools
from proxy.memories.serving import MemoriesService

INSTRUCTIONS = (
    "Long-term memory of the user you are helping, shared with their chats through memproxy. Search it before you "
    "answer from what you know about them; add what they tell you about themselves (one fact per memory); correct "
    f"with update_memory, delete with forget_memory. {PROFILE_URI} is their profile: what every chat already knows."
)


class McpEndpoint:
    """ASGI: mounted by the app factory at ``/mcp``; :meth:`run` serves for the app's lifetime (its lifespan)."""

    def __init__(self, memories: MemoriesService) -> None:
        self._server = _mcp_server()
        MemoryTools(memories).register(self._server)
        self._checked = KeyCheck(self._serve)
        self._manager: StreamableHTTPSessionManager | None = None

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """A fresh session manager each time the app starts (the SDK's runs once). Requests before and after are
        answered 503."""
        # Builds the SDK's session manager. The Starlette app it returns is not used: /mcp is the app factory's own
        # route, so the path is exactly /mcp (no redirect to /mcp/) and the key check comes before the SDK.
        self._server.streamable_http_app(
            stateless_http=True,
            json_response=True,
            # The key check guards every request, whatever the Host; the SDK's default would only let localhost in.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        manager = self._server.session_manager
        async with manager.run():
            self._manager = manager
            try:
                yield
            finally:
                self._manager = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._checked(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._manager is None:
            raise ServiceUnavailableError("The MCP endpoint is not running (the proxy is starting or stopping).")
        await self._manager.handle_request(scope, receive, send)


# Stateless: the SDK "terminates" a session after every request and says so at INFO, once per request.
logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)


def _mcp_server() -> MCPServer:
    """The SDK's server, without the set-up of the root logger its constructor does (``logging.basicConfig``: a
    handler at INFO): the proxy's logging is :mod:`proxy.observability`'s, or its host's."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return MCPServer("memproxy", version=__version__, instructions=INSTRUCTIONS)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
