"""The one place that reads the environment: every memproxy setting, prefixed ``MEMPROXY_``.

Nothing else in the code base looks at ``os.environ``; components receive the values they need from a
:class:`Settings` instance built by the app factory or the CLI.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "memproxy"


def _default_cache_dir() -> Path:
    """deploy/local/vllm-cpu.sh's cache dir (its venv and the converted model): MEMPROXY_CACHE_DIR, else
    $XDG_CACHE_HOME/memproxy, else ~/.cache/memproxy."""
    import os

    if os.environ.get("MEMPROXY_CACHE_DIR"):
        return Path(os.environ["MEMPROXY_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "memproxy"


class Settings(BaseSettings):
    """memproxy's configuration. Every field can be set as ``MEMPROXY_<FIELD>`` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="MEMPROXY_", extra="ignore", frozen=True)

    upstream_url: str = Field(
        "http://127.0.0.1:8000/v1",
        description="Base URL of the OpenAI-compatible upstream (vLLM), including /v1.",
    )
    upstream_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Several upstream replicas (comma-separated …/v1 URLs); each user is routed to the same one "
        "(rendezvous hashing over the healthy ones). Overrides upstream_url when set.",
    )
    upstream_probe_interval_s: float = Field(5.0, gt=0, description="Health probe interval for several upstreams.")
    upstream_api_key: SecretStr | None = Field(None, description="Bearer token sent to the upstream, if it needs one.")
    default_model: str = Field(
        "SmolLM2-135M-Instruct",
        description="Model used when a request names none.",
    )
    host: str = Field("127.0.0.1", description="Address the proxy listens on.")
    port: int = Field(8080, ge=1, le=65535, description="Port the proxy listens on.")
    data_dir: Path = Field(default_factory=_default_data_dir, description="Where memory data is kept.")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Accepted client API keys, comma-separated. None configured = open (dev mode).",
    )
    keys_file: Path | None = Field(
        None,
        description="JSON file of key records: [{sha256, tenant, user?, name?, trusted?, admin?, cache_salt?}]. "
        "Keys are configured by their SHA-256 only (`memproxy keys hash`).",
    )
    api_keys_tenant: str = Field("default", description="Tenant of the clear keys in MEMPROXY_API_KEYS.")
    api_keys_trusted: bool = Field(
        True, description="Whether the clear keys in MEMPROXY_API_KEYS may assert end users (body user / header)."
    )
    user_header: str | None = Field(
        None, description="Extra header naming the end user (trusted keys only), besides X-OpenWebUI-User-Id."
    )
    conversation_header: str | None = Field(
        None, description="Extra header naming the conversation, besides X-OpenWebUI-Chat-Id."
    )
    cache_salt: bool = Field(True, description="Send a per-tenant cache_salt upstream (vLLM prefix-cache isolation).")
    cache_salt_secret: SecretStr | None = Field(
        None, description="Secret the per-tenant cache_salt is derived from; default: one generated in data_dir."
    )
    memory_enabled: bool = Field(True, description="Recall into chats and remember them. Off = a plain proxy.")
    recall_top_k: int = Field(6, ge=0, le=100, description="Memories recalled into a chat by default.")
    recall_preset: str = Field("balanced", description="Recall preset used by chats (balanced, precise, broad, fast).")
    recall_token_budget: int = Field(300, ge=0, description="Upper bound on the recalled block's tokens (estimated).")
    recall_timeout_ms: float = Field(
        250.0, gt=0, description="Recall slower than this is abandoned: the chat goes on without it (degraded)."
    )
    prompt_layout: str = Field(
        "cache-aware",
        description="cache-aware (default) or naive: memories at the top of the system prompt, for comparison only.",
        pattern="^(cache-aware|naive)$",
    )
    recall_anticipate: bool = Field(
        True,
        description="After each answer, recall for the next turn and prefill that block into vLLM's prefix cache "
        "while the user types (cache-aware layout); the next message then only computes what is new.",
    )
    recall_late_top_k: int = Field(
        2, ge=0, le=100, description="With an anticipated block in place: of this many memories most relevant to "
        "the newest message, those the prompt lacks are added (they are computed while the user waits).",
    )
    prefill_max_in_flight: int = Field(
        4, ge=0, description="Most next-turn prefills running at once (more are skipped); 0 = never prefill."
    )
    prefill_align_tokens: int = Field(
        128, ge=0, le=4096, description="The upstream's KV cache block size (vLLM's --block-size; 128 on CPU): each "
        "next-turn prefill is padded to end on a block boundary, so the next turn reuses all of it. 0 = no padding.",
    )
    prefill_delay_ms: float = Field(
        250.0, ge=0, description="A next-turn prefill starts only after this long without a new chat on the proxy "
        "(idle-time work: on a busy proxy it is skipped).",
    )
    core_memory_limit: int = Field(20, ge=0, description="Most core-memory facts rendered after the system prompt.")
    vector_ram_mb: float = Field(
        256.0, gt=0, description="RAM for the vector index; users beyond it are read back from disk when they chat."
    )
    recall_query_max_tokens: int = Field(
        64, ge=8, description="Recall embeds the query's first this many tokens (its cost grows with each token)."
    )
    side_request_markers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["### Task:"],
        description="A request whose last user message starts with one of these (Open WebUI's title / tags / "
        "follow-up prompts) is answered without recall and not remembered. Comma-separated.",
    )
    extractor: str = Field(
        "deterministic",
        description="Memory extraction: deterministic (episodes + simple entities) or llm (facts via guided JSON; "
        "falls back to deterministic on invalid output).",
        pattern="^(deterministic|llm)$",
    )
    extractor_url: str | None = Field(None, description="OpenAI-compatible URL for the llm extractor; default upstream.")
    extractor_model: str | None = Field(None, description="Model for the llm extractor; default the default model.")
    embedder: str = Field("onnx", description="Embedding runtime: onnx (fast) or torch.")
    embedding_model: Path | None = Field(None, description="Local sentence-transformers folder; default MiniLM.")
    graph_backend: str = Field("sqlite", description="Graph store: sqlite (embedded) or neo4j.")
    neo4j_uri: str | None = Field(None, description="bolt:// or neo4j:// URI when graph_backend=neo4j.")
    neo4j_user: str = Field("neo4j", description="Neo4j user.")
    neo4j_password: SecretStr | None = Field(None, description="Neo4j password.")
    connect_timeout_s: float = Field(5.0, gt=0, description="Seconds to connect to the upstream.")
    read_timeout_s: float = Field(
        300.0, gt=0, description="Seconds to wait for the upstream's next bytes (first token or next chunk)."
    )
    write_timeout_s: float = Field(30.0, gt=0, description="Seconds to send a request body upstream.")
    pool_timeout_s: float = Field(10.0, gt=0, description="Seconds to wait for a free upstream connection.")
    max_upstream_connections: int = Field(256, ge=1, description="Connection pool size towards the upstream.")
    adapters_enabled: bool = Field(
        False, description="Per-user LoRA adapters: route a user with a ready adapter to it (loaded into vLLM)."
    )
    adapters_dir: Path | None = Field(None, description="Adapter versions and their registry; default data_dir/adapters.")
    adapters_base_model_path: Path = Field(
        default_factory=lambda: _default_cache_dir() / "models" / "SmolLM2-135M-Instruct",
        description="HF folder of the base model the adapters are trained on (what vLLM serves as --model).",
    )
    adapters_vllm_url: str | None = Field(
        None, description="vLLM's root URL for its LoRA API (/v1/load_lora_adapter); default: upstream_url's root."
    )
    adapters_max_loaded: int = Field(
        4, ge=1, description="Adapters kept loaded in vLLM at once, least recently used unloaded first."
    )
    adapters_loader: str = Field(
        "runtime",
        pattern="^(runtime|resolver)$",
        description="runtime: load through vLLM's LoRA API; resolver: vLLM's filesystem resolver plugin reads "
        "adapters_dir itself (remote vLLM on a shared volume).",
    )
    adapters_refresh_s: float = Field(2.0, ge=0, description="How long a user's current adapter is cached.")
    adapters_min_ppl_reduction: float = Field(
        0.30, ge=0, lt=1, description="Publish an adapter only if held-out perplexity drops at least this much."
    )
    adapters_max_general_ppl_increase: float = Field(
        0.05, ge=0, description="…and perplexity on neutral text rises at most this much."
    )
    adapters_train_epochs: int = Field(4, ge=1, description="Training epochs over the user's instruction pairs.")
    adapters_train_threads: int | None = Field(None, ge=1, description="torch threads for training; default all.")
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")
    log_format: str = Field("text", description="text, or json (one object per line, with the request id).",
                            pattern="^(text|json)$")
    cli_url: str = Field(
        "http://127.0.0.1:8080", description="Where `memproxy memories …` finds the running proxy (its --url)."
    )
    cli_api_key: SecretStr | None = Field(
        None, description="API key `memproxy memories …` sends when --api-key is not given."
    )

    @field_validator("api_keys", "side_request_markers", "upstream_urls", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("upstream_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def upstream_list(self) -> list[str]:
        return [url.rstrip("/") for url in self.upstream_urls] or [self.upstream_url]

    @property
    def api_key_digests(self) -> frozenset[bytes]:
        """SHA-256 digests of the configured keys; requests are checked against these, never the clear keys."""
        return frozenset(hashlib.sha256(key.get_secret_value().encode()).digest() for key in self.api_keys)


def child_environment(**overrides: str) -> dict[str, str]:
    """The environment for a child process memproxy starts (vLLM, a proxy for a benchmark): this process's own
    (HF_HUB_OFFLINE, PATH, …) plus ``overrides``. Here so that the environment is read in one module only."""
    return {**os.environ, **overrides}
