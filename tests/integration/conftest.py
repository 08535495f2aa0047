"""The integration tier: the real vLLM CPU server (SmolLM2-135M-Instruct), started once per test session through
the same deploy script `make run` uses, on a free port so it never collides with a running `make run`."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from proxy.bench.processes import VLLM_MODEL, ServerProcess, VllmServer, free_port
from tests.support.wiretap import ThreadedServer, Wiretap

MEMPROXY = str(Path(sys.executable).with_name("memproxy"))
MODEL = VLLM_MODEL
API_KEY = "it-key-alpha"


@pytest.fixture(scope="session")
def vllm() -> Iterator[VllmServer]:
    server = VllmServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def start_proxy(upstream_url: str, log_path: Path, **settings: str) -> ServerProcess:
    """``memproxy serve`` with its own data dir next to its log; ``settings`` are extra MEMPROXY_* variables."""
    port = free_port()
    env = {
        **os.environ,
        "MEMPROXY_API_KEYS": API_KEY,
        "MEMPROXY_DEFAULT_MODEL": MODEL,
        "MEMPROXY_DATA_DIR": str(log_path.parent / "data"),
        **{f"MEMPROXY_{name.upper()}": value for name, value in settings.items()},
    }
    return ServerProcess(
        [MEMPROXY, "serve", "--port", str(port), "--upstream-url", upstream_url],
        f"http://127.0.0.1:{port}/healthz",
        env=env,
        log_path=log_path,
    ).start()


def proxy_url(process: ServerProcess) -> str:
    return process.ready_url.removesuffix("/healthz")


@pytest.fixture(scope="session")
def proxy(vllm: VllmServer, tmp_path_factory) -> Iterator[str]:
    """`memproxy serve` in front of vLLM, with an API key configured. Yields the proxy's base URL (no /v1)."""
    process = start_proxy(f"{vllm.base_url}/v1", tmp_path_factory.mktemp("proxy") / "proxy.log")
    try:
        yield proxy_url(process)
    finally:
        process.stop()


@pytest.fixture(scope="session")
def wiretap(vllm: VllmServer) -> Iterator[Wiretap]:
    tap = Wiretap(vllm.base_url)
    with ThreadedServer(tap) as server:
        tap.url = server.url  # type: ignore[attr-defined]
        yield tap


@pytest.fixture(scope="session")
def tapped_proxy(wiretap: Wiretap, tmp_path_factory) -> Iterator[str]:
    """A proxy whose upstream traffic passes through the wiretap on its way to vLLM."""
    process = start_proxy(f"{wiretap.url}/v1", tmp_path_factory.mktemp("tapped") / "proxy.log")  # type: ignore[attr-defined]
    try:
        yield proxy_url(process)
    finally:
        process.stop()


@pytest.fixture
def client(proxy: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{proxy}/v1", api_key=API_KEY, max_retries=0, timeout=120)


@pytest.fixture
def tapped_client(tapped_proxy: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{tapped_proxy}/v1", api_key=API_KEY, max_retries=0, timeout=120)
