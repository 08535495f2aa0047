"""The memory scheduler (memory/scheduler.py) on a real SQLite store: decay, use, promotion into core memory; and,
through the whole engine (real FAISS, BM25 and ONNX embedder), retention and expiry leaving recall and the indexes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from memory.config import MemoryConfig, SchedulerConfig
from memory.engine import MemoryEngine
from memory.graph.base import NotFound
from memory.graph.sqlite.store import SqliteGraphStore
from memory.models import Memory, Scope
from memory.scheduler import MemoryScheduler

DAY = 86_400.0
SCOPE = Scope("acme", "alice")
CONFIG = SchedulerConfig(
    decay_half_life_s=10 * DAY,
    decay_floor=0.1,
    core_max=3,
    core_promotions_per_run=2,
    core_min_uses=5,
    core_min_importance=0.6,
    core_swap_margin=0.25,
    core_cooldown_s=5 * DAY,
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteGraphStore]:
    store = SqliteGraphStore(tmp_path / "graph.db")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def add(store: SqliteGraphStore, memory_id: str, **fields: object) -> Memory:
    memory = Memory(SCOPE, f"memory {memory_id}", id=memory_id, **fields)  # type: ignore[arg-type]
    await store.upsert_memory(memory)
    return memory


async def importance(store: SqliteGraphStore, memory_id: str) -> float:
    memory = await store.get_memory(SCOPE, memory_id)
    assert memory is not None
    return memory.importance


async def core_ids(store: SqliteGraphStore) -> list[str]:
    return [memory.id for memory in await store.core_memories(SCOPE)]


# --- decay ---------------------------------------------------------------------------------------------------------


async def test_importance_decays_towards_the_floor_with_a_half_life(store: SqliteGraphStore) -> None:
    start = time.time() - 60 * DAY
    await add(store, "m", importance=0.9, created_at=start)
    await add(store, "low", importance=0.05, created_at=start)
    scheduler = MemoryScheduler(store, CONFIG)

    assert (await scheduler.run_once(start + 10 * DAY)).decayed == 1
    assert await importance(store, "m") == pytest.approx(0.1 + 0.8 / 2)
    assert (await scheduler.run_once(start + 10 * DAY)).decayed == 0  # idempotent at the same moment
    await scheduler.run_once(start + 20 * DAY)
    assert await importance(store, "m") == pytest.approx(0.1 + 0.8 / 4)  # from the base: not compounded
    await scheduler.run_once(start + 50 * DAY)
    assert await importance(store, "m") == pytest.approx(0.1 + 0.8 / 32)
    assert await importance(store, "low") == 0.05  # already below the floor: left alone


async def test_using_a_memory_restores_its_importance(store: SqliteGraphStore) -> None:
    start = time.time() - 60 * DAY
    await add(store, "m", importance=0.9, created_at=start)
    scheduler = MemoryScheduler(store, CONFIG)
    await scheduler.run_once(start + 20 * DAY)
    assert await importance(store, "m") == pytest.approx(0.3)

    await store.record_use(SCOPE, ["m"], start + 30 * DAY)
    await scheduler.run_once(start + 30 * DAY)
    assert await importance(store, "m") == pytest.approx(0.9)
    await scheduler.run_once(start + 40 * DAY)  # and decays again from the use
    assert await importance(store, "m") == pytest.approx(0.5)


async def test_importance_set_by_someone_else_becomes_the_new_base(store: SqliteGraphStore) -> None:
    start = time.time() - 60 * DAY
    memory = await add(store, "m", importance=0.9, created_at=start)
    scheduler = MemoryScheduler(store, CONFIG)
    await scheduler.run_once(start + 20 * DAY)
    stored = await store.get_memory(SCOPE, "m")
    assert stored is not None
    await store.upsert_memory(stored.evolve(importance=0.7))  # e.g. the writer merged a repeated fact
    await scheduler.run_once(start + 25 * DAY)
    assert await importance(store, "m") == pytest.approx(0.7)  # decays from when it was set, not from creation
    await scheduler.run_once(start + 35 * DAY)
    assert await importance(store, "m") == pytest.approx(0.1 + 0.6 / 2)
    assert memory.metadata == {}


async def test_core_memories_do_not_decay(store: SqliteGraphStore) -> None:
    start = time.time() - 60 * DAY
    await add(store, "pinned", importance=0.9, created_at=start, metadata={"core": "pinned", "core_since": start})
    await MemoryScheduler(store, CONFIG).run_once(start + 30 * DAY)
    assert await importance(store, "pinned") == 0.9


# --- promotion into core memory ------------------------------------------------------------------------------------


async def candidates(store: SqliteGraphStore, uses: dict[str, int], importance: float = 0.8) -> None:
    """Memories recalled ``uses`` times, the last time just now (so they have not decayed)."""
    created, used = time.time() - 10 * DAY, time.time()
    for memory_id, count in uses.items():
        await add(store, memory_id, importance=importance, created_at=created, use_count=count, last_used_at=used)


async def test_promotion_is_paced_and_capped(store: SqliteGraphStore) -> None:
    await candidates(store, {"a": 50, "b": 40, "c": 30, "d": 20, "e": 10, "rare": 4})
    await add(store, "unimportant", importance=0.3, use_count=100)
    scheduler = MemoryScheduler(store, CONFIG)
    now = time.time()

    first = await scheduler.run_once(now)
    assert (first.promoted, first.demoted) == (2, 0)
    assert sorted(await core_ids(store)) == ["a", "b"]
    assert (await scheduler.run_once(now + 1)).promoted == 1  # the third fills the core (max 3)
    assert await core_ids(store) == ["a", "b", "c"]  # by the time each joined, then id
    again = await scheduler.run_once(now + 2)
    assert (again.promoted, again.demoted) == (0, 0)  # d is not 25 % stronger than c: no churn
    assert await core_ids(store) == ["a", "b", "c"]


async def test_a_clearly_stronger_memory_displaces_the_weakest_which_then_cools_down(store: SqliteGraphStore) -> None:
    await candidates(store, {"a": 50, "b": 40, "c": 8})
    scheduler = MemoryScheduler(store, CONFIG)
    now = time.time()
    await scheduler.run_once(now)
    await scheduler.run_once(now + 1)
    assert await core_ids(store) == ["a", "b", "c"]

    await candidates(store, {"d": 9})  # a little stronger than c: not enough to swap
    assert (await scheduler.run_once(now + 2)).promoted == 0
    await candidates(store, {"e": 60})  # much stronger: takes c's place
    swap = await scheduler.run_once(now + 3)
    assert (swap.promoted, swap.demoted) == (1, 1)
    assert await core_ids(store) == ["a", "b", "e"]
    demoted = await store.get_memory(SCOPE, "c")
    assert demoted is not None and demoted.metadata["core_left_at"] == now + 3

    await store.upsert_memory(demoted.evolve(use_count=500, importance=1.0))
    assert (await scheduler.run_once(now + 5)).promoted == 0  # cooling down, however strong now
    assert (await scheduler.run_once(now + 3 + CONFIG.core_cooldown_s)).promoted == 1
    assert "c" in await core_ids(store)


async def test_pins_are_never_demoted_and_push_out_promoted_memories(store: SqliteGraphStore) -> None:
    await candidates(store, {"a": 50, "b": 40, "c": 30})
    scheduler = MemoryScheduler(store, CONFIG)
    now = time.time()
    await scheduler.run_once(now)
    await scheduler.run_once(now + 1)
    assert await core_ids(store) == ["a", "b", "c"]

    for memory_id in ("p1", "p2", "p3", "p4"):
        await add(store, memory_id, importance=0.2, metadata={"core": "pinned", "core_since": now + 2})
    report = await scheduler.run_once(now + 3)
    assert (report.promoted, report.demoted) == (0, 3)
    assert await core_ids(store) == ["p1", "p2", "p3", "p4"]  # over the limit, but pins are the user's choice


async def test_core_order_is_stable_while_membership_is(store: SqliteGraphStore) -> None:
    await candidates(store, {"a": 50, "b": 40, "c": 30})
    scheduler = MemoryScheduler(store, CONFIG)
    now = time.time()
    await scheduler.run_once(now)
    await scheduler.run_once(now + 1)
    order = await core_ids(store)
    assert order == ["a", "b", "c"]
    for step in range(2, 6):  # use, importance and time move; the order does not
        await store.record_use(SCOPE, ["c", "c", "b"], now + step)
        await scheduler.run_once(now + step * DAY)
        assert await core_ids(store) == order
    texts = [m.text for m in await store.core_memories(SCOPE)]
    assert texts == [m.text for m in await store.core_memories(SCOPE)]


# --- the engine: prioritize, pin, expiry through recall and the derived indexes -----------------------------------


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[MemoryEngine]:
    config = MemoryConfig(data_dir=tmp_path / "mem", scheduler=SchedulerConfig(enabled=False))
    engine = await MemoryEngine.open(config)
    try:
        yield engine
    finally:
        await engine.close()


async def test_expiry_removes_a_memory_from_recall_and_from_faiss_and_bm25(engine: MemoryEngine) -> None:
    fleeting = await engine.remember("The parking spot today is B12", user_id="alice")
    lasting = await engine.remember("My dog is called Pochi", user_id="alice")
    assert fleeting and lasting
    scope = engine.scope("alice")
    query = (await engine.embedder.embed(["The parking spot today is B12"]))[0]

    await engine.prioritize(fleeting, user_id="alice", retention_period=0.5)
    assert fleeting in [h.memory.id for h in await engine.recall("parking spot", user_id="alice")]
    await asyncio.sleep(0.6)
    assert fleeting not in [h.memory.id for h in await engine.recall("parking spot", user_id="alice")]
    assert fleeting in [i for i, _ in await engine.vectors.search(scope, query, 5)]  # nothing told the index yet

    report = await engine.scheduler.run_once()
    assert report.expired == 1
    assert [i for i, _ in await engine.vectors.search(scope, query, 5)] == [lasting]
    assert engine.vectors.count(scope) == 1
    assert [i for i, _ in engine.lexical.search(scope, "parking spot B12", 5)] == []
    assert (await engine.scheduler.run_once()).expired == 0


async def test_prioritize_sets_importance_and_retention(engine: MemoryEngine) -> None:
    memory_id = await engine.remember("I am allergic to peanuts", user_id="alice", importance=0.4)
    assert memory_id
    before = time.time()
    short = await engine.prioritize(memory_id, user_id="alice", importance=0.95, retention_period="short_term")
    assert short.importance == 0.95
    assert short.expires_at == pytest.approx(before + engine.config.scheduler.short_term_s, abs=5)
    kept = await engine.prioritize(memory_id, user_id="alice", retention_period=None)
    assert (kept.importance, kept.expires_at) == (0.95, None)
    assert (await engine.prioritize(memory_id, user_id="alice", retention_period="long_term")).expires_at is None
    with pytest.raises(NotFound):
        await engine.prioritize("missing", user_id="alice", importance=0.5)
    with pytest.raises(NotFound):
        await engine.prioritize(memory_id, user_id="bob", importance=0.5)
    with pytest.raises(ValueError):
        await engine.prioritize(memory_id, user_id="alice", importance=1.5)


async def test_pin_and_unpin_through_the_engine(engine: MemoryEngine) -> None:
    first = await engine.remember("My name is Alice", user_id="alice")
    second = await engine.remember("I live in Sapporo", user_id="alice")
    assert first and second
    assert await engine.pin(second, user_id="alice")
    assert await engine.pin(first, user_id="alice")
    assert [m.id for m in await engine.core_memories("alice")] == [second, first]
    assert await engine.pin(second, user_id="alice")  # pinning again keeps its place
    assert [m.id for m in await engine.core_memories("alice")] == [second, first]
    assert await engine.core_memories("bob") == []
    assert not await engine.pin("missing", user_id="alice")

    assert await engine.unpin(second, user_id="alice")
    assert [m.id for m in await engine.core_memories("alice")] == [first]
    unpinned = await engine.get(second, user_id="alice")
    assert unpinned is not None and unpinned.metadata["core"] == "unpinned"


async def test_a_user_over_the_cap_loses_the_least_important_first_and_never_a_pinned_one(tmp_path: Path) -> None:
    """``max_memories_per_user``: after each write the least important go (the oldest among equals); a pinned
    memory stays however unimportant; another user is untouched."""
    config = MemoryConfig(data_dir=tmp_path / "mem", scheduler=SchedulerConfig(enabled=False, max_memories_per_user=3))
    engine = await MemoryEngine.open(config)
    try:
        pinned = await engine.remember("My passport number ends in 4471.", "ann", importance=0.0)
        assert pinned is not None and await engine.pin(pinned, user_id="ann")
        await engine.remember("I had toast for breakfast.", "ann", importance=0.1)
        await engine.remember("My sister Aiko lives in Sapporo.", "ann", importance=0.9)
        await engine.remember("I watched a film last night.", "ann", importance=0.1)
        for i in range(4):
            await engine.remember(f"Bob's note number {i} about gardening.", "bob", importance=0.1)
        kept = sorted(m.text for m in (await engine.list("ann", limit=10)).items)
        assert kept == ["I watched a film last night.", "My passport number ends in 4471.",
                        "My sister Aiko lives in Sapporo."]  # fmt: skip
        await engine.remember("I am allergic to peanuts.", "ann", importance=0.8)
        kept = sorted(m.text for m in (await engine.list("ann", limit=10)).items)
        assert kept == ["I am allergic to peanuts.", "My passport number ends in 4471.",
                        "My sister Aiko lives in Sapporo."]  # fmt: skip
        hits = await engine.recall("What did I watch?", "ann", top_k=5)
        assert all("film" not in hit.memory.text for hit in hits)  # gone from the indexes too
        assert await engine.count("bob") == 3
    finally:
        await engine.close()
