"""The next-turn prefill against the real vLLM (CPU, SmolLM2): after an answer, memproxy sends the anticipated block
as a one-token ``continue_final_message`` request, padded to end on a KV block boundary; vLLM accepts it, and the next
turn — which opens with that block byte for byte — is served from vLLM's prefix cache through the whole prefill.

Counted with vLLM's own ``/tokenize`` (the prefill prompt's length) and its prefix-cache counters.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from proxy.auth import hash_key
from proxy.bench.processes import ServerProcess, VllmServer, metric_sum
from tests.integration.conftest import MODEL, proxy_url, start_proxy
from tests.support.wiretap import Wiretap

pytestmark = pytest.mark.vllm

KEY = "prefill-service-key"
BLOCK = 128
"""vLLM's KV block size here: only whole blocks are cached."""
FACTS = [
    "My sister Hana moved to Kyoto last spring; she works night shifts as a nurse at the university hospital.",
    "My dog Pochi is a nine-year-old shiba inu who refuses to go outside when it rains and loves dried sweet potato.",
    "I am allergic to shellfish, so when we eat out I always ask the restaurant to leave shrimp and crab out.",
    "On weekends I practise the cello for two hours and then go bouldering with my friend Kenji at the gym downtown.",
    "I started a new job as a data engineer at a logistics company; the commute by train takes forty minutes.",
    "My favourite book is a collection of short stories about lighthouse keepers on the northern coast of Hokkaido.",
]
SYSTEM = "You are Ada, a personal assistant. " + " ".join(
    f"Rule {i}: answer briefly, in plain words, and lead with the answer." for i in range(40)
)


@pytest.fixture(scope="module")
def prefill_proxy(wiretap: Wiretap, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("prefill-proxy")
    keys = tmp / "keys.json"
    keys.write_text(json.dumps([{"sha256": hash_key(KEY), "tenant": "acme", "trusted": True, "name": "service"}]))
    process: ServerProcess = start_proxy(f"{wiretap.url}/v1", tmp / "proxy.log", keys_file=str(keys), api_keys="")  # type: ignore[attr-defined]
    try:
        yield proxy_url(process)
    finally:
        process.stop()


def prefix_counters(vllm: VllmServer) -> tuple[float, float]:
    text = httpx.get(f"{vllm.base_url}/metrics", timeout=10).text
    return metric_sum(text, "vllm:prefix_cache_hits_total"), metric_sum(text, "vllm:prefix_cache_queries_total")


def prompt_tokens(vllm: VllmServer, messages: list[dict[str, str]], **flags: bool) -> int:
    response = httpx.post(
        f"{vllm.base_url}/tokenize", json={"model": MODEL, "messages": messages, **flags}, timeout=30
    )
    response.raise_for_status()
    return int(response.json()["count"])


def wait_for_prefills(url: str, outcome: str, count: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = httpx.get(f"{url}/metrics", timeout=10).text
        failed = metric_sum(text, 'memproxy_prefills_total{outcome="failed"}')
        assert failed == 0, "vLLM refused the prefill request (see the proxy log)"
        if metric_sum(text, f'memproxy_prefills_total{{outcome="{outcome}"}}') >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"no {outcome} prefill within {timeout_s} s")


def test_the_next_turn_is_served_from_the_prefilled_cache(prefill_proxy: str, wiretap: Wiretap, vllm: VllmServer) -> None:
    for fact in FACTS:
        response = httpx.post(
            f"{prefill_proxy}/v1/memories", json={"content": fact, "user": "erin"},
            headers={"authorization": f"Bearer {KEY}"}, timeout=60,
        )  # fmt: skip
        assert response.status_code == 201, response.text
    client = openai.OpenAI(base_url=f"{prefill_proxy}/v1", api_key=KEY, max_retries=0, timeout=300)
    controls = {"X-Memproxy-Top-K": "3", "X-Memproxy-Write": "off"}
    history = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "How is my sister Hana doing in Kyoto?"}]
    reply = client.chat.completions.create(
        model=MODEL, messages=history, user="erin", max_tokens=24, temperature=0, extra_headers=controls
    )  # type: ignore[arg-type]
    answer = reply.choices[0].message.content or ""
    wait_for_prefills(prefill_proxy, "prefilled", 1)

    prefill = wiretap.prefills()[-1].json()
    sent = wiretap.chat_requests()[-1].json()["messages"]
    anticipated = prefill["messages"][-1]["content"]
    prefilled_tokens = prompt_tokens(vllm, prefill["messages"], add_generation_prompt=False, continue_final_message=True)
    answered_tokens = prompt_tokens(
        vllm, [*sent, {"role": "assistant", "content": answer}], add_generation_prompt=False, continue_final_message=True
    )
    # The setup must make the anticipated block reach past the answered prompt's last full block, or the check
    # below would hold without any prefill.
    assert prefilled_tokens // BLOCK > answered_tokens // BLOCK, (prefilled_tokens, answered_tokens)
    assert prefilled_tokens % BLOCK == 0, prefilled_tokens  # padded to a whole number of vLLM's blocks

    hits_before, _ = prefix_counters(vllm)
    history += [{"role": "assistant", "content": answer}, {"role": "user", "content": "Any ideas for Saturday?"}]
    client.chat.completions.create(
        model=MODEL, messages=history, user="erin", max_tokens=8, temperature=0, extra_headers=controls
    )  # type: ignore[arg-type]
    hits_after, _ = prefix_counters(vllm)
    newest = wiretap.chat_requests()[-1].json()["messages"][-1]["content"]
    assert newest.startswith(anticipated)
    assert hits_after - hits_before >= prefilled_tokens  # all of it: no token of the prefill is computed again
