"""Small routes that need no module of their own: health, readiness, models; and the API-key dependency."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from proxy.auth import KeyRecord, KeyRing
from proxy.errors import UpstreamError
from proxy.metrics import Metrics
from proxy.upstream_pool import UpstreamPool

READINESS_TIMEOUT_S = 2.0


async def require_api_key(request: Request) -> KeyRecord:
    """The key's record (also left on ``request.state.key`` for the handler). Raises 401."""
    keys: KeyRing = request.app.state.keys
    authorization = request.headers.get("authorization")
    if authorization is None and "x-api-key" in request.headers:  # Anthropic's SDK sends its key so
        authorization = f"Bearer {request.headers['x-api-key']}"
    record = keys.authenticate(authorization)
    request.state.key = record
    return record


router = APIRouter()


@router.get("/healthz", summary="Liveness: the proxy process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: an upstream model server answers")
async def readyz(request: Request) -> Response:
    upstreams: UpstreamPool = request.app.state.upstreams
    try:
        await upstreams.primary.get("models", timeout=READINESS_TIMEOUT_S)
    except UpstreamError as exc:
        return JSONResponse(exc.to_body(), status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    body = await registry.render()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/v1/models", dependencies=[Depends(require_api_key)], summary="List models (from the upstream)")
async def list_models(request: Request) -> Response:
    upstreams: UpstreamPool = request.app.state.upstreams
    response = await upstreams.primary.get("models")
    return Response(response.content, media_type="application/json")
