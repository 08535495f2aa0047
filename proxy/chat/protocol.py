"""The chat request as memproxy reads it. Only what the proxy relies on is checked; everything else
(``tools``, ``response_format``, sampling and vendor fields) is allowed and forwarded byte-for-byte equal in value.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictStr


def _integral(value: Any) -> Any:
    """JSON Schema's integers include 1.0 (and OpenAI's and vLLM's servers take it): read it as 1; 1.5 stays wrong."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Count = Annotated[int, BeforeValidator(_integral), Field(strict=True)]
"""A whole number as JSON Schema means it: ``1`` or ``1.0``, never ``"1"``, ``true`` or ``1.5``."""

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    content: StrictStr | list[dict[str, Any]] | None = None
    name: StrictStr | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: StrictBool | None = None


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request. Unknown fields pass (``extra="allow"``) and are forwarded as sent."""

    model_config = ConfigDict(extra="allow")

    model: StrictStr | None = Field(None, description="Model or adapter name; the configured default if omitted.")
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    user: StrictStr | None = Field(None, description="End-user id (used for memory scoping in later stages).")
    max_tokens: Count | None = Field(None, ge=0)
    max_completion_tokens: Count | None = Field(None, ge=0)
