"""What the engine does beyond one call: a revision takes the durable queue like every new memory, and closing the
engine ends every task it started (bookkeeping finishes, periodic work stops)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from memory import MemoryConfig, MemoryEngine, NotFound, Scope
from memory.data_dir_lock import DataDirInUse
from memory.tasks import BackgroundTasks
from memory.writes.jobs import WriteJob
from memory.writes.queue import DurableQueue

ENGINE_TASKS = ("memory-", "embedding-", "durable-queue")
SAPPORO = {"id": "m-sapporo", "text": "I live in Sapporo", "kind": "fact", "importance": 0.7, "created_at": 1.7e9}


async def test_a_revision_waits_in_the_durable_queue_like_any_write(idle_engine: MemoryEngine) -> None:
    engine = idle_engine  # its worker is not started: nothing applies the queue yet
    await engine.import_user("alice", {"memories": [SAPPORO]})
    revision = asyncio.ensure_future(engine.revise("m-sapporo", "I live in Osaka", user_id="alice"))
    for _ in range(100):
        if (await engine.write_queue_stats()).depth:
            break
        await asyncio.sleep(0.01)
    assert (await engine.write_queue_stats()).depth == 1 and not revision.done()
    await engine.start()
    new = await asyncio.wait_for(revision, 30)
    [first, second] = await engine.history(new, user_id="alice")
    assert (first.id, first.superseded_by, second.id) == ("m-sapporo", new, new)
    assert second.text == "I live in Osaka" and second.importance == 0.7
    assert second.metadata["slot_value"] == "Osaka" and "osaka" in second.entities
    assert [hit.memory.id for hit in await engine.recall("Where do I live?", user_id="alice")] == [new]


async def test_revising_what_is_gone_or_superseded_is_refused(engine: MemoryEngine) -> None:
    old = await engine.remember("I drive a blue car", user_id="alice")
    assert old is not None
    await engine.revise(old, "I drive a red car", user_id="alice")
    with pytest.raises(ValueError, match="superseded"):
        await engine.revise(old, "I drive a green car", user_id="alice")
    with pytest.raises(NotFound):
        await engine.revise("no-such-memory", "anything", user_id="alice")


async def test_closing_ends_every_task_and_lets_bookkeeping_finish(tmp_path: Path) -> None:
    config = MemoryConfig(data_dir=tmp_path / "mem")
    engine = await MemoryEngine.open(config)
    dog = await engine.remember("My dog is called Pochi", user_id="alice")
    await engine.recall("What is my dog called?", user_id="alice")  # leaves its use to be recorded in the background
    await engine.close()
    running = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith(ENGINE_TASKS) and not t.done()]
    assert running == []
    async with await MemoryEngine.open(config) as reopened:
        memory = await reopened.get(str(dog), user_id="alice")
        assert memory is not None and memory.use_count == 1


async def test_background_tasks_close_stops_periodic_work_and_waits_for_the_rest() -> None:
    tasks = BackgroundTasks(grace_s=1.0)
    ticks: list[int] = []
    finished: list[str] = []

    async def tick() -> None:
        ticks.append(len(ticks))
        if len(ticks) == 1:
            raise RuntimeError("a failing step does not stop the next ones")

    async def bookkeeping() -> None:
        await asyncio.sleep(0.05)
        finished.append("done")

    async def stuck() -> None:
        await asyncio.sleep(3600)

    tasks.every(0.01, tick, "test-periodic")
    tasks.spawn(bookkeeping(), "test-once")
    tasks.spawn(stuck(), "test-stuck")
    await asyncio.sleep(0.05)
    await asyncio.wait_for(tasks.close(), 5)
    assert len(ticks) >= 2 and finished == ["done"] and len(tasks) == 0


async def test_one_process_at_a_time_on_a_data_dir(tmp_path: Path) -> None:
    """A second engine on an open data dir is refused with the holder's pid; once the first closes, it opens."""
    config = MemoryConfig(data_dir=tmp_path / "mem")
    first = await MemoryEngine.open(config)
    try:
        with pytest.raises(DataDirInUse, match=f"pid {os.getpid()}"):
            await MemoryEngine.open(config)
    finally:
        await first.close()
    second = await MemoryEngine.open(config)
    await second.close()


async def test_a_dead_process_s_leases_are_applied_at_start_not_a_lease_later(tmp_path: Path) -> None:
    """A job leased by a process that died (its lease still running) is applied when the next engine starts."""
    config = MemoryConfig(data_dir=tmp_path / "mem")
    queue = DurableQueue(config.queue_path)
    await queue.open()
    job = WriteJob.for_exchange(
        Scope("default", "ann"), [{"id": "m1", "role": "user", "content": "I keep bees on the roof."}],
        {"id": "a1", "content": "Lovely."}, job_id="leased-by-the-dead",
    )  # fmt: skip
    await queue.put(job)
    assert [j.job_id for j in await queue.claim(lease_s=3600)] == ["leased-by-the-dead"]
    await queue.close()
    engine = await MemoryEngine.open(config)
    try:
        await engine.flush(timeout_s=10)  # without the reclaim: an hour's wait, the lease
        assert "User: I keep bees on the roof." in [m.text for m in (await engine.list("ann", limit=10)).items]
    finally:
        await engine.close()
