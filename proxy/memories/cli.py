"""``memproxy memories …``: an HTTP client of ``/v1/memories`` on a running proxy. Prints the JSON answer on stdout
(exit 0); an error answer goes to stderr (exit 1). ``--url`` and ``--api-key`` fall back to the settings
(``MEMPROXY_CLI_URL``, ``MEMPROXY_CLI_API_KEY``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from proxy.settings import load_settings

TIMEOUT_S = 60.0
KINDS = ("fact", "episode", "preference", "profile")


def add_arguments(commands: Any) -> None:
    """Register ``memories`` and its subcommands on the top-level subparsers."""
    memories = commands.add_parser("memories", help="list, search, add, change, delete, export memories (HTTP client)")
    actions = memories.add_subparsers(title="actions", metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text)
        sub.add_argument("--url", help="the proxy's base URL (default http://127.0.0.1:8080; MEMPROXY_CLI_URL)")
        sub.add_argument("--api-key", help="API key (MEMPROXY_CLI_API_KEY)")
        sub.add_argument("--user", help="end user (trusted keys only; default: the key's own user)")
        sub.add_argument("--tenant", help="another tenant (admin keys only)")
        sub.set_defaults(handler=run, action=name)
        return sub

    listing = action("list", "list memories, newest first")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--cursor")
    listing.add_argument("--kind", choices=KINDS)
    listing.add_argument("--category")
    listing.add_argument("--include-inactive", action="store_true", help="also superseded and expired ones")
    listing.add_argument("--all", action="store_true", help="follow next_cursor to the end; print one list")
    search = action("search", "semantic search")
    search.add_argument("query")
    search.add_argument("--top-k", type=int, default=10)
    add = action("add", "remember one memory")
    add.add_argument("content")
    add.add_argument("--importance", type=float)
    add.add_argument("--category")
    add.add_argument("--kind", choices=KINDS)
    add.add_argument("--metadata", type=json.loads, help="a JSON object")
    action("get", "show one memory").add_argument("id")
    update = action("update", "change a memory (text makes a new version)")
    update.add_argument("id")
    update.add_argument("--text")
    update.add_argument("--importance", type=float)
    update.add_argument("--retention", help="keep it for SECONDS from now, short_term, long_term, or never")
    update.add_argument("--pin", dest="pinned", action="store_const", const=True)
    update.add_argument("--unpin", dest="pinned", action="store_const", const=False)
    update.add_argument("--metadata", type=json.loads, help="a JSON merge patch")
    action("delete", "delete one memory").add_argument("id")
    delete_user = action("delete-user", "delete ALL memories of the user")
    delete_user.add_argument("--yes", action="store_true", required=True, help="confirm")
    action("history", "the versions of a memory").add_argument("id")
    export = action("export", "export the user's memories as JSON")
    export.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    action("import", "import an export").add_argument("file", type=Path)
    action("graph", "the user's memory graph").add_argument("--limit", type=int, default=200)
    memories.set_defaults(handler=lambda _args: memories.print_help() or 2)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(run_async(args))


async def run_async(args: argparse.Namespace, client: httpx.AsyncClient | None = None) -> int:
    """Run one action; ``client`` (with its base URL) is injected by tests, else one is built from the settings."""
    if client is not None:
        return await _perform(args, client)
    settings = load_settings().cli
    key = args.api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
    headers = {"authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(base_url=args.url or settings.url, headers=headers, timeout=TIMEOUT_S) as owned:
        return await _perform(args, owned)


async def _perform(args: argparse.Namespace, client: httpx.AsyncClient) -> int:
    try:
        if args.action == "list" and args.all:
            result = await _list_all(args, client)
        else:
            result = await _call(client, *_request(args))
    except _Failed as failed:
        print(json.dumps(failed.body, ensure_ascii=False, indent=2), file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"memproxy memories: cannot reach the proxy: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:  # the import file: missing or not JSON
        print(f"memproxy memories: {exc}", file=sys.stderr)
        return 1
    if args.action == "export" and args.output is not None:
        args.output.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return 0
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any], Any]:
    """(method, path, query, JSON body) for the action."""
    query = _drop_none({"user": args.user, "tenant": args.tenant})
    action = args.action
    if action == "list":
        query |= _drop_none({"limit": args.limit, "cursor": args.cursor, "kind": args.kind, "category": args.category})
        if args.include_inactive:
            query["include_inactive"] = "true"
        return "GET", "", query, None
    if action == "search":
        return "POST", "/search", query, {"query": args.query, "top_k": args.top_k}
    if action == "add":
        body = _drop_none(
            {"content": args.content, "importance": args.importance, "category": args.category, "kind": args.kind,
             "metadata": args.metadata}
        )
        return "POST", "", query, body
    if action == "update":
        body = _drop_none(
            {"text": args.text, "importance": args.importance, "pinned": args.pinned, "metadata": args.metadata}
        )
        if args.retention is not None:
            body["retention_period"] = _retention(args.retention)
        return "PATCH", f"/{_segment(args.id)}", query, body
    if action == "delete-user":
        return "DELETE", "", query | {"confirm": "true"}, None
    if action == "import":
        return "POST", "/import", query, json.loads(args.file.read_text(encoding="utf-8"))
    if action == "graph":
        return "GET", "/graph", query | {"limit": args.limit}, None
    if action == "export":
        return "GET", "/export", query, None
    method = {"get": "GET", "delete": "DELETE", "history": "GET"}[action]
    suffix = "/history" if action == "history" else ""
    return method, f"/{_segment(args.id)}{suffix}", query, None


async def _list_all(args: argparse.Namespace, client: httpx.AsyncClient) -> dict[str, Any]:
    method, path, query, _ = _request(args)
    data: list[Any] = []
    while True:
        page = await _call(client, method, path, query, None)
        data += page["data"]
        if not page.get("next_cursor"):
            return {"object": "list", "data": data, "next_cursor": None}
        query = query | {"cursor": page["next_cursor"]}


class _Failed(Exception):
    def __init__(self, body: Any) -> None:
        super().__init__("request failed")
        self.body = body


async def _call(client: httpx.AsyncClient, method: str, path: str, query: dict[str, Any], body: Any) -> Any:
    response = await client.request(method, "/v1/memories" + path, params=query, json=body)
    try:
        payload = response.json()
    except ValueError:
        payload = {"error": {"message": response.text[:500], "type": "http_error", "code": response.status_code}}
    if response.is_error:
        raise _Failed(payload)
    return payload


def _retention(value: str) -> float | str | None:
    if value == "never":
        return None
    try:
        return float(value)
    except ValueError:
        return value  # short_term / long_term; anything else is the server's 400


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _segment(memory_id: str) -> str:
    return quote(memory_id, safe="")
