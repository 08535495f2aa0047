"""HTTP in and out for the per-user adapters API, ``/v1/adapters``; the logic lives in
:mod:`proxy.adapters_api.serving`.

The keys and rules of the memory API: ``user`` names the end user (trusted keys only; default: the key's own user),
``tenant`` another tenant (admin keys only); an unknown query parameter is a 400. A job is shown to any key that may
access its user. Every route answers 404 ``adapters_unavailable`` while adapters are off.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request

from proxy.adapters_api import protocol as p
from proxy.adapters_api.serving import AdaptersService
from proxy.auth import KeyRecord
from proxy.memories.access import MemoryScope
from proxy.memories.api_router import reject_unknown_parameters
from proxy.routes import require_api_key


def service(request: Request) -> AdaptersService:
    return request.app.state.adapters_service


async def require_adapters(request: Request) -> None:
    service(request).require_enabled()


router = APIRouter(
    prefix="/v1/adapters",
    tags=["adapters"],
    # The key first (401), then unknown parameters (400), then whether adapters are on at all (404).
    dependencies=[Depends(require_api_key), Depends(reject_unknown_parameters), Depends(require_adapters)],
    responses={code: {"model": p.ErrorResponse, "description": text} for code, text in p.ERROR_RESPONSES.items()}
    | {"default": {"model": p.ErrorResponse, "description": "Any other error (OpenAI error shape)."}},
)

UserParam = Query(None, description="End user (trusted keys only; default: the key's own user).")
TenantParam = Query(None, description="Another tenant (admin keys only; then `user` is required).")
VersionParam = Path(..., ge=1, description="An adapter version of the user.")


async def adapter_scope(
    request: Request,
    key: KeyRecord = Depends(require_api_key),
    user: str | None = UserParam,
    tenant: str | None = TenantParam,
) -> MemoryScope:
    return service(request).scope(key, request.headers, user=user, tenant=tenant)


InScope = Depends(adapter_scope)


@router.post(
    "/train",
    status_code=202,
    summary="Start training a new adapter version from the user's memories (published only if it validates)",
    response_model=p.TrainingJobObject,
)
async def start_training(
    request: Request,
    body: p.TrainRequest | None = None,
    key: KeyRecord = Depends(require_api_key),
    user: str | None = UserParam,
    tenant: str | None = TenantParam,
) -> Any:
    body = body or p.TrainRequest()
    target = service(request).scope(key, request.headers, user=user, body_user=body.user, tenant=tenant)
    return await service(request).train(target, body)


@router.get(
    "/jobs/{job_id}",
    summary="A training job: state, step / total, ETA, error, the version it produced",
    response_model=p.TrainingJobObject,
)
async def training_job(
    request: Request,
    job_id: str = Path(..., min_length=1, max_length=64, description="The id `POST /v1/adapters/train` answered."),
    key: KeyRecord = Depends(require_api_key),
) -> Any:
    return service(request).job(key, job_id)


@router.get("", summary="Every version of a user's adapter, with status and validation metrics",
            response_model=p.AdapterList)
async def list_adapters(request: Request, scope: MemoryScope = InScope) -> Any:
    return await service(request).list(scope)


@router.get("/current", summary="The user's current adapter (the newest ready version)", response_model=p.AdapterObject)
async def current_adapter(request: Request, scope: MemoryScope = InScope) -> Any:
    return await service(request).current(scope)


@router.get("/{version}", summary="One version of the user's adapter", response_model=p.AdapterObject)
async def get_adapter(request: Request, version: int = VersionParam, scope: MemoryScope = InScope) -> Any:
    return await service(request).get(scope, version)


@router.post(
    "/{version}/retire",
    summary="Retire a ready version: the user's chats stop using it at once",
    response_model=p.AdapterObject,
)
async def retire_adapter(request: Request, version: int = VersionParam, scope: MemoryScope = InScope) -> Any:
    return await service(request).retire(scope, version)
