"""HTTP in and out for ``POST /v1/messages``; the dialect is :mod:`proxy.messages.dialect`, the logic the chat
service's. The key comes as ``x-api-key`` (Anthropic's SDK) or ``Authorization: Bearer``; errors are in Anthropic's
shape. ``/v1/messages/count_tokens`` goes to the upstream as it is (:mod:`proxy.passthrough`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from proxy.auth import KeyRecord
from proxy.chat.api_router import answer, body_reference, body_schemas
from proxy.messages.dialect import MESSAGES
from proxy.messages.protocol import MessagesRequest
from proxy.routes import require_api_key

router = APIRouter()

SCHEMAS = body_schemas(MessagesRequest)


@router.post(
    "/v1/messages",
    summary="Create a message (Anthropic's Messages API; streaming and non-streaming), with memory",
    openapi_extra=body_reference(MessagesRequest),
)
async def create_message(request: Request, key: KeyRecord = Depends(require_api_key)) -> Response:
    return await answer(request, key, MESSAGES)
