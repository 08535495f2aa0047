"""The adapter registry on a real SQLite file: versions, atomic publish, retire, scoping."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.registry import AdapterRegistry, AdapterStatus, lora_name
from memory import Scope

ALICE = Scope("acme", "alice")
BOB = Scope("acme", "bob")


@pytest.fixture
async def registry(tmp_path: Path) -> AdapterRegistry:
    return await AdapterRegistry(tmp_path / "registry.sqlite3").open()


async def test_a_new_version_is_training_and_not_current(registry: AdapterRegistry, tmp_path: Path) -> None:
    version = await registry.begin_version(ALICE, "base", tmp_path)
    assert (version.version, version.status) == (1, AdapterStatus.TRAINING)
    assert version.name == lora_name(ALICE) and version.path == tmp_path / f"{version.name}-v1"
    assert await registry.current(ALICE) is None


async def test_publish_makes_it_current_and_retires_the_previous(registry: AdapterRegistry, tmp_path: Path) -> None:
    first = await registry.publish(await registry.begin_version(ALICE, "base", tmp_path), {"ppl_reduction": 0.5})
    assert first.status == AdapterStatus.READY and first.metrics == {"ppl_reduction": 0.5}
    second = await registry.publish(await registry.begin_version(ALICE, "base", tmp_path), {"ppl_reduction": 0.6})
    current = await registry.current(ALICE)
    assert current is not None and current.version == second.version == 2
    assert current.name == first.name  # one vLLM name per user: a new version replaces the old one in place
    statuses = {v.version: v.status for v in await registry.versions(ALICE)}
    assert statuses == {2: AdapterStatus.READY, 1: AdapterStatus.RETIRED}


async def test_failed_versions_never_become_current(registry: AdapterRegistry, tmp_path: Path) -> None:
    ready = await registry.publish(await registry.begin_version(ALICE, "base", tmp_path), {})
    failed = await registry.fail(await registry.begin_version(ALICE, "base", tmp_path), "too weak", {"ppl_reduction": 0.1})
    assert failed.status == AdapterStatus.FAILED and failed.reason == "too weak"
    assert (await registry.current(ALICE)).version == ready.version  # type: ignore[union-attr]
    assert (await registry.begin_version(ALICE, "base", tmp_path)).version == 3  # numbers are never reused


async def test_retire_and_scoping(registry: AdapterRegistry, tmp_path: Path) -> None:
    await registry.publish(await registry.begin_version(ALICE, "base", tmp_path), {})
    await registry.publish(await registry.begin_version(BOB, "base", tmp_path), {})
    assert lora_name(ALICE) != lora_name(BOB)
    assert await registry.retire(ALICE) == [1]
    assert await registry.current(ALICE) is None
    assert await registry.current(BOB) is not None  # another user's adapter is untouched
    assert await registry.retire(ALICE) == []
    assert [v.scope for v in await registry.list_current("acme")] == [ALICE, BOB]
    assert await registry.list_current("other") == []
    assert await registry.delete_user(BOB) == 1 and await registry.versions(BOB) == []


async def test_a_second_process_sees_a_publish(registry: AdapterRegistry, tmp_path: Path) -> None:
    other = AdapterRegistry(registry.path)  # e.g. the CLI training while the proxy serves
    await other.publish(await other.begin_version(ALICE, "base", tmp_path), {})
    assert (await registry.current(ALICE)).version == 1  # type: ignore[union-attr]
