"""What a proxy benchmark runs against: the fast local stub upstream, a ``memproxy serve`` process on a data dir of
the benchmark's own (never the user's ~/.local/share/memproxy), memories bulk-loaded into that dir before the proxy
starts, varied questions, and a check that memory really took part in a response.

Memories are loaded the way ``memproxy bench latency`` loads them (:mod:`memory.bench.bulk`): write batches straight
into the store, with vectors from a pool of real embedded sentences plus a little noise — embedding 100k texts one
by one would take far longer than the measurement itself.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from memory import Scope
from memory.bench import bulk
from memory.bench.bulk import LoadReport
from memory.bench.latency import QUERIES, sentence
from proxy.bench.processes import ServerProcess, free_port, python_module
from proxy.settings import child_environment, load_settings

TENANT = "default"
"""The tenant of every request in open dev mode (no API keys): the body's ``user`` names the user within it."""

_TEMPLATES = (
    "Do you remember that {}?",
    "Remind me: is it true that {}?",
    "What else happened when {}?",
    "Earlier I told you {} — what do you make of it?",
    "Can you tell me more about how {}?",
)


def question(rng: random.Random) -> str:
    """A varied, realistic question about the kind of things the bulk-loaded memories say."""
    if rng.random() < 0.3:
        return rng.choice(QUERIES)
    text = sentence(rng).rstrip(".")
    if not text.startswith("I "):
        text = text[0].lower() + text[1:]
    return rng.choice(_TEMPLATES).format(text)


def start_stub() -> ServerProcess:
    port = free_port()
    return ServerProcess(
        python_module("proxy.bench.stub_upstream", "--port", str(port)), f"http://127.0.0.1:{port}/v1/models"
    ).start()


def stub_url(stub: ServerProcess) -> str:
    return stub.ready_url.removesuffix("/models")


def proxy_process(
    upstream_url: str,
    data_dir: Path,
    log_path: Path,
    *,
    memory: bool,
    start_timeout_s: float = 30.0,
    **settings: str,
) -> ServerProcess:
    """``memproxy serve`` (not started) on a free port with its data in ``data_dir``, in open dev mode so the body's
    ``user`` names the user. The child inherits this process's environment (HF_HUB_OFFLINE, …) plus these;
    ``settings`` are further ``MEMPROXY_*`` values by field name (``default_model="…"``)."""
    port = free_port()
    env = child_environment(
        MEMPROXY_DATA_DIR=str(data_dir),
        MEMPROXY_MEMORY_ENABLED="true" if memory else "false",
        MEMPROXY_API_KEYS="",
        **{f"MEMPROXY_{name.upper()}": value for name, value in settings.items()},
    )
    return ServerProcess(
        python_module(
            "proxy.cli", "serve", "--port", str(port), "--upstream-url", upstream_url, "--log-level", "warning"
        ),
        f"http://127.0.0.1:{port}/readyz",
        env=env,
        log_path=log_path,
        start_timeout_s=start_timeout_s,
    )


def proxy_url(proxy: ServerProcess) -> str:
    return proxy.ready_url.removesuffix("/readyz") + "/v1"


def started(proxy: ServerProcess) -> float:
    """Start ``proxy``; returns the seconds until it answered ready (with memory: opening the store, rebuilding
    the BM25 postings of every memory, loading the vector index)."""
    began = time.perf_counter()
    proxy.start()
    return time.perf_counter() - began


async def fill_memories(data_dir: Path, users: Mapping[str, int], *, pool_size: int = 1024) -> LoadReport:
    """Bulk-load ``users`` (user → how many memories) of tenant ``default`` into ``data_dir`` (see
    :func:`memory.bench.bulk.fill_memories`)."""
    config = load_settings(data_dir=data_dir).memory
    scopes = {Scope(TENANT, user): count for user, count in users.items()}
    return await bulk.fill_memories(config, scopes, pool_size=pool_size)


async def queue_depth(data_dir: Path) -> int:
    """Exchanges queued for memory and not applied yet (the background write path's lag)."""
    return await bulk.queue_depth(load_settings(data_dir=data_dir).memory)


def memory_status(response: httpx.Response) -> tuple[str, int, str | None]:
    """(x-memproxy-memory, x-memproxy-recalled, x-memproxy-degraded-reason) of a proxy response."""
    headers = response.headers
    return (
        headers.get("x-memproxy-memory", "missing"),
        int(headers.get("x-memproxy-recalled", "0")),
        headers.get("x-memproxy-degraded-reason"),
    )
