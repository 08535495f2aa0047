"""The Responses request as memproxy reads it. Only what the proxy relies on is checked; everything else (``tools``,
``previous_response_id``, ``reasoning``, ``text``, vendor fields) is allowed and forwarded as sent."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr


class ResponsesRequest(BaseModel):
    """OpenAI's create-response request. Unknown fields pass (``extra="allow"``) and are forwarded as sent."""

    model_config = ConfigDict(extra="allow")

    model: StrictStr | None = Field(None, description="Model or adapter name; the configured default if omitted.")
    input: StrictStr | list[dict[str, Any]] | None = Field(None, description="Text, or a list of input items.")
    instructions: StrictStr | None = Field(
        None, description="A system (developer) message; memory's core block joins it."
    )
    stream: StrictBool = False
    background: Literal[False] | None = Field(
        None, description="Not supported: a background response is answered after the request, unseen by memory."
    )
    user: StrictStr | None = Field(None, description="End-user id: whose memory (the key's rules apply).")
    safety_identifier: StrictStr | None = Field(None, description="Read as the end-user id when ``user`` is absent.")
