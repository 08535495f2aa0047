"""The AdapterLoader contract (adapters/loader.py), run against every implementation in CASES, with adapter versions
from the real registry (SQLite) and folders.

vLLM is :class:`FakeVllm` here (its runtime LoRA API as an ``httpx.MockTransport``, answering with vLLM 0.32's
status codes and messages, which tests/integration/test_adapters.py checks against the real server); it answers
after a short delay so that concurrent calls really overlap. The real vLLM CPU server runs in that integration
tier. What only one loader does (LRU eviction, loading in place, each error status) is tested in
test_loader_and_routing.py. A new implementation is one line in CASES.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from adapters.loader import AdapterLoader, ResolverAdapterLoader, VllmAdapterLoader
from adapters.registry import AdapterRegistry, AdapterVersion
from memory.models import Scope
from tests.adapters.fake_vllm import FakeVllm
from tests.adapters.test_loader_and_routing import publish

ALICE, BOB = Scope("t", "alice"), Scope("t", "bob")


@dataclass(frozen=True)
class LoaderCase:
    name: str
    build: Callable[[httpx.AsyncClient], AdapterLoader]
    """The loader, given a client to vLLM (one that never calls vLLM ignores it)."""


CASES = [
    LoaderCase("runtime-api", lambda client: VllmAdapterLoader(client, "http://vllm.test/v1", max_loaded=4)),
    LoaderCase("resolver", lambda client: ResolverAdapterLoader()),
]


@pytest.fixture(params=CASES, ids=lambda case: case.name)
def case(request: pytest.FixtureRequest) -> LoaderCase:
    return request.param


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=FakeVllm(delay_s=0.01).transport()) as client:
        yield client


@pytest.fixture
def loader(case: LoaderCase, client: httpx.AsyncClient) -> AdapterLoader:
    return case.build(client)


@pytest.fixture
def registry(tmp_path: Path) -> AdapterRegistry:
    return AdapterRegistry(tmp_path / "registry.sqlite3")


async def test_the_model_name_is_stable_per_version(
    case: LoaderCase, loader: AdapterLoader, client: httpx.AsyncClient, registry: AdapterRegistry, tmp_path: Path
) -> None:
    first = await publish(registry, ALICE, tmp_path)
    name = loader.model_name(first)
    assert isinstance(name, str) and name
    await loader.ensure_loaded(first)
    second = await publish(registry, ALICE, tmp_path)
    await loader.ensure_loaded(second)

    assert loader.model_name(first) == name == case.build(client).model_name(first)  # loaded or not, any loader
    assert loader.model_name(second) == case.build(client).model_name(second)
    assert loader.model_name(await publish(registry, BOB, tmp_path)) != name  # another user's adapter


async def ensure_loaded(loader: AdapterLoader, adapter: AdapterVersion, *, callers: int = 1) -> int:
    """``ensure_loaded`` from ``callers`` concurrent callers; how many loads that made. The adapter is loaded then."""
    loads = loader.loads
    await asyncio.gather(*(loader.ensure_loaded(adapter) for _ in range(callers)))
    assert loader.is_loaded(adapter)
    return loader.loads - loads


async def test_ensure_loaded_loads_once(loader: AdapterLoader, registry: AdapterRegistry, tmp_path: Path) -> None:
    adapter = await publish(registry, ALICE, tmp_path)
    first = not loader.is_loaded(adapter)
    assert await ensure_loaded(loader, adapter) == first
    assert await ensure_loaded(loader, adapter) == 0


async def test_concurrent_first_requests_load_once(
    loader: AdapterLoader, registry: AdapterRegistry, tmp_path: Path
) -> None:
    adapter = await publish(registry, ALICE, tmp_path)
    first = not loader.is_loaded(adapter)
    assert await ensure_loaded(loader, adapter, callers=20) == first


async def test_a_new_version_is_loaded_and_counted(
    loader: AdapterLoader, registry: AdapterRegistry, tmp_path: Path
) -> None:
    await ensure_loaded(loader, await publish(registry, ALICE, tmp_path))
    second = await publish(registry, ALICE, tmp_path)
    first = not loader.is_loaded(second)
    assert await ensure_loaded(loader, second) == first


async def test_after_forget_the_next_ensure_does_what_a_first_one_did(
    loader: AdapterLoader, registry: AdapterRegistry, tmp_path: Path
) -> None:
    adapter = await publish(registry, ALICE, tmp_path)
    loaded_before = loader.is_loaded(adapter)
    first_loads = await ensure_loaded(loader, adapter)

    loader.forget(adapter.name)  # the server restarted

    assert loader.is_loaded(adapter) == loaded_before
    assert await ensure_loaded(loader, adapter) == first_loads


async def test_unload_is_idempotent_and_counted_once(
    loader: AdapterLoader, registry: AdapterRegistry, tmp_path: Path
) -> None:
    adapter = await publish(registry, ALICE, tmp_path)
    made_loads = await ensure_loaded(loader, adapter)
    unloads = loader.unloads

    await loader.unload(loader.model_name(adapter))
    assert loader.unloads == unloads + made_loads  # a loader that loads nothing asks for no drops
    await loader.unload(loader.model_name(adapter))
    await loader.unload("never-loaded")
    assert loader.unloads == unloads + made_loads  # nothing held under those names: nothing counted

    assert await ensure_loaded(loader, adapter) == made_loads  # as a first one
