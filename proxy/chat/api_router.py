"""HTTP in and out for ``POST /v1/chat/completions``; the logic lives in :mod:`proxy.chat.serving`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse

from proxy.auth import KeyRecord
from proxy.chat.protocol import ChatCompletionRequest
from proxy.chat.serving import ChatCompletion, ChatCompletionsService
from proxy.disconnect import cancel_on_disconnect
from proxy.routes import require_api_key

router = APIRouter()

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}

_REQUEST_SCHEMA = ChatCompletionRequest.model_json_schema(ref_template="#/components/schemas/{model}")
SCHEMAS = {"ChatCompletionRequest": {k: v for k, v in _REQUEST_SCHEMA.items() if k != "$defs"}} | _REQUEST_SCHEMA.get(
    "$defs", {}
)
"""The request body's schemas, for the document's ``components`` (the route's body is read raw, to be forwarded as
sent, so FastAPI does not add them itself; see :func:`proxy.app.create_app`)."""


@router.post(
    "/v1/chat/completions",
    summary="Create a chat completion (OpenAI-compatible; streaming and non-streaming)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}},
        }
    },
)
async def create_chat_completion(request: Request, key: KeyRecord = Depends(require_api_key)) -> Response:
    service: ChatCompletionsService = request.app.state.chat_service
    raw_body = await request.body()
    result = await cancel_on_disconnect(request, service.create(raw_body, key, request.headers))
    if isinstance(result, ChatCompletion):
        return Response(result.content, media_type=result.media_type, headers=result.headers)
    return StreamingResponse(
        result.events, media_type="text/event-stream", headers=SSE_HEADERS | result.headers
    )
