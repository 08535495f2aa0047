"""HTTP in and out for ``POST /v1/responses``; the dialect is :mod:`proxy.responses.dialect`, the logic the chat
service's. Retrieving, cancelling and listing a stored response's items go to the upstream as they are
(:mod:`proxy.passthrough`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from proxy.auth import KeyRecord
from proxy.chat.api_router import answer, body_reference, body_schemas
from proxy.responses.dialect import RESPONSES
from proxy.responses.protocol import ResponsesRequest
from proxy.routes import require_api_key

router = APIRouter()

SCHEMAS = body_schemas(ResponsesRequest)


@router.post(
    "/v1/responses",
    summary="Create a model response (OpenAI's Responses API; streaming and non-streaming), with memory",
    openapi_extra=body_reference(ResponsesRequest),
)
async def create_response(request: Request, key: KeyRecord = Depends(require_api_key)) -> Response:
    return await answer(request, key, RESPONSES)
