"""HTTP in and out for the memory REST API, ``/v1/memories``; the logic lives in :mod:`proxy.memories.serving`.

Every route needs an API key. ``user`` names the end user (trusted keys only; default: the key's own user) and
``tenant`` another tenant (admin keys only). A query parameter a route does not know is a 400, so a misspelt
``?usr=`` can never fall back to the key's own user (think of ``DELETE``).

Semantic search is ``POST /v1/memories/search`` (a query is private text: it belongs in a body, not in URLs and
access logs); ``GET /v1/memories`` only lists, and ``?query=`` there is refused as unknown.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.dependencies.models import Dependant

from proxy.auth import KeyRecord
from proxy.errors import InvalidRequestError
from proxy.identity import ID_SCHEMA
from proxy.memories import protocol as p
from proxy.memories.access import MemoryScope
from proxy.memories.serving import MemoriesService
from proxy.routes import require_api_key


async def reject_unknown_parameters(request: Request) -> None:
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    unknown = sorted(set(request.query_params) - _query_names(dependant))
    if unknown:
        name = unknown[0]
        raise InvalidRequestError(f"Unknown query parameter '{name}'.", param=name, code="unknown_parameter")


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


router = APIRouter(
    prefix="/v1/memories",
    tags=["memories"],
    # The key first (a 401 before anything else; FastAPI runs it once per request, the routes reuse it).
    dependencies=[Depends(require_api_key), Depends(reject_unknown_parameters)],
    # "default" also keeps FastAPI from documenting a 422 that this API never sends (validation errors are 400).
    responses={code: {"model": p.ErrorResponse, "description": text} for code, text in p.ERROR_RESPONSES.items()}
    | {"default": {"model": p.ErrorResponse, "description": "Any other error (OpenAI error shape)."}},
)

UserParam = Query(
    None, description="End user (trusted keys only; default: the key's own user).", json_schema_extra=ID_SCHEMA
)
TenantParam = Query(
    None, description="Another tenant (admin keys only; then `user` is required).", json_schema_extra=ID_SCHEMA
)
MemoryId = Path(..., min_length=1, max_length=256, description="A memory id.")


def service(request: Request) -> MemoriesService:
    return request.app.state.memories_service


async def memory_scope(
    request: Request,
    key: KeyRecord = Depends(require_api_key),
    user: str | None = UserParam,
    tenant: str | None = TenantParam,
) -> MemoryScope:
    return service(request).scope(key, request.headers, user=user, tenant=tenant)


InScope = Depends(memory_scope)


@router.get("", summary="List a user's memories, newest first (cursor pages)", response_model=p.MemoryList)
async def list_memories(
    request: Request,
    scope: MemoryScope = InScope,
    limit: int = Query(50, ge=1, le=p.LIST_LIMIT_MAX),
    cursor: str | None = Query(None, min_length=1, max_length=1024, description="`next_cursor` of the last page."),
    kind: p.Kind | None = Query(None),
    category: str | None = Query(None, min_length=1, max_length=256),
    include_inactive: bool = Query(False, description="Also superseded and expired memories."),
) -> Any:
    return await service(request).list(
        scope, limit=limit, cursor=cursor, kind=kind, category=category, include_inactive=include_inactive
    )


@router.post(
    "", status_code=201, summary="Remember one memory (answers once it is stored)", response_model=p.MemoryObject
)
async def create_memory(
    request: Request,
    body: p.CreateMemoryRequest,
    key: KeyRecord = Depends(require_api_key),
    user: str | None = UserParam,
    tenant: str | None = TenantParam,
) -> Any:
    target = service(request).scope(key, request.headers, user=user, body_user=body.user, tenant=tenant)
    return await service(request).create(target, body)


@router.delete("", summary="Delete ALL of a user's memories (needs ?confirm=true)", response_model=p.DeletedUser)
async def delete_user_memories(
    request: Request,
    scope: MemoryScope = InScope,
    confirm: bool | None = Query(
        None, description="Must be true; a bare DELETE deletes nothing.", json_schema_extra={"enum": [True]}
    ),
) -> Any:
    return await service(request).delete_user(scope, confirm=confirm is True)


@router.post("/search", summary="Semantic search (recall) over a user's memories", response_model=p.SearchResults)
async def search_memories(
    request: Request,
    body: p.SearchRequest,
    key: KeyRecord = Depends(require_api_key),
    user: str | None = UserParam,
    tenant: str | None = TenantParam,
) -> Any:
    target = service(request).scope(key, request.headers, user=user, body_user=body.user, tenant=tenant)
    return await service(request).search(target, body)


@router.get(
    "/graph", summary="A user's memory graph for a UI (memories, entities, edges)", response_model=p.MemoryGraph
)
async def memory_graph(
    request: Request,
    scope: MemoryScope = InScope,
    limit: int = Query(200, ge=1, le=p.GRAPH_LIMIT_MAX, description="Newest memories shown."),
    include_inactive: bool = Query(True, description="Show superseded versions (SUPERSEDES edges)."),
) -> Any:
    return await service(request).graph(scope, limit=limit, include_inactive=include_inactive)


@router.get(
    "/export", summary="Export a user's memories (the store-independent JSON format)", response_model=p.MemoryExport
)
async def export_memories(request: Request, scope: MemoryScope = InScope) -> Any:
    return await service(request).export(scope)


@router.post("/import", summary="Import an export into a user", response_model=p.ImportResult)
async def import_memories(request: Request, body: p.ImportRequest, scope: MemoryScope = InScope) -> Any:
    return await service(request).import_(scope, body)


@router.get("/{memory_id}", summary="Get one memory", response_model=p.MemoryObject)
async def get_memory(request: Request, memory_id: str = MemoryId, scope: MemoryScope = InScope) -> Any:
    return await service(request).get(scope, memory_id)


@router.patch(
    "/{memory_id}",
    summary="Change a memory: text → a new version superseding it; other fields in place",
    response_model=p.MemoryObject,
)
async def update_memory(
    request: Request, body: p.UpdateMemoryRequest, memory_id: str = MemoryId, scope: MemoryScope = InScope
) -> Any:
    return await service(request).update(scope, memory_id, body)


@router.delete("/{memory_id}", summary="Delete one memory", response_model=p.DeletedMemory)
async def delete_memory(request: Request, memory_id: str = MemoryId, scope: MemoryScope = InScope) -> Any:
    return await service(request).delete(scope, memory_id)


@router.get("/{memory_id}/history", summary="The versions of a memory, oldest first", response_model=p.MemoryHistory)
async def memory_history(request: Request, memory_id: str = MemoryId, scope: MemoryScope = InScope) -> Any:
    return await service(request).history(scope, memory_id)

