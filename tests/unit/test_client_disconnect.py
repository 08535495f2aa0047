"""A client that goes away cancels the upstream request — over real sockets: the proxy and a local stub upstream
run as processes (the stub stands in for vLLM only to count abandoned requests; tests/integration uses vLLM)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from proxy.bench.processes import ServerProcess, free_port, python_module


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory) -> Iterator[tuple[str, str]]:
    logs = tmp_path_factory.mktemp("disconnect")
    upstream_port, proxy_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{upstream_port}"
    with ServerProcess(
        python_module(
            "proxy.bench.stub_upstream", "--port", str(upstream_port), "--chunk-delay-ms", "200",
            "--answer-delay-ms", "3000",
        ),
        f"{upstream}/v1/models",
        log_path=logs / "stub.log",
    ), ServerProcess(
        python_module("proxy.cli", "serve", "--port", str(proxy_port), "--upstream-url", f"{upstream}/v1"),
        f"http://127.0.0.1:{proxy_port}/healthz",
        log_path=logs / "proxy.log",
    ):
        yield upstream, f"http://127.0.0.1:{proxy_port}"


def abandoned(upstream: str) -> int:
    return httpx.get(f"{upstream}/stats", trust_env=False).json()["abandoned"]


def wait_for_abandoned(upstream: str, expected: int, timeout_s: float = 5.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and abandoned(upstream) < expected:
        time.sleep(0.05)
    return abandoned(upstream)


def test_disconnect_mid_stream_cancels_the_upstream(slow_stack) -> None:
    upstream, proxy = slow_stack
    before = abandoned(upstream)
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.Client(base_url=proxy, trust_env=False) as client:
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            first = next(response.iter_raw())
            assert first.startswith(b"data: ")
        # leaving the block closes the connection after one chunk of a ~3 s stream
    assert wait_for_abandoned(upstream, before + 1) == before + 1


def test_disconnect_while_waiting_for_a_whole_answer_cancels_the_upstream(slow_stack) -> None:
    upstream, proxy = slow_stack
    before = abandoned(upstream)
    body = {"messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{proxy}/v1/chat/completions", json=body, timeout=httpx.Timeout(5, read=0.5), trust_env=False)
    # The stub would answer after 3 s; it must see the proxy hang up well before.
    assert wait_for_abandoned(upstream, before + 1, timeout_s=2.0) == before + 1


def test_a_patient_client_still_gets_the_whole_stream(slow_stack) -> None:
    upstream, proxy = slow_stack
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 3}
    with httpx.Client(base_url=proxy, trust_env=False, timeout=10) as client:
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            text = b"".join(response.iter_raw())
    assert text.endswith(b"data: [DONE]\n\n")
    assert text.count(b"data: ") == 5  # three words, the finish chunk, [DONE]
