"""Anthropic's Messages request as memproxy reads it. Only what the proxy relies on is checked; everything else
(``tools``, ``thinking``, ``stop_sequences``, vendor fields) is allowed and forwarded as sent."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from proxy.chat.protocol import Count


class AnthropicMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["user", "assistant"]
    content: StrictStr | list[dict[str, Any]]


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    user_id: StrictStr | None = Field(None, description="End-user id: whose memory (the key's rules apply).")


class MessagesRequest(BaseModel):
    """Anthropic's create-message request. Unknown fields pass (``extra="allow"``) and are forwarded as sent."""

    model_config = ConfigDict(extra="allow")

    model: StrictStr | None = Field(None, description="Model or adapter name; the configured default if omitted.")
    messages: list[AnthropicMessage] = Field(..., min_length=1)
    system: StrictStr | list[dict[str, Any]] | None = Field(
        None, description="The system prompt; memory's core block joins it."
    )
    max_tokens: Count = Field(..., ge=1)
    stream: StrictBool = False
    metadata: Metadata | None = None
