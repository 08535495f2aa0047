"""The memory engine end to end on its real parts: SQLite store, FAISS, BM25, the ONNX MiniLM embedder, the
durable queue and the write pipeline. Nothing is mocked."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path


from memory.config import MemoryConfig
from memory.engine import MemoryEngine
from memory.models import RelationType

ROOT = Path(__file__).resolve().parents[2]


async def test_remember_then_recall(engine: MemoryEngine) -> None:
    dog = await engine.remember("My dog is called Pochi", user_id="alice", importance=0.8, category="pets")
    await engine.remember("I live in Sapporo", user_id="alice")
    await engine.remember("I like green tea in the morning", user_id="alice")
    hits = await engine.recall("What is the name of my dog?", user_id="alice", top_k=2)
    assert hits[0].memory.id == dog
    assert hits[0].memory.metadata["category"] == "pets"
    assert hits[0].signals["dense"] > 0 and hits[0].score > 0


async def test_users_and_tenants_never_see_each_other(engine: MemoryEngine) -> None:
    await engine.remember("My dog is called Pochi", user_id="alice")
    await engine.remember("My cat is called Tama", user_id="alice", tenant="other")
    assert await engine.recall("dog name", user_id="bob") == []
    other = await engine.recall("pet name", user_id="alice", tenant="other")
    assert [h.memory.text for h in other] == ["My cat is called Tama"]
    mine = await engine.recall("pet name", user_id="alice")
    assert [h.memory.text for h in mine] == ["My dog is called Pochi"]


async def test_japanese_memories(engine: MemoryEngine) -> None:
    await engine.remember("私の犬はポチです", user_id="hanako")
    await engine.remember("札幌に住んでいます", user_id="hanako")
    hits = await engine.recall("犬の名前は？", user_id="hanako", top_k=1)
    assert hits[0].memory.text == "私の犬はポチです"


async def test_near_duplicate_merges_with_provenance(engine: MemoryEngine) -> None:
    first = await engine.remember("My dog is called Pochi.", user_id="alice", source_ids=["m1"], importance=0.3)
    second = await engine.remember("My dog is called Pochi", user_id="alice", source_ids=["m2"], importance=0.9)
    assert first == second
    memory = await engine.get(first, user_id="alice")
    assert memory is not None and memory.source_ids == ("m1", "m2") and memory.importance == 0.9
    assert await engine.count("alice") == 1


async def test_same_job_twice_is_applied_once(engine: MemoryEngine) -> None:
    a = await engine.remember("I play the violin", user_id="alice", job_id="job-1")
    b = await engine.remember("I play the violin", user_id="alice", job_id="job-1")
    assert a == b
    assert await engine.count("alice") == 1


async def test_forget_and_forget_user(engine: MemoryEngine) -> None:
    keep = await engine.remember("I live in Sapporo", user_id="alice")
    drop = await engine.remember("My password hint is blue", user_id="alice")
    await engine.remember("Bob likes jazz", user_id="bob")
    assert await engine.forget(drop, user_id="alice")
    assert [h.memory.id for h in await engine.recall("password hint", user_id="alice")] == [keep]
    assert not await engine.forget(keep, user_id="bob")  # another user's id behaves as missing
    assert await engine.forget_user("alice") == 1
    assert await engine.recall("Sapporo", user_id="alice") == []
    assert engine.vectors.count(engine.scope("alice")) == 0
    assert [h.memory.text for h in await engine.recall("jazz", user_id="bob")] == ["Bob likes jazz"]


async def test_relationships_and_graph_search(engine: MemoryEngine) -> None:
    a = await engine.remember("I started learning Japanese", user_id="alice")
    b = await engine.remember("I passed the JLPT N3 exam", user_id="alice")
    c = await engine.remember("I got a job in Osaka", user_id="alice")
    await engine.add_relationship(a, b, RelationType.LEADS_TO, 0.9, user_id="alice")
    await engine.add_relationship(b, c, RelationType.LEADS_TO, 0.8, user_id="alice")
    hits = await engine.graph_search(a, max_depth=2, relationship_types=["LEADS_TO"], user_id="alice")
    assert [(h.memory.id, h.depth) for h in hits] == [(b, 1), (c, 2)]


async def test_export_import_round_trip(engine: MemoryEngine) -> None:
    await engine.remember("My dog is called Pochi", user_id="alice", category="pets")
    exported = await engine.export("alice")
    assert [m["text"] for m in exported["memories"]] == ["My dog is called Pochi"]
    assert await engine.import_user("carol", exported) == 1
    hits = await engine.recall("dog", user_id="carol")
    assert [h.memory.text for h in hits] == ["My dog is called Pochi"]


async def test_reopen_keeps_everything(tmp_path: Path) -> None:
    config = MemoryConfig(data_dir=tmp_path / "mem")
    async with await MemoryEngine.open(config) as engine:
        memory_id = await engine.remember("I live in Sapporo", user_id="alice")
    async with await MemoryEngine.open(config) as engine:
        hits = await engine.recall("Where do I live?", user_id="alice")
        assert [h.memory.id for h in hits] == [memory_id]


def test_kill_9_during_1000_queued_writes_loses_nothing_and_applies_nothing_twice(tmp_path: Path) -> None:
    data_dir = tmp_path / "crash"
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "memory" / "crash_writer.py"), str(data_dir), "1000"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "queued"  # all 1000 are durable on disk now
    time.sleep(1.0)  # let it apply some of them
    child.kill()
    child.wait()
    child.stdout.close()

    async def check() -> None:
        async with await MemoryEngine.open(MemoryConfig(data_dir=data_dir, dedupe_threshold=1.0)) as engine:
            await engine.flush(timeout_s=300)
            scope = engine.scope("crash-user")
            exported = await engine.export("crash-user")
            sources = Counter(s for m in exported["memories"] for s in m["source_ids"])
            assert sorted(sources) == sorted(f"msg-{i}" for i in range(1000))
            assert set(sources.values()) == {1}
            assert engine.vectors.count(scope) == await engine.count("crash-user") == len(exported["memories"])
            assert (await engine.write_queue_stats()).depth == 0

    import asyncio

    asyncio.run(check())


async def test_forget_user_also_drops_queued_writes(idle_engine: MemoryEngine) -> None:
    engine = idle_engine
    await engine.remember("I keep my spare key under the mat", user_id="dave", wait=False)
    assert (await engine.write_queue_stats()).depth == 1
    await engine.forget_user("dave")
    await engine.start()
    await engine.flush()
    assert await engine.recall("where is the spare key", user_id="dave") == []
    assert await engine.count("dave") == 0


async def test_writes_made_by_another_process_reach_recall_within_the_follow_interval(tmp_path: Path) -> None:
    """Another proxy replica on the same store writes straight to it: this engine's indexes catch up by themselves."""
    import asyncio

    from memory.factory import build_store
    from memory.models import Memory, Scope

    config = MemoryConfig(data_dir=tmp_path / "mem", index_follow_interval_s=0.1)
    engine = await MemoryEngine.open(config)
    elsewhere = build_store(config)  # the other replica's own connection to the same store
    await elsewhere.open()
    try:
        scope = Scope("default", "alice")
        vector = (await engine.embedder.embed(["My canoe is painted orange"]))[0]
        await elsewhere.upsert_memory(Memory(scope, "My canoe is painted orange"), vector)  # this engine hears nothing
        for _ in range(50):
            if await engine.recall("canoe colour", user_id="alice"):
                break
            await asyncio.sleep(0.05)
        hits = await engine.recall("canoe colour", user_id="alice")
        assert [h.memory.text for h in hits] == ["My canoe is painted orange"]
    finally:
        await elsewhere.close()
        await engine.close()
