"""The one place that reads the environment: every memproxy setting, prefixed ``MEMPROXY_``.

Nothing else in the code base looks at ``os.environ``; components receive the values they need from a
:class:`Settings` instance built by the app factory or the CLI.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "memproxy"


class Settings(BaseSettings):
    """memproxy's configuration. Every field can be set as ``MEMPROXY_<FIELD>`` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="MEMPROXY_", extra="ignore", frozen=True)

    upstream_url: str = Field(
        "http://127.0.0.1:8000/v1",
        description="Base URL of the OpenAI-compatible upstream (vLLM), including /v1.",
    )
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
    connect_timeout_s: float = Field(5.0, gt=0, description="Seconds to connect to the upstream.")
    read_timeout_s: float = Field(
        300.0, gt=0, description="Seconds to wait for the upstream's next bytes (first token or next chunk)."
    )
    write_timeout_s: float = Field(30.0, gt=0, description="Seconds to send a request body upstream.")
    pool_timeout_s: float = Field(10.0, gt=0, description="Seconds to wait for a free upstream connection.")
    max_upstream_connections: int = Field(256, ge=1, description="Connection pool size towards the upstream.")
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")

    @field_validator("api_keys", mode="before")
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
    def api_key_digests(self) -> frozenset[bytes]:
        """SHA-256 digests of the configured keys; requests are checked against these, never the clear keys."""
        return frozenset(hashlib.sha256(key.get_secret_value().encode()).digest() for key in self.api_keys)
