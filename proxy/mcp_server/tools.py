"""The MCP tools — the memory API's operations for an agent, one tool each — and the user's profile (their core
memory) as the resource ``memory://profile``, all over :class:`~proxy.memories.serving.MemoriesService`: the same
validation, scope rules and answers as ``/v1/memories``, and no other way into memory.

A tool's result is the memory API's JSON (a model of :mod:`proxy.memories.protocol`) as its structured content. What
the API would answer with an error (400, 403, 404, 409, 503) is a tool error carrying the API's message, for the
model to read: an id of another user or tenant is the same 404 as an unknown one. ``user`` names the end user, for
trusted keys only (any other key naming someone else gets the API's 403); by default it is the key's own user.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from proxy.errors import ClientError, ProxyError, invalid_request_from_validation
from proxy.identity import ID_SCHEMA
from proxy.mcp_server.auth import current_caller
from proxy.memories import protocol as p
from proxy.memories.access import MemoryScope
from proxy.memories.serving import MemoriesService

logger = logging.getLogger(__name__)

PROFILE_URI = "memory://profile"
JSON = "application/json"

User = Annotated[
    str | None,
    Field(description="End user (trusted keys only; default: the key's own user).", json_schema_extra=ID_SCHEMA),
]
MemoryId = Annotated[
    str, Field(min_length=1, max_length=256, description="A memory's id (from search_memories or list_memories).")
]
Text = Annotated[str, Field(min_length=1, max_length=p.MAX_CONTENT_CHARS)]
Metadata = Annotated[dict[str, Any] | None, Field(description='Free-form JSON, e.g. {"category": "work"}.')]

READS = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
DELETES = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)

RequestT = TypeVar("RequestT", bound=BaseModel)


class MemoryTools:
    """The tools and resources, bound to the memory API's service."""

    def __init__(self, memories: MemoriesService) -> None:
        self._memories = memories

    def register(self, server: MCPServer) -> None:
        """Each method's docstring is what the model reads about it."""
        tools = (
            (self.search_memories, READS),
            (self.add_memory, WRITES),
            (self.list_memories, READS),
            (self.update_memory, WRITES),
            (self.forget_memory, DELETES),
            (self.memory_history, READS),
        )
        for tool, hints in tools:
            server.add_tool(tool, description=_description(tool), annotations=hints)
        for uri, resource in ((PROFILE_URI, self.profile), (f"{PROFILE_URI}/{{user}}", self.user_profile)):
            server.resource(uri, name=resource.__name__, description=_description(resource), mime_type=JSON)(resource)

    # --- tools ------------------------------------------------------------------------------------------------

    async def search_memories(
        self,
        query: Annotated[Text, Field(description="What to look for, in the user's words.")],
        top_k: Annotated[int, Field(ge=1, le=p.TOP_K_MAX, description="How many memories at most.")] = 10,
        user: User = None,
    ) -> p.SearchResults:
        """Search the user's long-term memories by meaning and by words: the most relevant first, each with its
        score. The memories a chat with this user would recall."""
        with _answering(ToolError):
            scope = self._scope(user)
            return await self._memories.search(scope, _request(p.SearchRequest, query=query, top_k=top_k))

    async def add_memory(
        self,
        text: Annotated[Text, Field(description="One fact about the user, in a sentence ('Ken is allergic to …').")],
        metadata: Metadata = None,
        user: User = None,
    ) -> p.MemoryObject:
        """Remember a fact about the user: their next chats recall it. Answers once it is stored."""
        with _answering(ToolError):
            scope = self._scope(user)
            fields = {"content": text} | ({"metadata": metadata} if metadata is not None else {})
            return await self._memories.create(scope, _request(p.CreateMemoryRequest, **fields))

    async def list_memories(
        self,
        limit: Annotated[int, Field(ge=1, le=p.LIST_LIMIT_MAX, description="Memories on this page at most.")] = 50,
        cursor: Annotated[
            str | None, Field(min_length=1, max_length=1024, description="The last page's next_cursor.")
        ] = None,
        user: User = None,
    ) -> p.MemoryList:
        """The user's memories, newest first, one page at a time (pass next_cursor back for the next page)."""
        with _answering(ToolError):
            scope = self._scope(user)
            return await self._memories.list(
                scope, limit=limit, cursor=cursor, kind=None, category=None, include_inactive=False
            )

    async def update_memory(
        self,
        memory_id: MemoryId,
        text: Annotated[Text | None, Field(description="The corrected fact: stored as a new version.")] = None,
        metadata: Annotated[
            dict[str, Any] | None, Field(description="A JSON merge patch of the metadata (null removes a key).")
        ] = None,
        pinned: Annotated[bool | None, Field(description="true: into the user's profile for good; false: out.")] = None,
        user: User = None,
    ) -> p.MemoryObject:
        """Change a memory. New text supersedes it with a new version (the answer; the old one stays in its
        history and is no longer recalled); metadata and pinned change it in place. Send at least one of them."""
        with _answering(ToolError):
            scope = self._scope(user)
            sent = {"text": text, "metadata": metadata, "pinned": pinned}
            fields = {name: value for name, value in sent.items() if value is not None}
            return await self._memories.update(scope, memory_id, _request(p.UpdateMemoryRequest, **fields))

    async def forget_memory(self, memory_id: MemoryId, user: User = None) -> p.DeletedMemory:
        """Delete a memory for good (it is no longer recalled, and not kept in history)."""
        with _answering(ToolError):
            return await self._memories.delete(self._scope(user), memory_id)

    async def memory_history(self, memory_id: MemoryId, user: User = None) -> p.MemoryHistory:
        """The versions of a memory, oldest first: how it was corrected over time."""
        with _answering(ToolError):
            return await self._memories.history(self._scope(user), memory_id)

    # --- resources --------------------------------------------------------------------------------------------

    async def profile(self) -> str:
        """The user's profile: their core memory (pinned and frequently recalled facts), which every chat shows the
        model. The key's own user, or the one a trusted key names in a user header."""
        return await self._profile(None)

    async def user_profile(self, user: str) -> str:
        """Another user's profile (core memory), for trusted keys."""
        return await self._profile(user)

    async def _profile(self, user: str | None) -> str:
        with _answering(ResourceError):
            return (await self._memories.core(self._scope(user))).model_dump_json(indent=2)

    def _scope(self, user: str | None) -> MemoryScope:
        caller = current_caller()
        return self._memories.scope(caller.key, caller.headers, user=user)


def _description(method: Callable[..., Any]) -> str:
    return " ".join((inspect.getdoc(method) or "").split())


def _request(model: type[RequestT], **fields: Any) -> RequestT:
    """The memory API's request model, checked as the API checks a body (InvalidRequestError names the field)."""
    try:
        return model(**fields)
    except ValidationError as exc:
        # Located in a body, as the API's are (else an argument named "query" would read as a query parameter).
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise invalid_request_from_validation(errors, fields) from None


@contextmanager
def _answering(error: type[ToolError | ResourceError]) -> Iterator[None]:
    """The memory API's error as the SDK's anticipated error, with the API's message (already sanitised)."""
    try:
        yield
    except ProxyError as exc:
        if not isinstance(exc, ClientError):
            logger.warning("MCP call -> %d: %s", exc.status_code, exc.message)
        raise error(exc.message) from None
