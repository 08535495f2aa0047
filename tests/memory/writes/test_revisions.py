"""A revision job through the write pipeline: applied once however often it is handed out (a crash between its
commit and its ack hands it out again), and nothing when its memory went away meanwhile."""

from __future__ import annotations

from pathlib import Path

from memory.config import MemoryConfig
from memory.factory import build_store
from memory.models import Memory, MemoryKind, Scope
from memory.writes.jobs import WriteJob
from memory.writes.queue import DurableQueue
from tests.memory.conftest import hand_driven

ALICE = Scope("default", "alice")


async def test_a_replayed_revision_changes_nothing(tmp_path: Path) -> None:
    config = MemoryConfig(data_dir=tmp_path / "mem")
    async with hand_driven(config, build_store(config), DurableQueue(config.queue_path)) as parts:
        await parts.store.upsert_memory(Memory(ALICE, "My favourite tea is sencha", kind=MemoryKind.FACT))
        [old] = (await parts.store.list_memories(ALICE)).items
        job = WriteJob.for_revision(ALICE, old.id, "My favourite tea is genmaicha", job_id="revise-once")
        await parts.pipeline.submit(job)
        assert await parts.pipeline.run_once() == 1
        first = await parts.store.get_memory(ALICE, old.id)
        await parts.pipeline.submit(job)  # handed out again, as after a crash before the ack
        assert await parts.pipeline.run_once() == 1
        assert await parts.store.count_memories(ALICE, include_inactive=True) == 2
        assert first is not None and first.superseded_by == "revise-once-0"
        [new] = (await parts.store.list_memories(ALICE)).items
        assert (new.id, new.text) == ("revise-once-0", "My favourite tea is genmaicha")


async def test_a_revision_of_a_memory_deleted_meanwhile_leaves_nothing(tmp_path: Path) -> None:
    config = MemoryConfig(data_dir=tmp_path / "mem")
    async with hand_driven(config, build_store(config), DurableQueue(config.queue_path)) as parts:
        await parts.pipeline.submit(WriteJob.for_revision(ALICE, "gone", "I live in Osaka", job_id="too-late"))
        assert await parts.pipeline.run_once() == 1  # acked: there is nothing to revise
        assert await parts.store.count_memories(ALICE, include_inactive=True) == 0
