"""Contradiction → supersede and the store-outage rule, through the real MemoryEngine (SQLite store, FAISS, the
ONNX MiniLM embedder, the durable queue). Nothing is mocked; the outage is a real store that refuses to work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memory.config import MemoryConfig
from memory.engine import MemoryEngine
from memory.graph.base import StoreUnavailable
from memory.graph.sqlite.store import SqliteGraphStore
from memory.models import Scope
from memory.recall.presets import get_preset
from memory.writes.jobs import WriteJob
from memory.writes.queue import DurableQueue
from tests.memory.conftest import hand_driven

T0 = 1_700_000_000.0


async def say(engine: MemoryEngine, text: str, at: float, user: str = "alice") -> tuple[str, ...]:
    applied = await engine.remember_exchange(
        [{"id": f"u{at}", "role": "user", "content": text}],
        {"id": f"a{at}", "content": "Noted."},
        user_id=user,
        timestamp=at,
        wait=True,
    )
    assert applied is not None
    return applied


async def residence_holders(engine: MemoryEngine, user: str = "alice") -> list[str]:
    page = await engine.list(user, limit=1000)
    return sorted(m.metadata["slot_value"] for m in page.items if m.metadata.get("slot") == "residence")


async def test_a_move_supersedes_the_old_residence_and_keeps_it_in_history(engine: MemoryEngine) -> None:
    dog, sapporo, _ = await say(engine, "My dog is called Pochi and I live in Sapporo", T0)
    stored = [await engine.get(memory_id, user_id="alice") for memory_id in (dog, sapporo)]
    assert [(m.metadata["slot"], m.metadata["slot_value"]) for m in stored] == [
        ("pet:dog:name", "Pochi"),
        ("residence", "Sapporo"),
    ]
    osaka, _ = await say(engine, "I moved to Osaka", T0 + 86_400)

    hits = await engine.recall("where do I live", user_id="alice", top_k=5)
    texts = [h.memory.text for h in hits]
    assert "Osaka" in texts[0]
    assert not any("Sapporo" in text for text in texts)  # the superseded residence is never recalled
    assert await residence_holders(engine) == ["Osaka"]
    assert [m.id for m in await engine.history(osaka, user_id="alice")] == [sapporo, osaka]
    assert (await engine.get(sapporo, user_id="alice")).superseded_by == osaka  # type: ignore[union-attr]
    # the other clause of the first turn is untouched
    dog_hits = await engine.recall("what is my dog called", user_id="alice", top_k=1)
    assert dog_hits[0].memory.id == dog


async def test_a_restatement_merges_provenance_into_the_newest(engine: MemoryEngine) -> None:
    first = await engine.remember("I live in Sapporo", user_id="alice", source_ids=["m1"], importance=0.9)
    second = await engine.remember(
        "Actually I'm living in Sapporo now", user_id="alice", source_ids=["m2"], importance=0.4
    )
    assert first != second
    newest = await engine.get(second, user_id="alice")
    assert newest is not None and newest.source_ids == ("m1", "m2") and newest.importance == 0.9
    assert [m.id for m in await engine.history(second, user_id="alice")] == [first, second]


async def test_an_older_statement_arriving_late_does_not_win(engine: MemoryEngine) -> None:
    (osaka, _) = await say(engine, "I live in Osaka", T0 + 100)
    (kyoto, _) = await say(engine, "I live in Kyoto", T0)  # e.g. a job retried after a newer one was applied
    assert (await engine.get(kyoto, user_id="alice")).superseded_by == osaka  # type: ignore[union-attr]
    assert await residence_holders(engine) == ["Osaka"]


async def test_slots_never_cross_users_and_contradictions_never_merge(engine: MemoryEngine) -> None:
    await say(engine, "I live in Sapporo", T0, user="alice")
    await say(engine, "I live in Osaka", T0 + 1, user="bob")
    assert await residence_holders(engine, "alice") == ["Sapporo"]
    # near-identical texts with different values are two memories, the newer one active
    a = await engine.remember("My favourite colour is blue", user_id="carol")
    b = await engine.remember("My favourite colour is green", user_id="carol")
    assert a != b and (await engine.get(a, user_id="carol")).superseded_by == b  # type: ignore[union-attr]


class FlakyStore(SqliteGraphStore):
    """The real SQLite store that, while ``down``, fails every call the write path makes as unavailable."""

    down = False

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("store is down (test)")

    async def commit(self, batch: Any) -> bool:
        self._check()
        return await super().commit(batch)

    async def get_memory(self, scope: Any, memory_id: str) -> Any:
        self._check()
        return await super().get_memory(scope, memory_id)


class Clock:
    now = T0

    def __call__(self) -> float:
        return self.now


async def test_a_store_outage_longer_than_the_attempt_limit_dead_letters_nothing(tmp_path: Path) -> None:
    """The write pipeline on its own parts, driven by hand, with the queue's clock moved."""
    config = MemoryConfig(data_dir=tmp_path / "mem")
    clock = Clock()
    store = FlakyStore(config.data_dir / "graph.sqlite3")
    queue = DurableQueue(config.queue_path, max_attempts=3, clock=clock)
    alice = Scope("default", "alice")
    async with hand_driven(config, store, queue) as parts:
        store.down = True
        await parts.pipeline.submit(WriteJob.for_memory(alice, "I live in Sapporo", job_id="j1"))
        for _ in range(queue.max_attempts * 5):  # an outage far longer than max_attempts hand-outs
            assert await parts.pipeline.run_once() == 0
            clock.now += parts.pipeline.options.retry_after_s
        assert await queue.depth() == 1 and await queue.dead_letter_count() == 0
        store.down = False
        assert await parts.pipeline.run_once() == 1
        assert await queue.depth() == 0 and await queue.dead_letter_count() == 0
        hits = await parts.recaller.recall(alice, "where do I live", get_preset(None))
        assert [h.memory.text for h in hits] == ["I live in Sapporo"]
