"""Which extractor the write pipeline runs, with its own settings (a discriminated union on ``kind``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class DeterministicExtractorConfig(BaseModel):
    """Each turn an episode with simple entities and slots; no model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["deterministic"] = Field(
        "deterministic",
        description="deterministic (episodes and simple entities, no model) or llm (facts from a chat model with a "
        "JSON schema, on top of the episodes; the deterministic result is the fallback).",
    )


class LLMExtractorConfig(BaseModel):
    """Facts from an OpenAI-compatible chat model (guided JSON), added to the deterministic episodes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["llm"] = Field(description=DeterministicExtractorConfig.model_fields["kind"].description)
    url: str = Field(description="OpenAI-compatible base URL ending in /v1.")
    model: str = Field(description="The model name sent to that endpoint.")
    api_key: SecretStr | None = Field(None, description="Bearer token for that endpoint, if it needs one.")
    timeout_s: float = Field(30.0, gt=0, description="Seconds one extraction may take before the fallback.")


ExtractorConfig = Annotated[DeterministicExtractorConfig | LLMExtractorConfig, Field(discriminator="kind")]
