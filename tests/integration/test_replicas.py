"""Several vLLM upstreams, for real: two vLLM CPU servers (SmolLM2, ~3.7 GB each, which this machine's 24 GB
allows) behind one proxy. Each user's requests all land on one replica (read from each server's own request
counter), users spread over both, and when one replica goes away its users are answered by the other."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from proxy.bench.processes import ServerProcess, VllmServer, free_port
from tests.integration.conftest import API_KEY, MODEL, proxy_url, start_proxy

pytestmark = pytest.mark.vllm

REQUESTS = "vllm:request_success_total"


@pytest.fixture(scope="module")
def second_vllm() -> Iterator[VllmServer]:
    server = VllmServer(free_port()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def replicated_proxy(vllm: VllmServer, second_vllm: VllmServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("replicas")
    urls = f"{vllm.base_url}/v1,{second_vllm.base_url}/v1"
    process: ServerProcess = start_proxy(urls.split(",")[0], tmp / "proxy.log", upstream_urls=urls,
                                         upstream_probe_interval_s="1", memory_enabled="false")
    try:
        yield proxy_url(process)
    finally:
        process.stop()


def ask(url: str, user: str) -> str:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=120)
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hi."}], max_tokens=4, temperature=0, user=user
    )
    return reply.choices[0].message.content or ""


def test_users_stick_to_one_replica_and_fail_over(replicated_proxy: str, vllm: VllmServer, second_vllm: VllmServer) -> None:
    servers = {"first": vllm, "second": second_vllm}
    home: dict[str, str] = {}
    for user in (f"user-{i}" for i in range(12)):
        for _ in range(2):
            before = {name: server.metric(REQUESTS) for name, server in servers.items()}
            ask(replicated_proxy, user)
            after = {name: server.metric(REQUESTS) for name, server in servers.items()}
            served = [name for name in servers if after[name] > before[name]]
            assert len(served) == 1, (user, before, after)
            assert home.setdefault(user, served[0]) == served[0], f"{user} moved between replicas"
    assert set(home.values()) == {"first", "second"}, home  # 12 users over 2 replicas: both get some

    second_vllm.stop()
    try:
        for user, replica in home.items():
            if replica == "second":
                assert ask(replicated_proxy, user) is not None  # answered by the first replica
    finally:
        second_vllm.start()
