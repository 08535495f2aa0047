"""HTTP in and out for ``POST /v1/chat/completions`` (and :func:`answer`, which the Responses and Messages routes
share); the logic lives in :mod:`proxy.chat.serving`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from proxy.auth import KeyRecord
from proxy.chat.dialect import CHAT_COMPLETIONS, Dialect
from proxy.chat.protocol import ChatCompletionRequest
from proxy.chat.serving import ChatCompletion, ChatCompletionsService
from proxy.disconnect import cancel_on_disconnect
from proxy.routes import require_api_key

router = APIRouter()

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}

def body_schemas(model: type[BaseModel]) -> dict[str, Any]:
    """A request body's schemas, for the document's ``components`` (the conversation routes read their body raw, to
    forward it as sent, so FastAPI does not add them itself; see :func:`proxy.app.create_app`)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {model.__name__: {k: v for k, v in schema.items() if k != "$defs"}} | schema.get("$defs", {})


def body_reference(model: type[BaseModel]) -> dict[str, Any]:
    """The route's ``openapi_extra``: its JSON body is ``model``."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


SCHEMAS = body_schemas(ChatCompletionRequest)


@router.post(
    "/v1/chat/completions",
    summary="Create a chat completion (OpenAI-compatible; streaming and non-streaming)",
    openapi_extra=body_reference(ChatCompletionRequest),
)
async def create_chat_completion(request: Request, key: KeyRecord = Depends(require_api_key)) -> Response:
    return await answer(request, key, CHAT_COMPLETIONS)


async def answer(request: Request, key: KeyRecord, dialect: Dialect) -> Response:
    """A conversation in any dialect, through the chat service: the whole answer, or its stream."""
    service: ChatCompletionsService = request.app.state.chat_service
    raw_body = await request.body()
    result = await cancel_on_disconnect(request, service.create(raw_body, key, request.headers, dialect))
    if isinstance(result, ChatCompletion):
        return Response(result.content, media_type=result.media_type, headers=result.headers)
    return StreamingResponse(
        result.events, media_type="text/event-stream", headers=SSE_HEADERS | result.headers
    )
