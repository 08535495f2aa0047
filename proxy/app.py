"""The app factory: the one place where settings, the upstream client, services and routes are wired together."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from memory.config import MemoryConfig
from memory.engine import MemoryEngine
from proxy import __version__
from proxy.adapter_gateway import adapters_config, build_adapter_router
from proxy.adapters_api.api_router import router as adapters_router
from proxy.adapters_api.serving import AdaptersService
from proxy.auth import KeyRecord, KeyRing, read_keys_file
from proxy.chat.api_router import router as chat_router
from proxy.chat.prefill import PrefillRunner
from proxy.chat.serving import ChatCompletionsService
from proxy.errors import (
    ClientError,
    InternalError,
    NotFoundError,
    ProxyError,
    error_body,
    invalid_request_from_validation,
)
from proxy.identity import IdentityRules
from proxy.memories.api_router import router as memories_router
from proxy.memories.serving import MemoriesService
from proxy.memory_gateway import MemoryGateway, RecallSettings
from proxy.metrics import Metrics
from proxy.observability import RequestContextMiddleware
from proxy.routes import router as misc_router
from proxy.settings import Settings
from proxy.ui.router import router as ui_router
from proxy.upstream import UpstreamClient, build_http_client
from proxy.upstream_pool import UpstreamPool

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    http_client: httpx.AsyncClient | None = None,
    memory: MemoryEngine | None = None,
) -> FastAPI:
    """Build the ASGI app. ``http_client`` is injected by tests (e.g. with an ``httpx.MockTransport``); when it is
    not given the app builds a pooled client from the settings and closes it at shutdown. ``memory`` is an open
    engine owned by the caller; when it is not given and memory is enabled, the app opens one from the settings at
    start-up and closes it at shutdown."""
    settings = settings or Settings()
    owns_client = http_client is None
    client = http_client if http_client is not None else build_http_client(settings)
    keys = KeyRing(key_records(settings))
    upstream_key = settings.upstream_api_key.get_secret_value() if settings.upstream_api_key else None
    upstreams = UpstreamPool(
        [UpstreamClient(client, url, api_key=upstream_key) for url in settings.upstream_list],
        probe_interval_s=settings.upstream_probe_interval_s,
    )
    gateway = MemoryGateway(memory, recall_settings(settings))
    rules = IdentityRules.with_extra(settings.user_header, settings.conversation_header)
    metrics = Metrics()
    adapter_router = build_adapter_router(settings, client, upstream_key)
    if adapter_router is not None:
        metrics.add_counters("memproxy_adapter_routing", "Chats by adapter outcome: adapter, base, fallback:<reason>.",
                             "outcome", adapter_router.metrics.counts)
        loader = adapter_router.loader
        metrics.add_counters(
            "memproxy_adapter_loader", "Adapter loads and unloads (LRU evictions, erasures) sent to vLLM.", "event",
            lambda: {"load": loader.loads, "unload": loader.unloads},
        )
    prefill = PrefillRunner(
        settings.prefill_max_in_flight,
        delay_s=settings.prefill_delay_ms / 1000,
        align_tokens=settings.prefill_align_tokens,
    )
    metrics.watch_prefills(prefill)
    metrics.add_counters(
        "memproxy_extractions", "Write-path extraction outcomes (LLM extractor): ok or the fallback taken.",
        "outcome", lambda: _extraction_stats(gateway),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keys.warn_if_open()
        logger.info("memproxy %s forwarding to %s", __version__, ", ".join(settings.upstream_list))
        upstreams.start()
        await app.state.adapters_service.start()
        owned_engine = None
        if memory is None and settings.memory_enabled:
            try:
                owned_engine = await MemoryEngine.open(memory_config(settings))
                gateway.engine = owned_engine
            except Exception as exc:
                # Chats still work without memory; every response says so until the proxy is restarted.
                logger.exception("memory could not start; chats go on without it")
                gateway.unavailable = f"memory-unavailable:{type(exc).__name__}"
        try:
            yield
        finally:
            await prefill.close()
            await gateway.drain()
            await upstreams.close()
            if owned_engine is not None:
                await owned_engine.close()
            if owns_client:
                await client.aclose()

    app = FastAPI(
        title="memproxy",
        version=__version__,
        summary="OpenAI-compatible proxy that gives any chat model long-term memory.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.keys = keys
    app.state.identity_rules = rules
    app.state.upstreams = upstreams
    app.state.http_client = client
    app.state.metrics = metrics
    app.state.memory = gateway
    app.state.chat_service = ChatCompletionsService(
        upstreams,
        default_model=settings.default_model,
        memory=gateway,
        identity_rules=rules,
        cache_salt_secret=cache_salt_secret(settings) if settings.cache_salt else None,
        metrics=metrics,
        adapters=adapter_router,
        prefill=prefill,
    )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    app.state.adapters_service = AdaptersService(adapters_config(settings), gateway, rules, adapter_router)
    app.state.memories_service = MemoriesService(gateway, rules, app.state.adapters_service)
    app.include_router(chat_router)
    app.include_router(memories_router)
    app.include_router(adapters_router)
    app.include_router(misc_router)
    app.include_router(ui_router)
    _install_error_handlers(app)
    return app


def _extraction_stats(gateway: MemoryGateway) -> dict[str, int] | None:
    return gateway.engine.extractor.stats() if gateway.engine is not None else None


def key_records(settings: Settings) -> list[KeyRecord]:
    """Records from the keys file plus the clear keys of MEMPROXY_API_KEYS (hashed here, tenant and trust from
    the settings)."""
    records = read_keys_file(settings.keys_file) if settings.keys_file else []
    for digest in sorted(settings.api_key_digests):
        records.append(
            KeyRecord(
                digest=digest,
                tenant=settings.api_keys_tenant,
                user=f"key-{digest.hex()[:12]}",
                name=f"api-key-{digest.hex()[:12]}",
                trusted=settings.api_keys_trusted,
            )
        )
    return records


def recall_settings(settings: Settings) -> RecallSettings:
    return RecallSettings(
        top_k=settings.recall_top_k,
        preset=settings.recall_preset,
        token_budget=settings.recall_token_budget,
        timeout_s=settings.recall_timeout_ms / 1000,
        core_limit=settings.core_memory_limit,
        side_request_markers=tuple(settings.side_request_markers),
        layout=settings.prompt_layout,  # type: ignore[arg-type]  (validated by its pattern)
        anticipate=settings.recall_anticipate,
        late_top_k=settings.recall_late_top_k,
    )


def memory_config(settings: Settings) -> MemoryConfig:
    return MemoryConfig(
        data_dir=settings.data_dir,
        graph_backend=settings.graph_backend,  # type: ignore[arg-type]  (validated by MemoryConfig)
        neo4j_uri=settings.neo4j_uri,
        neo4j_user=settings.neo4j_user,
        neo4j_password=settings.neo4j_password,
        embedder=settings.embedder,  # type: ignore[arg-type]
        embedding_model=settings.embedding_model,
        recall_preset=settings.recall_preset,
        vector_ram_mb=settings.vector_ram_mb,
        query_max_tokens=settings.recall_query_max_tokens,
        # The LLM extractor is the upstream model itself (guided JSON decoding), unless configured otherwise.
        extractor=settings.extractor,  # type: ignore[arg-type]
        extractor_url=settings.extractor_url or settings.upstream_url,
        extractor_model=settings.extractor_model or settings.default_model,
        extractor_api_key=settings.upstream_api_key,
    )


def cache_salt_secret(settings: Settings) -> bytes:
    """The configured secret, else one generated once and kept in the data dir (so every restart, and every
    replica sharing the data dir, derives the same salts)."""
    if settings.cache_salt_secret is not None:
        return settings.cache_salt_secret.get_secret_value().encode()
    path = settings.data_dir / "cache-salt.secret"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_hex(32).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secret)
        return secret
    except FileExistsError:
        return path.read_bytes()
    except OSError as exc:
        logger.warning("cannot keep a cache-salt secret in %s (%s); using one for this process only", path, exc)
        return secrets.token_hex(32).encode()


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProxyError)
    async def proxy_error(request: Request, exc: ProxyError) -> JSONResponse:
        if not isinstance(exc, ClientError):
            logger.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc.message)
        headers = {"www-authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        error = invalid_request_from_validation(list(exc.errors()), {"body": exc.body})
        return JSONResponse(error.to_body(), status_code=error.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            body = NotFoundError(f"No route for {request.method} {request.url.path}.").to_body()
        else:
            body = error_body(str(exc.detail), "invalid_request_error", code=exc.status_code)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        error = InternalError("The proxy hit an internal error; it has been logged.")
        return JSONResponse(error.to_body(), status_code=error.status_code)
