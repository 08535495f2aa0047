"""Serves the memory browser, ``GET /ui`` and ``GET /ui/static/<file>``: static files shipped in this package.

The page needs no key to load; it asks for one and sends it as a Bearer header on every call to ``/v1/memories``,
so the API's rules decide what it shows. Its links are relative (``ui/static/…``, ``v1/memories``), so it also works
behind a path prefix (``/ui/`` is redirected to ``/ui``). Only the files of ``static/`` are served (an allowlist, not a
directory mount: no path from a request reaches the file system), under a Content-Security-Policy that allows
scripts, styles and requests from this origin only, so a memory's text can never run as code even if it were
rendered as HTML.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from proxy.errors import NotFoundError

STATIC_DIR = Path(__file__).parent / "static"
MEDIA_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
STATIC_FILES = {path.name: path for path in STATIC_DIR.iterdir() if path.suffix in MEDIA_TYPES}

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}

router = APIRouter(prefix="/ui", tags=["ui"], include_in_schema=False)


@router.get("")
async def memory_browser() -> FileResponse:
    return _static("index.html")


@router.get("/static/{name}")
async def static_file(name: str) -> FileResponse:
    if name not in STATIC_FILES:
        raise NotFoundError(f"No UI file '{name[:80]}'.")
    return _static(name)


def _static(name: str) -> FileResponse:
    path = STATIC_FILES[name]
    media_type = f"{MEDIA_TYPES[path.suffix]}; charset=utf-8"
    return FileResponse(path, media_type=media_type, headers=SECURITY_HEADERS)
