"""Builds the adapters package's parts from the proxy's settings: the one place that maps MEMPROXY_ADAPTERS_* onto
``adapters.config`` and picks the loader (vLLM's runtime API or its filesystem resolver)."""

from __future__ import annotations

import argparse

import httpx

from adapters.config import AdaptersConfig, TrainingConfig
from adapters.loader import AdapterLoader, ResolverAdapterLoader, VllmAdapterLoader
from adapters.registry import AdapterRegistry
from adapters.routing import AdapterRouter
from memory.config import MemoryConfig
from proxy.settings import Settings


def adapters_config(settings: Settings) -> AdaptersConfig:
    vllm_url = settings.adapters_vllm_url or settings.upstream_url.removesuffix("/v1")
    return AdaptersConfig(
        adapters_dir=settings.adapters_dir or settings.data_dir / "adapters",
        base_model_path=settings.adapters_base_model_path,
        base_model=settings.default_model,
        vllm_url=vllm_url,
        max_loaded=settings.adapters_max_loaded,
        loader=settings.adapters_loader,  # type: ignore[arg-type]  (validated by its pattern)
        refresh_s=settings.adapters_refresh_s,
        training=TrainingConfig(
            epochs=settings.adapters_train_epochs,
            threads=settings.adapters_train_threads,
            min_ppl_reduction=settings.adapters_min_ppl_reduction,
            max_general_ppl_increase=settings.adapters_max_general_ppl_increase,
        ),
    )


def build_loader(config: AdaptersConfig, client: httpx.AsyncClient, api_key: str | None = None) -> AdapterLoader:
    if config.loader == "resolver":
        return ResolverAdapterLoader()
    return VllmAdapterLoader(
        client, config.vllm_url, max_loaded=config.max_loaded, timeout_s=config.load_timeout_s, api_key=api_key
    )


def build_adapter_router(
    settings: Settings, client: httpx.AsyncClient, api_key: str | None = None
) -> AdapterRouter | None:
    """The chat path's router, or None when per-user adapters are off. Opens nothing yet (the registry database
    is created by its first read)."""
    if not settings.adapters_enabled:
        return None
    config = adapters_config(settings)
    return AdapterRouter(
        AdapterRegistry(config.registry_path), build_loader(config, client, api_key),
        base_model=config.base_model, refresh_s=config.refresh_s,
    )


def adapters_cli_config(args: argparse.Namespace) -> tuple[AdaptersConfig, MemoryConfig]:
    """For ``memproxy adapters …``: the adapters and memory configuration from MEMPROXY_* settings."""
    from proxy.app import memory_config

    settings = Settings()
    return adapters_config(settings), memory_config(settings)
