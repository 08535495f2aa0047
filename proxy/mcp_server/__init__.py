"""memproxy's MCP server at ``/mcp``: the memory API's operations as tools, and the user's profile as a resource, for
agents and desktop assistants (streamable HTTP, the official ``mcp`` SDK; named so as not to shadow it).

- :mod:`proxy.mcp_server.auth`: the API key, checked before the SDK reads a request, and who each message is from;
- :mod:`proxy.mcp_server.tools`: the tools and the profile resource, over the memory API's service;
- :mod:`proxy.mcp_server.server`: the ASGI endpoint the app factory mounts, and what its lifespan runs.
"""

from proxy.mcp_server.server import McpEndpoint

__all__ = ["McpEndpoint"]
