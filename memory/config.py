"""One configuration object for the memory engine. The library reads no environment variables: the proxy's
settings module (or your own code) builds this object."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class MemoryConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Field(..., description="Where the embedded store, the vector index and the write queue live.")
    tenant: str = Field("default", description="Tenant used when a call names none (single-tenant library use).")

    graph_backend: Literal["sqlite", "neo4j"] = "sqlite"
    neo4j_uri: str | None = None
    neo4j_user: str = "neo4j"
    neo4j_password: SecretStr | None = None
    neo4j_database: str = "neo4j"

    embedder: Literal["onnx", "torch"] = Field(
        "onnx", description="onnx: ONNX Runtime int8 (fast query path); torch: sentence-transformers as is."
    )
    embedding_model: Path | None = Field(
        None, description="A local sentence-transformers folder; None = the bundled all-MiniLM-L6-v2."
    )
    vector_dim: int = Field(384, ge=8, description="The embedding model's dimension (checked at start).")
    embedding_threads: int = Field(1, ge=1)
    model_cache: Path | None = Field(
        None, description="Where the exported ONNX model is cached; None = ~/.cache/memproxy/onnx (shared)."
    )

    dedupe_threshold: float = Field(0.95, gt=0.0, le=1.0)
    recall_preset: str = "balanced"
    index_save_interval_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _neo4j_needs_uri(self) -> MemoryConfig:
        if self.graph_backend == "neo4j" and not self.neo4j_uri:
            raise ValueError("graph_backend='neo4j' needs neo4j_uri")
        return self

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "graph.sqlite3"

    @property
    def queue_path(self) -> Path:
        return self.data_dir / "write-queue.sqlite3"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "vectors"

    @property
    def model_cache_dir(self) -> Path:
        return self.model_cache or Path.home() / ".cache" / "memproxy" / "onnx"
