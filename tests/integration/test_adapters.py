"""Per-user LoRA adapters against the real vLLM CPU server (SmolLM2-135M-Instruct): a small adapter is really
trained (peft, CPU, a handful of facts, a minute or two), published, loaded through vLLM's runtime LoRA API and
used through the proxy. Then: a new version replaces the old in place, LRU unloads and reloads, a vLLM restart,
and a corrupt adapter falling back to the base model.

The tests share one trained adapter and run in file order (the restart test comes after the others)."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
import pytest_asyncio

from adapters.config import AdaptersConfig, TrainingConfig
from adapters.jobs import train_and_publish
from adapters.loader import VllmAdapterLoader
from adapters.registry import AdapterRegistry, AdapterStatus, AdapterVersion
from adapters.routing import ADAPTER_HEADER, AdapterRouter
from memory.graph.sqlite.store import SqliteGraphStore
from memory.models import Memory, MemoryKind, Scope
from proxy.bench.processes import VLLM_MODEL, VllmServer
from proxy.settings import Settings
from tests.integration.conftest import API_KEY, proxy_url, start_proxy

pytestmark = [pytest.mark.vllm, pytest.mark.asyncio(loop_scope="module")]

TENANT = "default"  # the tenant of MEMPROXY_API_KEYS keys
ALICE = Scope(TENANT, "alice")
BOB = Scope(TENANT, "bob")
FACTS = ("My dog is called Pochi", "I live in Lisbon", "My favourite colour is teal", "I work as a glassblower")
PROMPT = "What do you remember about me?"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("adapters")


@pytest.fixture(scope="module")
def config(vllm: VllmServer, workdir: Path) -> AdaptersConfig:
    return AdaptersConfig(
        adapters_dir=workdir / "data" / "adapters",
        base_model_path=Settings().adapters_base_model_path,
        base_model=VLLM_MODEL,
        vllm_url=vllm.base_url,
        max_loaded=2,
        training=TrainingConfig(epochs=4, seed=7),
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def alice_adapter(config: AdaptersConfig, workdir: Path) -> AdapterVersion:
    store = SqliteGraphStore(workdir / "facts.sqlite3")
    await store.open()
    try:
        for fact in FACTS:
            await store.upsert_memory(Memory(ALICE, fact, kind=MemoryKind.FACT, importance=0.9))
        version = await train_and_publish(config, AdapterRegistry(config.registry_path), store, ALICE)
    finally:
        await store.close()
    assert version.status == AdapterStatus.READY, version.reason
    return version


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=120, trust_env=False) as client:
        yield client


async def chat(http: httpx.AsyncClient, url: str, model: str) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "temperature": 0, "max_tokens": 24}
    response = await http.post(f"{url}/v1/chat/completions", json=body)
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


async def loaded_in_vllm(http: httpx.AsyncClient, vllm: VllmServer) -> dict[str, str]:
    models = (await http.get(f"{vllm.base_url}/v1/models")).json()["data"]
    return {model["id"]: model["root"] for model in models if model["id"] != VLLM_MODEL}


async def copy_as_new_version(config: AdaptersConfig, source: AdapterVersion, scope: Scope) -> AdapterVersion:
    """Publish ``source``'s weights as ``scope``'s next version (no second training run: minutes saved)."""
    registry = AdapterRegistry(config.registry_path)
    version = await registry.begin_version(scope, config.base_model, config.adapters_dir)
    shutil.copytree(source.path, version.path)
    return await registry.publish(version, source.metrics)


async def test_training_validates_against_the_base_model(alice_adapter: AdapterVersion) -> None:
    metrics = alice_adapter.metrics
    assert metrics["ppl_reduction"] >= 0.30
    assert metrics["general_ppl_change"] <= 0.05
    assert {p.name for p in alice_adapter.path.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}


async def test_through_the_proxy_alice_gets_her_adapter_and_bob_the_base(
    vllm: VllmServer, config: AdaptersConfig, alice_adapter: AdapterVersion, http: httpx.AsyncClient, workdir: Path
) -> None:
    base_answer = await chat(http, vllm.base_url, VLLM_MODEL)
    await VllmAdapterLoader(http, vllm.base_url, max_loaded=2).ensure_loaded(alice_adapter)
    adapter_answer = await chat(http, vllm.base_url, alice_adapter.name)
    proxy = start_proxy(
        f"{vllm.base_url}/v1", workdir / "proxy.log",
        adapters_enabled="true", adapters_dir=str(config.adapters_dir), adapters_max_loaded="2",
        memory_enabled="false",  # the answers differ by the adapter alone, not by recalled memories
    )
    try:
        client = openai.OpenAI(base_url=f"{proxy_url(proxy)}/v1", api_key=API_KEY, max_retries=0, timeout=120)
        answers = {}
        for user in ("alice", "bob"):
            raw = client.chat.completions.with_raw_response.create(
                model=VLLM_MODEL, user=user, messages=[{"role": "user", "content": PROMPT}], temperature=0, max_tokens=24
            )
            answers[user] = (raw.parse().choices[0].message.content, raw.headers.get(ADAPTER_HEADER))
        metrics = (await http.get(f"{proxy_url(proxy)}/metrics")).text
    finally:
        proxy.stop()
    assert answers["alice"][1] == f"{alice_adapter.name} v{alice_adapter.version}"
    assert answers["alice"][0] != base_answer
    assert answers["alice"][0] == adapter_answer  # what vLLM says with the adapter, asked directly
    assert answers["alice"][0].startswith("You"), answers  # the style it was taught: facts told back to the user
    assert answers["bob"] == (base_answer, None)
    assert 'memproxy_adapter_routing_total{outcome="adapter"} 1.0' in metrics


async def test_a_new_version_replaces_the_old_in_place(
    vllm: VllmServer, config: AdaptersConfig, alice_adapter: AdapterVersion, http: httpx.AsyncClient
) -> None:
    router = AdapterRouter(AdapterRegistry(config.registry_path), VllmAdapterLoader(http, vllm.base_url, max_loaded=2),
                           base_model=VLLM_MODEL, refresh_s=0)
    first = await router.model_for(ALICE, VLLM_MODEL)
    assert first.adapter is not None
    second = await copy_as_new_version(config, alice_adapter, ALICE)
    routed = await router.model_for(ALICE, VLLM_MODEL)
    assert routed.model == first.model and routed.adapter == second  # same name, new version
    assert (await loaded_in_vllm(http, vllm))[routed.model] == str(second.path)
    assert await chat(http, vllm.base_url, routed.model) == await chat(http, vllm.base_url, first.model)


async def test_least_recently_used_is_unloaded_and_reloaded(
    vllm: VllmServer, config: AdaptersConfig, alice_adapter: AdapterVersion, http: httpx.AsyncClient
) -> None:
    users = [Scope(TENANT, f"lru-{n}") for n in range(3)]
    for scope in users:
        await copy_as_new_version(config, alice_adapter, scope)
    loader = VllmAdapterLoader(http, vllm.base_url, max_loaded=2)
    router = AdapterRouter(AdapterRegistry(config.registry_path), loader, base_model=VLLM_MODEL)
    names = [(await router.model_for(scope, VLLM_MODEL)).model for scope in users]
    in_vllm = await loaded_in_vllm(http, vllm)
    assert names[0] not in in_vllm and {names[1], names[2]} <= set(in_vllm)
    again = await router.model_for(users[0], VLLM_MODEL)  # on demand: loaded again, the next LRU goes
    assert again.adapter is not None and again.model == names[0]
    in_vllm = await loaded_in_vllm(http, vllm)
    assert names[0] in in_vllm and names[1] not in in_vllm
    assert await chat(http, vllm.base_url, names[0])


async def test_a_corrupt_adapter_falls_back_to_the_base_model(
    vllm: VllmServer, config: AdaptersConfig, alice_adapter: AdapterVersion, http: httpx.AsyncClient, caplog
) -> None:
    carol = Scope(TENANT, "carol")
    version = await copy_as_new_version(config, alice_adapter, carol)
    weights = version.path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated on disk
    router = AdapterRouter(AdapterRegistry(config.registry_path), VllmAdapterLoader(http, vllm.base_url, max_loaded=2),
                           base_model=VLLM_MODEL)
    with caplog.at_level(logging.WARNING, logger="adapters.routing"):
        routed = await router.model_for(carol, VLLM_MODEL)
    assert routed.model == VLLM_MODEL and routed.adapter is None and routed.fallback == "load-http-500"
    assert router.metrics.counts()["fallback:load-http-500"] == 1
    assert "could not load" in caplog.text
    assert await chat(http, vllm.base_url, routed.model)  # the chat goes on, on the base model


async def test_after_a_vllm_restart_alice_still_gets_her_adapter(
    vllm: VllmServer, config: AdaptersConfig, alice_adapter: AdapterVersion, workdir: Path
) -> None:
    proxy = start_proxy(
        f"{vllm.base_url}/v1", workdir / "proxy-restart.log",
        adapters_enabled="true", adapters_dir=str(config.adapters_dir), memory_enabled="false",
    )
    try:
        client = openai.OpenAI(base_url=f"{proxy_url(proxy)}/v1", api_key=API_KEY, max_retries=0, timeout=120)

        def ask() -> tuple[str | None, str | None]:
            raw = client.chat.completions.with_raw_response.create(
                model=VLLM_MODEL, user="alice", messages=[{"role": "user", "content": PROMPT}], temperature=0,
                max_tokens=24,
            )
            return raw.parse().choices[0].message.content, raw.headers.get(ADAPTER_HEADER)

        before = await asyncio.to_thread(ask)
        assert before[1] is not None and not before[1].startswith("fallback")
        await asyncio.to_thread(vllm.stop)
        await asyncio.to_thread(vllm.start)  # a fresh vLLM: no adapter loaded; the proxy still thinks it is
        after = await asyncio.to_thread(ask)
        metrics = httpx.get(f"{proxy_url(proxy)}/metrics", trust_env=False).text
    finally:
        proxy.stop()
    assert after == before
    assert 'memproxy_adapter_routing_total{outcome="reload-after-restart"} 1.0' in metrics
