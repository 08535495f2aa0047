"""One configuration object for the memory engine. The library reads no environment variables: the proxy's
settings module (or your own code) builds this object."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from memory.embedding.config import EmbedderConfig, OnnxEmbedderConfig
from memory.graph.backends import GraphConfig
from memory.graph.sqlite.config import SqliteGraphConfig
from memory.recall.presets import DEFAULT_PRESET, PRESETS
from memory.writes.extraction_config import DeterministicExtractorConfig, ExtractorConfig

DAY_S = 86_400.0


class SchedulerConfig(BaseModel):
    """The memory scheduler (:mod:`memory.scheduler`): decay, retention, promotion into core memory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="Run the maintenance: decay, the expiry sweep, core memory promotion.")
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
    max_memories_per_user: int = Field(
        0, ge=0, description="Most active memories a user keeps (0: no cap). Past it, after each write and each run, "
        "the least important go first, the oldest among equals; core and pinned memories never.",
    )


class MemoryConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Field(..., description="Where the embedded store, the vector index and the write queue live.")
    tenant: str = Field("default", description="Tenant used when a call names none (single-tenant library use).")

    graph: GraphConfig = Field(
        default_factory=SqliteGraphConfig,
        description="The graph store, the system of record: sqlite (embedded, no server) or neo4j (a server).",
    )
    embedder: EmbedderConfig = Field(
        default_factory=OnnxEmbedderConfig,
        description="The embedding runtime: onnx (MiniLM int8, the fast query path), torch (sentence-transformers as "
        "is) or use (Universal Sentence Encoder multilingual v3: Japanese, Chinese, Korean and 13 more languages).",
    )
    extractor: ExtractorConfig = Field(
        default_factory=DeterministicExtractorConfig,
        description="What the write pipeline extracts: deterministic (each turn an episode, simple entities, no "
        "model) or llm (facts from a chat model with a JSON schema, on top of the episodes; the deterministic "
        "result is the fallback).",
    )
    dedupe_threshold: float = Field(
        0.95, gt=0.0, le=1.0, description="A new memory this similar (cosine) to one of the same kind merges into it."
    )
    recall_preset: str = Field(
        DEFAULT_PRESET, description=f"Recall preset when a call names none: {', '.join(PRESETS)}."
    )
    index_save_interval_s: float = Field(30.0, gt=0, description="How often the vector index is saved to disk.")
    vector_ram_mb: float = Field(
        256.0, gt=0, description="RAM for vector partitions; the least recently used beyond it live on disk and are "
        "read back on their next use.",
    )
    multilingual: bool = Field(
        True,
        description="Users who write Chinese, Japanese or Korean get a second vector space (the Universal Sentence "
        "Encoder's, read by recall for their questions in any language); off = the main embedder alone. Unused when "
        "the main embedder is already use.",
    )
    multilingual_ram_mb: float = Field(
        64.0, gt=0, description="RAM for the multilingual vector partitions (as vector_ram_mb, for that space)."
    )
    index_follow_interval_s: float = Field(
        1.0, gt=0, description="How often the indexes catch up with changes made by other processes."
    )
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig, description="Decay, retention, core memory.")

    @field_validator("recall_preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        if value not in PRESETS:
            raise ValueError(f"unknown recall preset {value!r}; choose one of {', '.join(PRESETS)}")
        return value

    @property
    def queue_path(self) -> Path:
        return self.data_dir / "write-queue.sqlite3"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "vectors"

    @property
    def multilingual_dir(self) -> Path:
        return self.data_dir / "vectors-multilingual"
