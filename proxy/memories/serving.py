"""The memory REST API's logic over the engine: every call takes the resolved scope, validates before it writes
(a refused request changes nothing) and answers with the models of :mod:`proxy.memories.protocol`.

An id that is unknown and an id of another scope get the same 404: the API is no oracle for other people's ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from memory import (
    UNCHANGED,
    InvalidCursor,
    InvalidExport,
    Memory,
    MemoryEngine,
    NotFound,
    Scope,
    export_memory,
    is_core,
    is_pinned,
    reserved_keys,
    user_metadata,
)
from proxy.auth import KeyRecord
from proxy.errors import ConflictError, InvalidRequestError, NotFoundError
from proxy.identity import IdentityRules
from proxy.memories.access import resolve_memory_scope
from proxy.memories.protocol import (
    CreateMemoryRequest,
    DeletedMemory,
    DeletedUser,
    GraphEdge,
    GraphNode,
    ImportRequest,
    ImportResult,
    MemoryExport,
    MemoryGraph,
    MemoryHistory,
    MemoryList,
    MemoryObject,
    ScoredMemory,
    SearchRequest,
    SearchResults,
    UpdateMemoryRequest,
)
from proxy.memory_access import MemoryAccess


class UserAdapters(Protocol):
    """What else a user has that a delete-all must erase: their LoRA adapters (``proxy.adapters_api``)."""

    async def erase_user(self, scope: Scope) -> int:
        """Returns the adapter versions removed."""


class MemoriesService:
    def __init__(self, memory: MemoryAccess, rules: IdentityRules, adapters: UserAdapters | None = None) -> None:
        self._memory = memory
        self._rules = rules
        self._adapters = adapters

    def scope(
        self,
        key: KeyRecord,
        headers: Mapping[str, str],
        *,
        user: str | None = None,
        body_user: str | None = None,
        tenant: str | None = None,
    ) -> Scope:
        """The scope the request may touch (403 / 400 otherwise); ``user`` from the query, ``body_user`` from a
        body — naming two different users is refused."""
        if user is not None and body_user is not None and user != body_user:
            raise InvalidRequestError("The query and the body name different users.", param="user")
        chosen = body_user if body_user is not None else user
        return resolve_memory_scope(key, user=chosen, tenant=tenant, headers=headers, rules=self._rules)

    @property
    def engine(self) -> MemoryEngine:
        """MemoryUnavailable (503) when memory is off or could not start."""
        return self._memory.engine()

    # --- reads -----------------------------------------------------------------------------------------------

    async def list(
        self,
        scope: Scope,
        *,
        limit: int,
        cursor: str | None,
        kind: str | None,
        category: str | None,
        include_inactive: bool,
    ) -> MemoryList:
        try:
            page = await self.engine.list(
                scope.user, tenant=scope.tenant, limit=limit, cursor=cursor, kind=kind, category=category,
                include_inactive=include_inactive,
            )  # fmt: skip
        except InvalidCursor:
            raise InvalidRequestError("The cursor is not valid.", param="cursor", code="invalid_cursor") from None
        return MemoryList(data=[memory_object(m) for m in page.items], next_cursor=page.next_cursor)

    async def search(self, scope: Scope, request: SearchRequest) -> SearchResults:
        hits = await self.engine.recall(
            request.query, scope.user, request.top_k, preset=request.preset, tenant=scope.tenant
        )
        return SearchResults(
            data=[ScoredMemory(**memory_object(h.memory).model_dump(), score=round(h.score, 6)) for h in hits]
        )

    async def get(self, scope: Scope, memory_id: str) -> MemoryObject:
        return memory_object(await self._existing(scope, memory_id))

    async def history(self, scope: Scope, memory_id: str) -> MemoryHistory:
        await self._existing(scope, memory_id)
        versions = await self.engine.history(memory_id, user_id=scope.user, tenant=scope.tenant)
        return MemoryHistory(data=[memory_object(m) for m in versions])

    async def core(self, scope: Scope) -> MemoryList:
        """The user's core memory (their profile: pinned and promoted facts), in the order a chat's core block shows
        it; one page, never a cursor."""
        memories = await self.engine.core_memories(scope.user, tenant=scope.tenant)
        return MemoryList(data=[memory_object(m) for m in memories])

    async def graph(self, scope: Scope, *, limit: int, include_inactive: bool) -> MemoryGraph:
        graph = await self.engine.graph(scope.user, tenant=scope.tenant, limit=limit, include_inactive=include_inactive)
        nodes = [
            GraphNode(id=m.id, type="memory", label=m.text, kind=m.kind.value, importance=m.importance, active=m.active)
            for m in graph.memories
        ]
        for name in sorted({name for m in graph.memories for name in m.entities}):
            entity = graph.entities.get(name)
            label = (entity.display_name if entity else None) or name
            nodes.append(GraphNode(id=f"entity:{name}", type="entity", label=label, kind=entity.type if entity else None))
        edges = [
            GraphEdge(source=m.id, target=f"entity:{name}", type="MENTIONS") for m in graph.memories for name in m.entities
        ]
        edges += [
            GraphEdge(source=r.source_id, target=r.target_id, type=str(r.type), strength=r.strength)
            for r in graph.relationships
        ]
        return MemoryGraph(user=scope.user, nodes=nodes, edges=edges, truncated=graph.truncated)

    async def export(self, scope: Scope) -> MemoryExport:
        data = await self.engine.export(scope.user, tenant=scope.tenant)
        return MemoryExport(
            memories=data.get("memories", []),
            entities=data.get("entities", []),
            relationships=data.get("relationships", []),
        )

    # --- writes ----------------------------------------------------------------------------------------------

    async def create(self, scope: Scope, request: CreateMemoryRequest) -> MemoryObject:
        _check_metadata(request.metadata)
        engine = self.engine
        memory_id = await engine.remember(
            request.content,
            scope.user,
            importance=request.importance,
            category=request.category,
            metadata=request.metadata,
            kind=request.kind,
            event_time=_seconds(request.event_time),
            tenant=scope.tenant,
            wait=True,
        )
        memory = await engine.get(memory_id, user_id=scope.user, tenant=scope.tenant) if memory_id else None
        if memory is None:
            raise InvalidRequestError("Nothing in the content could be remembered.", param="content")
        return memory_object(memory)

    async def update(self, scope: Scope, memory_id: str, request: UpdateMemoryRequest) -> MemoryObject:
        sent = request.model_fields_set
        _check_update(request, sent)
        current = await self._existing(scope, memory_id)
        revising = request.text is not None and request.text.strip() != current.text
        if revising and current.superseded_by is not None:
            raise ConflictError(
                f"This memory was revised already; change its newest version ({current.superseded_by}).",
                param="text",
                code="memory_superseded",
            )
        if request.pinned and not revising and not current.active:
            raise ConflictError("Only an active memory can be pinned.", param="pinned", code="memory_inactive")
        try:
            memory_id = await self._apply_update(scope, memory_id, request, revising=revising)
        except NotFound:  # deleted meanwhile
            raise _not_found(memory_id) from None
        return memory_object(await self._existing(scope, memory_id))

    async def _apply_update(self, scope: Scope, memory_id: str, request: UpdateMemoryRequest, *, revising: bool) -> str:
        engine, sent = self.engine, request.model_fields_set
        user, tenant = scope.user, scope.tenant
        if revising:
            memory_id = await engine.revise(memory_id, request.text or "", user_id=user, tenant=tenant)
        if request.importance is not None or "retention_period" in sent:
            await engine.prioritize(
                memory_id,
                user_id=user,
                tenant=tenant,
                importance=request.importance,
                retention_period=request.retention_period if "retention_period" in sent else UNCHANGED,
            )
        if request.pinned is True:
            await engine.pin(memory_id, user_id=user, tenant=tenant)
        elif request.pinned is False:
            await engine.unpin(memory_id, user_id=user, tenant=tenant)
        if request.metadata:
            await engine.update_metadata(memory_id, request.metadata, user_id=user, tenant=tenant)
        return memory_id

    async def delete(self, scope: Scope, memory_id: str) -> DeletedMemory:
        if not await self.engine.forget(memory_id, user_id=scope.user, tenant=scope.tenant):
            raise _not_found(memory_id)
        return DeletedMemory(id=memory_id)

    async def delete_user(self, scope: Scope, *, confirm: bool) -> DeletedUser:
        if not confirm:
            raise InvalidRequestError(
                "Deleting all of a user's memories needs ?confirm=true.", param="confirm", code="confirmation_required"
            )
        removed = await self.engine.forget_user(scope.user, tenant=scope.tenant)
        # After the memories: a training job started meanwhile is stopped by the erasure (and finds nothing to
        # learn from); a failed erasure answers an error, and a retry of the whole delete is harmless.
        adapters = await self._adapters.erase_user(scope) if self._adapters is not None else 0
        return DeletedUser(user=scope.user, deleted=removed, adapters_deleted=adapters)

    async def import_(self, scope: Scope, request: ImportRequest) -> ImportResult:
        data: dict[str, Any] = {
            "memories": request.memories,
            "entities": request.entities,
            "relationships": request.relationships,
        }
        try:
            count = await self.engine.import_user(scope.user, data, tenant=scope.tenant)
        except InvalidExport as exc:
            where = exc.section if exc.index is None else f"{exc.section}[{exc.index}]"
            param = exc.section if exc.index is None else f"{exc.section}.{exc.index}"
            raise InvalidRequestError(f"Invalid {where}: {exc}", param=param, code="invalid_export") from None
        except (ValueError, NotFound) as exc:
            raise InvalidRequestError(f"The export cannot be imported: {_short(exc)}", code="invalid_export") from None
        return ImportResult(user=scope.user, imported=count)

    async def _existing(self, scope: Scope, memory_id: str) -> Memory:
        memory = await self.engine.get(memory_id, user_id=scope.user, tenant=scope.tenant)
        if memory is None:
            raise _not_found(memory_id)
        return memory


def memory_object(memory: Memory) -> MemoryObject:
    """A stored memory as the API shows it (the export format's fields, plus the derived ones; never the tenant, and
    not the engine's bookkeeping in the metadata)."""
    return MemoryObject(
        **(export_memory(memory) | {"metadata": user_metadata(memory)}),
        user=memory.scope.user,
        core=is_core(memory),
        pinned=is_pinned(memory),
        active=memory.active,
    )


def _check_update(request: UpdateMemoryRequest, sent: set[str]) -> None:
    if not sent:
        raise InvalidRequestError("Send at least one field to change.", code="empty_update")
    for name in ("text", "importance", "pinned", "metadata"):
        if name in sent and getattr(request, name) is None:
            raise InvalidRequestError(f"'{name}' cannot be null.", param=name)
    _check_metadata(request.metadata)


def _check_metadata(metadata: Mapping[str, Any] | None) -> None:
    reserved = reserved_keys(metadata)
    if reserved:
        raise InvalidRequestError(
            f"Metadata key '{reserved[0]}' is the engine's own; use 'pinned' or 'importance' instead.",
            param=f"metadata.{reserved[0]}",
        )


def _seconds(moment: datetime | None) -> float | None:
    """UNIX seconds; a time without a zone is UTC."""
    if moment is None:
        return None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


def _not_found(memory_id: str) -> NotFoundError:
    return NotFoundError(f"No memory '{memory_id[:80]}'.", param="id")


def _short(exc: Exception) -> str:
    return str(exc)[:200] or type(exc).__name__
