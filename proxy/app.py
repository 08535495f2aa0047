"""The app factory: the one place where settings, the upstream client, services and routes are wired together."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from memory import MemoryEngine
from proxy import __version__
from proxy.adapter_gateway import build_adapter_router
from proxy.adapters_api.api_router import router as adapters_router
from proxy.adapters_api.serving import AdaptersService
from proxy.auth import KeyRecord, KeyRing, read_keys_file
from proxy.chat.api_router import SCHEMAS as CHAT_SCHEMAS
from proxy.chat.api_router import router as chat_router
from proxy.chat.memory import ChatMemory
from proxy.chat.prefill import NextTurnPrefill
from proxy.chat.serving import ChatCompletionsService
from proxy.errors import (
    ClientError,
    InternalError,
    InvalidRequestError,
    NotFoundError,
    ProxyError,
    body_for_path,
    error_body,
    invalid_request_from_validation,
)
from proxy.identity import IdentityRules
from proxy.limits import BodyLimitMiddleware, KeyLimiter, LimitsMiddleware
from proxy.mcp_server import McpEndpoint
from proxy.memories.api_router import router as memories_router
from proxy.memories.serving import MemoriesService
from proxy.memory_access import MemoryAccess
from proxy.messages.api_router import SCHEMAS as MESSAGES_SCHEMAS
from proxy.messages.api_router import router as messages_router
from proxy.metrics import Metrics
from proxy.observability import RequestContextMiddleware
from proxy.passthrough.api_router import router as passthrough_router
from proxy.passthrough.serving import PassthroughService
from proxy.responses.api_router import SCHEMAS as RESPONSES_SCHEMAS
from proxy.responses.api_router import router as responses_router
from proxy.routes import router as misc_router
from proxy.settings import AuthSettings, Settings, load_settings
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
    """Build the ASGI app: every service, wired here and nowhere else. ``http_client`` is injected by tests (e.g.
    with an ``httpx.MockTransport``); when it is not given the app builds a pooled client from the settings and
    closes it at shutdown. ``memory`` is an open engine owned by the caller; when it is not given and memory is
    enabled, the app opens one from the settings at start-up and closes it at shutdown."""
    settings = settings or load_settings()
    owns_client = http_client is None
    client = http_client if http_client is not None else build_http_client(settings.upstream)
    keys = KeyRing(key_records(settings.auth))
    upstream_key = settings.upstream.api_key.get_secret_value() if settings.upstream.api_key else None
    upstreams = UpstreamPool(
        [UpstreamClient(client, url, api_key=upstream_key) for url in settings.upstream.replicas],
        probe_interval_s=settings.upstream.probe_interval_s,
    )
    engine = MemoryAccess(engine=memory, config=settings.memory if settings.chat.enabled else None)
    rules = IdentityRules.with_extra(settings.auth.user_header, settings.auth.conversation_header)
    metrics = Metrics()
    adapter_router = build_adapter_router(settings.adapters, client, upstream_key)
    chat_memory = ChatMemory(engine, settings.chat)
    prefill = NextTurnPrefill(chat_memory, settings.prefill)
    adapters_service = AdaptersService(settings.adapters, engine, rules, adapter_router)
    memories_service = MemoriesService(engine, rules, adapters_service)
    mcp = McpEndpoint(memories_service)
    chat_service = ChatCompletionsService(
        upstreams,
        default_model=settings.upstream.default_model,
        memory=chat_memory,
        prefill=prefill,
        identity_rules=rules,
        metrics=metrics,
        cache_salt_secret=cache_salt_secret(settings) if settings.auth.cache_salt else None,
        adapters=adapter_router,
    )
    metrics.watch_memory(engine)
    metrics.watch_upstreams(upstreams, client)
    metrics.watch_prefills(prefill.runner)
    if adapter_router is not None:
        metrics.watch_adapters(adapter_router)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keys.warn_if_open()
        logger.info("memproxy %s forwarding to %s", __version__, ", ".join(settings.upstream.replicas))
        upstreams.start()
        await adapters_service.start()
        await engine.start()
        try:
            async with mcp.run():
                yield
        finally:
            await prefill.runner.close()
            await chat_memory.drain()
            await adapters_service.close()
            await upstreams.close()
            await engine.close()
            if owns_client:
                await client.aclose()

    app = FastAPI(
        title="memproxy",
        version=__version__,
        summary="OpenAI-compatible proxy that gives any chat model long-term memory.",
        lifespan=lifespan,
    )
    app.state.keys = keys
    app.state.upstreams = upstreams
    app.state.metrics = metrics
    app.state.chat_memory = chat_memory
    app.state.chat_service = chat_service
    app.state.adapters_service = adapters_service
    app.state.memories_service = memories_service
    app.state.passthrough_service = PassthroughService(upstreams, identity_rules=rules)
    app.add_middleware(LimitsMiddleware, limiter=KeyLimiter(settings.limits), metrics=metrics)
    app.add_middleware(BodyLimitMiddleware, max_bytes=int(settings.server.max_body_mb * 2**20))
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    app.include_router(chat_router)
    app.include_router(responses_router)
    app.include_router(messages_router)
    app.include_router(memories_router)
    app.include_router(adapters_router)
    app.include_router(misc_router)
    app.include_router(ui_router)
    app.add_route("/mcp", mcp, include_in_schema=False)  # the MCP server (streamable HTTP), same keys
    app.include_router(passthrough_router)  # last: every other /v1/* route, to the upstream as it is
    _install_error_handlers(app)
    _add_schemas(app, CHAT_SCHEMAS | RESPONSES_SCHEMAS | MESSAGES_SCHEMAS)
    return app


def _add_schemas(app: FastAPI, schemas: dict[str, Any]) -> None:
    """The OpenAPI document with ``schemas`` among its components (referenced by a route's own request body)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            document.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def key_records(settings: AuthSettings) -> list[KeyRecord]:
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


def cache_salt_secret(settings: Settings) -> bytes:
    """The configured secret, else one generated once and kept in the data dir (so every restart, and every
    replica sharing the data dir, derives the same salts)."""
    if settings.auth.cache_salt_secret is not None:
        return settings.auth.cache_salt_secret.get_secret_value().encode()
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
        return JSONResponse(body_for_path(exc, request.url.path), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        error = invalid_request_from_validation(list(exc.errors()), {"body": exc.body})
        return JSONResponse(body_for_path(error, request.url.path), status_code=error.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            body = NotFoundError(f"No route for {request.method} {request.url.path}.").to_body()
        else:
            body = error_body(str(exc.detail), "invalid_request_error", code=exc.status_code)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RecursionError)
    async def too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        # Python's JSON decoder gives up on nesting deeper than the interpreter's recursion limit.
        error = InvalidRequestError("The request body is nested too deeply.", code="nested_too_deeply")
        return JSONResponse(error.to_body(), status_code=error.status_code)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        error = InternalError("The proxy hit an internal error; it has been logged.")
        return JSONResponse(error.to_body(), status_code=error.status_code)
