"""One configuration object for the memory engine. The library reads no environment variables: the proxy's
settings module (or your own code) builds this object."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


DAY_S = 86_400.0


class SchedulerConfig(BaseModel):
    """The memory scheduler (:mod:`memory.scheduler`): decay, retention, promotion into core memory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    interval_s: float = Field(600.0, gt=0, description="Time between two maintenance runs.")
    decay_half_life_s: float = Field(
        30 * DAY_S, gt=0, description="Unused importance halves its distance to the floor in this time."
    )
    decay_floor: float = Field(0.1, ge=0.0, le=1.0, description="Decay never takes importance below this.")
    decay_step: float = Field(0.01, gt=0.0, description="Smaller changes of importance are not written.")
    short_term_s: float = Field(7 * DAY_S, gt=0, description="retention_period='short_term'.")
    long_term_s: float | None = Field(None, gt=0, description="retention_period='long_term' (None: forever).")
    core_max: int = Field(20, ge=0, description="Most core memories per user (user pins may exceed it).")
    core_promotions_per_run: int = Field(2, ge=0, description="Most promotions per user per run (prefix stability).")
    core_min_uses: int = Field(5, ge=1, description="Recalled at least this often to be promoted.")
    core_min_importance: float = Field(0.6, ge=0.0, le=1.0, description="And at least this important.")
    core_swap_margin: float = Field(
        0.25, ge=0.0, description="Into a full core only by outranking its weakest member by this fraction."
    )
    core_cooldown_s: float = Field(7 * DAY_S, ge=0, description="A demoted memory waits this long to come back.")


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
    embedding_threads: int = Field(1, ge=1, description="The embedder's intra-op threads per model call.")
    query_max_tokens: int = Field(
        64,
        ge=8,
        description="Recall embeds the query's first this many tokens (BM25 reads all of it). The model's cost "
        "grows with each token, about 0.2 ms a token on one core here: 64 bounds a long message's query at about "
        "13 ms, where its first 256 tokens took 51 ms; a chat question is 10-30 tokens.",
    )
    model_cache: Path | None = Field(
        None, description="Where the exported ONNX model is cached; None = ~/.cache/memproxy/onnx (shared)."
    )

    extractor: Literal["deterministic", "llm"] = Field(
        "deterministic",
        description="deterministic: each turn an episode, no model; llm: facts from a chat model (JSON schema), "
        "added on top of the episodes, with the deterministic result as the fallback.",
    )
    extractor_url: str | None = Field(None, description="OpenAI-compatible base URL ending in /v1 (llm extractor).")
    extractor_model: str | None = Field(None, description="Model name sent to the extractor endpoint.")
    extractor_api_key: SecretStr | None = None
    extractor_timeout_s: float = Field(30.0, gt=0)

    dedupe_threshold: float = Field(0.95, gt=0.0, le=1.0)
    recall_preset: str = "balanced"
    index_save_interval_s: float = Field(30.0, gt=0)
    vector_ram_mb: float = Field(
        256.0, gt=0, description="RAM for vector partitions; the least recently used beyond it live on disk and are "
        "read back on their next use (a 100k-memory user's partition takes about 60 MB).",
    )
    index_follow_interval_s: float = Field(
        1.0, gt=0, description="How often the indexes catch up with changes made by other processes."
    )
    scheduler: SchedulerConfig = SchedulerConfig()

    @model_validator(mode="after")
    def _neo4j_needs_uri(self) -> MemoryConfig:
        if self.graph_backend == "neo4j" and not self.neo4j_uri:
            raise ValueError("graph_backend='neo4j' needs neo4j_uri")
        if self.extractor == "llm" and not (self.extractor_url and self.extractor_model):
            raise ValueError("extractor='llm' needs extractor_url and extractor_model")
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
