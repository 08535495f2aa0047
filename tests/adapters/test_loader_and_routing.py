"""The vLLM adapter loader and the router, against :class:`FakeVllm` (an ``httpx.MockTransport`` speaking vLLM's
LoRA API with its status codes) so the requests sent, LRU order and each error can be pinned down. The same
behaviour against the real vLLM is in tests/integration/test_adapters.py; what every loader must do is in
test_loader_contract.py."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import pytest

from adapters.loader import LOAD_PATH, UNLOAD_PATH, AdapterLoadError, ResolverAdapterLoader, VllmAdapterLoader
from adapters.registry import AdapterRegistry, AdapterVersion
from adapters.routing import ADAPTER_HEADER, AdapterRouter
from memory import Scope
from tests.adapters.fake_vllm import FakeVllm

BASE = "base-model"


@pytest.fixture
def vllm() -> FakeVllm:
    return FakeVllm()


@pytest.fixture
async def client(vllm: FakeVllm):
    async with httpx.AsyncClient(transport=vllm.transport()) as client:
        yield client


@pytest.fixture
def registry(tmp_path: Path) -> AdapterRegistry:
    return AdapterRegistry(tmp_path / "registry.sqlite3")


async def publish(registry: AdapterRegistry, scope: Scope, tmp_path: Path) -> AdapterVersion:
    version = await registry.begin_version(scope, BASE, tmp_path)
    version.path.mkdir()
    return await registry.publish(version, {})


def loader_for(client: httpx.AsyncClient, max_loaded: int = 4) -> VllmAdapterLoader:
    return VllmAdapterLoader(client, "http://vllm.test/v1", max_loaded=max_loaded)


async def test_loads_once_then_serves_from_memory(vllm, client, registry, tmp_path) -> None:
    adapter = await publish(registry, Scope("t", "a"), tmp_path)
    loader = loader_for(client)
    await loader.ensure_loaded(adapter)
    await loader.ensure_loaded(adapter)
    assert vllm.calls == [(LOAD_PATH, {"lora_name": adapter.name, "lora_path": str(adapter.path), "load_inplace": False})]


async def test_a_new_version_is_loaded_in_place(vllm, client, registry, tmp_path) -> None:
    scope = Scope("t", "a")
    loader = loader_for(client)
    await loader.ensure_loaded(await publish(registry, scope, tmp_path))
    second = await publish(registry, scope, tmp_path)
    await loader.ensure_loaded(second)
    assert vllm.calls[-1][1] == {"lora_name": second.name, "lora_path": str(second.path), "load_inplace": True}
    assert vllm.loaded == {second.name: str(second.path)}


async def test_least_recently_used_is_unloaded_and_reloaded_on_demand(vllm, client, registry, tmp_path) -> None:
    a, b, c = [await publish(registry, Scope("t", user), tmp_path) for user in "abc"]
    loader = loader_for(client, max_loaded=2)
    await loader.ensure_loaded(a)
    await loader.ensure_loaded(b)
    assert loader.is_loaded(a)  # a used: b is now the least recently used
    await loader.ensure_loaded(c)
    assert set(vllm.loaded) == {a.name, c.name} and loader.loaded == [a.name, c.name]
    await loader.ensure_loaded(b)
    assert set(vllm.loaded) == {c.name, b.name}
    assert vllm.count(UNLOAD_PATH) == 2 and vllm.count(LOAD_PATH) == 4


async def test_already_loaded_elsewhere_is_reloaded_in_place(vllm, client, registry, tmp_path) -> None:
    adapter = await publish(registry, Scope("t", "a"), tmp_path)
    vllm.loaded[adapter.name] = "/an/older/version"  # e.g. this proxy restarted; vLLM did not
    await loader_for(client).ensure_loaded(adapter)
    assert [body["load_inplace"] for _, body in vllm.calls] == [False, True]
    assert vllm.loaded[adapter.name] == str(adapter.path)


async def test_errors_are_named(vllm, client, registry, tmp_path) -> None:
    missing = await registry.begin_version(Scope("t", "a"), BASE, tmp_path)  # no folder
    loader = loader_for(client)
    with pytest.raises(AdapterLoadError) as error:
        await loader.ensure_loaded(missing)
    assert error.value.reason == "not-found"
    vllm.fail_with = 500
    with pytest.raises(AdapterLoadError) as error:
        await loader.ensure_loaded(await publish(registry, Scope("t", "b"), tmp_path))
    assert error.value.reason == "load-http-500" and "invalid header length" in str(error.value)
    await loader.unload("never-loaded")  # 404 from vLLM: already gone, fine


async def test_unreachable_vllm_is_a_load_error(registry, tmp_path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(AdapterLoadError) as error:
            await loader_for(client).ensure_loaded(await publish(registry, Scope("t", "a"), tmp_path))
    assert error.value.reason == "unreachable"


async def test_router_picks_the_users_adapter_or_the_base(vllm, client, registry, tmp_path) -> None:
    alice = await publish(registry, Scope("t", "alice"), tmp_path)
    router = AdapterRouter(registry, loader_for(client), base_model=BASE)
    routed = await router.model_for(Scope("t", "alice"), BASE)
    assert routed.model == alice.name and routed.adapter == alice and routed.fallback is None
    assert routed.headers() == {ADAPTER_HEADER: f"{alice.name} v1"}
    bob = await router.model_for(Scope("t", "bob"), BASE)
    assert (bob.model, bob.adapter, bob.headers()) == (BASE, None, {})
    other = await router.model_for(Scope("t", "alice"), "some-other-model")  # the client chose a model: kept
    assert other.model == "some-other-model"
    assert router.metrics.routed_adapter == 1 and router.metrics.routed_base == 1


async def test_a_broken_adapter_falls_back_logs_and_counts(vllm, client, registry, tmp_path, caplog) -> None:
    await publish(registry, Scope("t", "alice"), tmp_path)
    vllm.fail_with = 500
    router = AdapterRouter(registry, loader_for(client), base_model=BASE)
    with caplog.at_level(logging.WARNING, logger="adapters.routing"):
        routed = await router.model_for(Scope("t", "alice"), BASE)
    assert (routed.model, routed.fallback) == (BASE, "load-http-500")
    assert routed.headers() == {ADAPTER_HEADER: "fallback:load-http-500"}
    assert "invalid header length" in caplog.text
    again = await router.model_for(Scope("t", "alice"), BASE)  # not retried at once: no load storm
    assert again.fallback == "load-http-500" and vllm.count(LOAD_PATH) == 1
    assert router.metrics.fallbacks["load-http-500"] == 2
    assert 'memproxy_adapter_fallbacks_total{reason="load-http-500"} 2' in router.metrics.prometheus()


async def test_registry_trouble_never_fails_a_chat(client, tmp_path) -> None:
    broken = AdapterRegistry(tmp_path / "not-a-dir" / "x")
    (tmp_path / "not-a-dir").write_text("a file where the folder should be")
    router = AdapterRouter(broken, loader_for(client), base_model=BASE)
    routed = await router.model_for(Scope("t", "alice"), BASE)
    assert (routed.model, routed.fallback) == (BASE, "registry-error")


async def test_after_a_vllm_restart_the_adapter_is_loaded_again(vllm, client, registry, tmp_path) -> None:
    await publish(registry, Scope("t", "alice"), tmp_path)
    router = AdapterRouter(registry, loader_for(client), base_model=BASE)
    routed = await router.model_for(Scope("t", "alice"), BASE)
    vllm.loaded.clear()  # vLLM restarted; a chat naming the adapter got 404 "model does not exist"
    retried = await router.after_model_missing(routed)
    assert retried.model == routed.model and vllm.loaded and router.metrics.reloads_after_restart == 1


async def test_routing_a_loaded_adapter_is_fast(client, registry, tmp_path) -> None:
    await publish(registry, Scope("t", "alice"), tmp_path)
    router = AdapterRouter(registry, loader_for(client), base_model=BASE, refresh_s=60)
    await router.model_for(Scope("t", "alice"), BASE)
    timings = []
    for _ in range(500):
        started = time.perf_counter()
        await router.model_for(Scope("t", "alice"), BASE)
        timings.append(time.perf_counter() - started)
    assert sorted(timings)[250] < 0.001


def test_resolver_mode_names_each_version(tmp_path) -> None:
    adapter = AdapterVersion(Scope("t", "a"), "mp-x", 3, BASE, tmp_path / "mp-x-v3", status="ready")  # type: ignore[arg-type]
    loader = ResolverAdapterLoader()
    assert loader.model_name(adapter) == "mp-x-v3" == adapter.path.name and loader.is_loaded(adapter)
