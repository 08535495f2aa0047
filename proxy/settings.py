"""The one place that reads the environment: memproxy's settings, one tree of sections.

    Settings
      data_dir      server    upstream    auth    chat (recall into chats)    prefill (the next turn's)
      memory        the engine's own configuration (memory.MemoryConfig): graph, embedder, extractor, scheduler…
      adapters      per-user LoRA adapters (adapters.AdaptersConfig, and whether chats are routed to them)
      cli           where ``memproxy memories …`` finds the running proxy

Every leaf is a ``MEMPROXY_*`` variable (:mod:`proxy.settings_env` says how each is named; ``memproxy settings``
lists them). A value that is not valid stops the start with a line naming the variable and what it takes
(:func:`load_settings`). Nothing else in the code base looks at ``os.environ``; components receive the sections
they need from the app factory or the CLI.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from adapters.config import AdaptersConfig
from memory import MemoryConfig
from proxy.settings_env import PREFIX, Variables


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "memproxy"


def _default_cache_dir() -> Path:
    """deploy/local/vllm-cpu.sh's cache dir (its venv and the converted model): MEMPROXY_CACHE_DIR, else
    $XDG_CACHE_HOME/memproxy, else ~/.cache/memproxy."""
    if os.environ.get("MEMPROXY_CACHE_DIR"):
        return Path(os.environ["MEMPROXY_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "memproxy"


def _comma_list(value: object) -> object:
    """A list given as one string (an environment variable): comma-separated, blanks dropped."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _url(value: object) -> object:
    return value.rstrip("/") if isinstance(value, str) else value


def _root(url: str) -> str:
    """A …/v1 URL's server root (vLLM's own routes: /tokenize, /metrics, the LoRA API)."""
    return url.rstrip("/").removesuffix("/v1")


def _llm(given: Given) -> bool:
    extractor = given["memory.extractor"]
    return (extractor.get("kind") if isinstance(extractor, dict) else getattr(extractor, "kind", None)) == "llm"


CommaList = Annotated[list[str], BeforeValidator(_comma_list)]
Section = ConfigDict(frozen=True, extra="forbid")


class ServerSettings(BaseModel):
    model_config = Section

    host: str = Field("127.0.0.1", description="Address the proxy listens on.")
    port: int = Field(8080, ge=1, le=65535, description="Port the proxy listens on.")
    log_level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(str.lower)] = Field(
        "info", description="Log level."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="text, or json (one object per line, with the request id)."
    )
    max_body_mb: float = Field(
        32.0, gt=0, description="A request body larger than this is refused (413) before it is read whole."
    )


class UpstreamSettings(BaseModel):
    model_config = Section

    url: Annotated[str, BeforeValidator(_url)] = Field(
        "http://127.0.0.1:8000/v1", description="Base URL of the OpenAI-compatible upstream (vLLM), including /v1."
    )
    urls: CommaList = Field(
        default_factory=list,
        description="Several upstream replicas (comma-separated …/v1 URLs); each user is routed to the same one "
        "(rendezvous hashing over the healthy ones). Overrides the single URL when set.",
    )
    api_key: SecretStr | None = Field(
        None, description="Bearer token sent to the upstream, if it needs one (clients' keys are never forwarded)."
    )
    default_model: str = Field("SmolLM2-135M-Instruct", description="Model used when a request names none.")
    probe_interval_s: float = Field(5.0, gt=0, description="Health probe interval when there are several upstreams.")
    connect_timeout_s: float = Field(5.0, gt=0, description="Seconds to connect to the upstream (then 504).")
    read_timeout_s: float = Field(
        300.0, gt=0, description="Seconds to wait for the upstream's next bytes, first token or next chunk (then 504, "
        "or an error frame mid-stream).",
    )
    write_timeout_s: float = Field(30.0, gt=0, description="Seconds to send a request body upstream.")
    pool_timeout_s: float = Field(10.0, gt=0, description="Seconds to wait for a free upstream connection.")
    max_connections: int = Field(256, ge=1, description="Connection pool size towards the upstream.")

    @property
    def replicas(self) -> list[str]:
        return [url.rstrip("/") for url in self.urls] or [self.url]



class AuthSettings(BaseModel):
    model_config = Section

    api_keys: Annotated[list[SecretStr], BeforeValidator(_comma_list)] = Field(
        default_factory=list,
        description="Accepted client API keys, comma-separated. None configured = open (dev mode, with a warning).",
    )
    keys_file: Path | None = Field(
        None, description="JSON file of key records by SHA-256: [{sha256, tenant, user?, name?, trusted?, admin?, "
        "cache_salt?}] (`memproxy keys hash`).",
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
        None, description="Secret the per-tenant cache_salt is derived from; none = one generated in the data dir."
    )

    @property
    def api_key_digests(self) -> frozenset[bytes]:
        """SHA-256 digests of the configured keys; requests are checked against these, never the clear keys."""
        return frozenset(hashlib.sha256(key.get_secret_value().encode()).digest() for key in self.api_keys)


class LimitSettings(BaseModel):
    """Per API key limits on the ``/v1`` routes, answered 429 with ``Retry-After`` (:mod:`proxy.limits`)."""

    model_config = Section

    requests_per_minute: float = Field(0, ge=0, description="Requests a key may start per minute (0: no limit).")
    burst: int | None = Field(
        None, ge=1, description="Requests a key may start at once after a quiet spell (default: a minute's worth)."
    )
    max_concurrent: int = Field(0, ge=0, description="Requests of one key in flight at once, streams included (0: no "
                                "limit).")  # fmt: skip


class ChatMemorySettings(BaseModel):
    """What memory does for a chat (the engine's own settings are in ``memory``)."""

    model_config = Section

    enabled: bool = Field(True, description="Recall into chats and remember them; false = a plain proxy.")
    top_k: int = Field(6, ge=0, le=100, description="Memories recalled into a chat by default.")
    token_budget: int = Field(
        300, ge=0, description="The recalled memories' tokens at most (estimated; one that does not fit is skipped)."
    )
    timeout_ms: float = Field(
        250.0, gt=0, description="Recall slower than this is abandoned: the chat goes on without it (degraded)."
    )
    layout: Literal["cache-aware", "naive"] = Field(
        "cache-aware", description="cache-aware, or naive: memories at the top of the system prompt (a baseline)."
    )
    anticipate: bool = Field(
        True, description="After each answer, recall for the next turn and prefill that block into vLLM's prefix "
        "cache while the user types (cache-aware layout); the next message then only computes what is new.",
    )
    late_top_k: int = Field(
        2, ge=0, le=100, description="With a prefilled block in place: of this many memories most relevant to the "
        "newest message, those the prompt lacks are added (0: none, the fastest first token).",
    )
    core_limit: int = Field(20, ge=0, description="Most core-memory facts rendered after the system prompt.")
    queue_timeout_ms: float = Field(
        2000.0, gt=0, description="The end of an answer (the JSON body; a stream's last frames) waits until its "
        "exchange is queued durably, so an answered chat survives a crash; a queue slower than this lets the answer "
        "go, the write goes on in the background (counted as late).",
    )
    side_request_markers: CommaList = Field(
        default_factory=lambda: ["### Task:"],
        description="A request whose last user message starts with one of these (Open WebUI's title / tags / "
        "follow-up prompts) is answered without recall and not remembered. Comma-separated.",
    )


class PrefillSettings(BaseModel):
    """The next turn's memories sent ahead into the upstream's prefix cache (:mod:`proxy.chat.prefill`)."""

    model_config = Section

    max_in_flight: int = Field(4, ge=0, description="Most next-turn prefills at once (more are skipped); 0 = never.")
    align_tokens: int = Field(
        128, ge=0, le=4096, description="The upstream's KV cache block size (vLLM's --block-size): each prefill is "
        "padded to end on a block boundary, so the next turn reuses all of it. 0 = no padding.",
    )
    delay_ms: float = Field(
        250.0, ge=0, description="A prefill starts only after this long without a new chat on the proxy (idle-time "
        "work: on a busy proxy it is skipped).",
    )


class AdaptersSettings(AdaptersConfig):
    enabled: bool = Field(
        False, description="Per-user LoRA adapters: route a user with a ready adapter to it (loaded into vLLM)."
    )


class CliSettings(BaseModel):
    model_config = Section

    url: str = Field("http://127.0.0.1:8080", description="Where `memproxy memories …` finds the running proxy.")
    api_key: SecretStr | None = Field(None, description="API key `memproxy memories …` sends without --api-key.")


class Settings(BaseSettings):
    """memproxy's configuration; see the module docstring. Keyword arguments take the variables' names without
    the prefix (``Settings(recall_top_k=2)``) or whole sections (``Settings(chat={"top_k": 2})``)."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="The graph store, vector index, write queue, adapters and cache-salt secret.",
    )
    server: ServerSettings = Field(default_factory=ServerSettings)
    upstream: UpstreamSettings = Field(default_factory=UpstreamSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    chat: ChatMemorySettings = Field(default_factory=ChatMemorySettings)
    prefill: PrefillSettings = Field(default_factory=PrefillSettings)
    memory: MemoryConfig
    adapters: AdaptersSettings
    cli: CliSettings = Field(default_factory=CliSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, EnvironmentSource(settings_cls)

    @model_validator(mode="before")
    @classmethod
    def _tree(cls, values: Any) -> Any:
        """Variables' names into the tree, then what defaults to other settings (see :func:`_derive`)."""
        return _derive(VARIABLES.fold(values)) if isinstance(values, dict) else values


class EnvironmentSource(PydanticBaseSettingsSource):
    """Every ``MEMPROXY_*`` variable of the tree that is set, by its keyword (folded by :meth:`Settings._tree`)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # not used: __call__ reads every variable at once

    def __call__(self) -> dict[str, Any]:
        environ = {name.upper(): value for name, value in os.environ.items() if name.upper().startswith(PREFIX)}
        return {v.key: environ[v.name] for v in VARIABLES.all if v.name in environ}


@dataclass(frozen=True, slots=True)
class Derived:
    """A setting whose default is another setting's value."""

    path: tuple[str, ...]
    shown: str
    """The default as the settings table says it."""
    value: Callable[[Given], Any]
    applies: Callable[[Given], bool] = lambda given: True


class Given:
    """The settings as given (keywords folded into the tree), with the models' defaults where none is given."""

    def __init__(self, tree: dict[str, Any]) -> None:
        self.tree = tree

    def __getitem__(self, dotted: str) -> Any:
        node: Any = self.tree
        model: type[BaseModel] = Settings
        for step in dotted.split("."):
            field = model.model_fields[step]
            value = node.get(step) if isinstance(node, dict) else getattr(node, step, None)
            node = field.get_default(call_default_factory=True) if value is None else value
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                model = field.annotation
        return node


DERIVED_DEFAULTS = (
    Derived(("memory", "data_dir"), "`MEMPROXY_DATA_DIR`", lambda given: given["data_dir"]),
    Derived(
        ("adapters", "adapters_dir"), "`MEMPROXY_DATA_DIR`/adapters", lambda given: Path(given["data_dir"]) / "adapters"
    ),
    Derived(
        ("adapters", "base_model_path"), "the model `make run` serves (`~/.cache/memproxy/models/…`)",
        lambda given: _default_cache_dir() / "models" / "SmolLM2-135M-Instruct",
    ),
    Derived(("adapters", "base_model"), "`MEMPROXY_DEFAULT_MODEL`", lambda given: given["upstream.default_model"]),
    Derived(
        ("adapters", "vllm_url"), "`MEMPROXY_UPSTREAM_URL` without /v1", lambda given: _root(given["upstream.url"])
    ),
    Derived(("memory", "extractor", "url"), "`MEMPROXY_UPSTREAM_URL`", lambda given: _url(given["upstream.url"]), _llm),
    Derived(
        ("memory", "extractor", "model"), "`MEMPROXY_DEFAULT_MODEL`", lambda given: given["upstream.default_model"], _llm
    ),
    Derived(
        ("memory", "extractor", "api_key"), "`MEMPROXY_UPSTREAM_API_KEY`", lambda given: given["upstream.api_key"], _llm
    ),
)
"""The LLM extractor defaults to the upstream and its default model; the engine keeps its data in the proxy's data
dir; the adapters live there too and are served by the upstream's vLLM as its default model."""


def _derive(tree: dict[str, Any]) -> dict[str, Any]:
    """Fill in each setting of :data:`DERIVED_DEFAULTS` that was not given."""
    given = Given(tree)
    for derived in DERIVED_DEFAULTS:
        if not derived.applies(given):
            continue
        node = tree
        for step in derived.path[:-1]:
            child = node.get(step)
            node[step] = child = dict(child.model_dump() if isinstance(child, BaseModel) else child or {})
            node = child
        node.setdefault(derived.path[-1], derived.value(given))
    return tree


VARIABLES = Variables(Settings, shown={".".join(d.path): d.shown for d in DERIVED_DEFAULTS})


class SettingsError(ValueError):
    """Settings that are not valid: one line per setting, naming its variable."""


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment and ``overrides``; SettingsError says what is wrong, variable by
    variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError("\n".join(VARIABLES.describe(exc))) from None


def child_environment(**overrides: str) -> dict[str, str]:
    """The environment for a child process memproxy starts (vLLM, a proxy for a benchmark): this process's own
    (HF_HUB_OFFLINE, PATH, …) plus ``overrides``. Here so that the environment is read in one module only."""
    return {**os.environ, **overrides}
