"""The app factory: the one place where settings, the upstream client, services and routes are wired together."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from proxy import __version__
from proxy.auth import ApiKeyAuth
from proxy.chat.api_router import router as chat_router
from proxy.chat.serving import ChatCompletionsService
from proxy.errors import (
    ClientError,
    InternalError,
    NotFoundError,
    ProxyError,
    error_body,
    invalid_request_from_validation,
)
from proxy.routes import router as misc_router
from proxy.settings import Settings
from proxy.upstream import UpstreamClient, build_http_client

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, http_client: httpx.AsyncClient | None = None) -> FastAPI:
    """Build the ASGI app. ``http_client`` is injected by tests (e.g. with an ``httpx.MockTransport``); when it is
    not given the app builds a pooled client from the settings and closes it at shutdown."""
    settings = settings or Settings()
    owns_client = http_client is None
    client = http_client if http_client is not None else build_http_client(settings)
    auth = ApiKeyAuth(settings.api_key_digests)
    upstream_key = settings.upstream_api_key.get_secret_value() if settings.upstream_api_key else None
    upstream = UpstreamClient(client, settings.upstream_url, api_key=upstream_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        auth.warn_if_open()
        logger.info("memproxy %s forwarding to %s", __version__, settings.upstream_url)
        try:
            yield
        finally:
            if owns_client:
                await client.aclose()

    app = FastAPI(
        title="memproxy",
        version=__version__,
        summary="OpenAI-compatible proxy that gives any chat model long-term memory.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.auth = auth
    app.state.upstream = upstream
    app.state.chat_service = ChatCompletionsService(upstream, default_model=settings.default_model)
    app.include_router(chat_router)
    app.include_router(misc_router)
    _install_error_handlers(app)
    return app


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
