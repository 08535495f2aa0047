"""Builds the adapters package's parts from the proxy's settings: the loader (vLLM's runtime API or its filesystem
resolver) and the chat path's router."""

from __future__ import annotations

import argparse

import httpx

from adapters.config import AdaptersConfig
from adapters.loader import AdapterLoader, ResolverAdapterLoader, VllmAdapterLoader
from adapters.registry import AdapterRegistry
from adapters.routing import AdapterRouter
from memory import MemoryConfig
from proxy.settings import AdaptersSettings, load_settings


def build_loader(config: AdaptersConfig, client: httpx.AsyncClient, api_key: str | None = None) -> AdapterLoader:
    if config.loader == "resolver":
        return ResolverAdapterLoader()
    return VllmAdapterLoader(
        client, config.vllm_url, max_loaded=config.max_loaded, timeout_s=config.load_timeout_s, api_key=api_key
    )


def build_adapter_router(
    settings: AdaptersSettings, client: httpx.AsyncClient, api_key: str | None = None
) -> AdapterRouter | None:
    """The chat path's router, or None when per-user adapters are off. Opens nothing yet (the registry database
    is created by its first read)."""
    if not settings.enabled:
        return None
    return AdapterRouter(
        AdapterRegistry(settings.registry_path), build_loader(settings, client, api_key),
        base_model=settings.base_model, refresh_s=settings.refresh_s,
    )  # fmt: skip


def adapters_cli_config(args: argparse.Namespace) -> tuple[AdaptersConfig, MemoryConfig]:
    """For ``memproxy adapters …``: the adapters and memory configuration from MEMPROXY_* settings."""
    settings = load_settings()
    return settings.adapters, settings.memory
