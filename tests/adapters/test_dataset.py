"""Building a user's training set from memories (pure functions; the real SQLite store for loading)."""

from __future__ import annotations

from pathlib import Path

from adapters.dataset import (
    HELD_OUT_TEMPLATES,
    NEUTRAL_PAIRS,
    build_training_set,
    cloze_prefix,
    load_memories,
    second_person,
)
from memory.graph.sqlite.store import SqliteGraphStore
from memory.models import Memory, MemoryKind, Scope

ALICE = Scope("t", "alice")


def test_second_person() -> None:
    assert second_person("My dog is called Pochi") == "Your dog is called Pochi."
    assert second_person("I am allergic to peanuts.") == "You are allergic to peanuts."
    assert second_person("i'm moving to Oslo with my sister") == "You're moving to Oslo with your sister."


def test_cloze_prefix_leaves_something_to_say() -> None:
    assert cloze_prefix("Your dog is called Pochi.") == "Your dog"
    assert cloze_prefix("You code.") == "You code"  # never less than two words


def test_pairs_teach_facts_and_hold_out_other_phrasings() -> None:
    memories = [
        Memory(ALICE, "My dog is called Pochi", kind=MemoryKind.FACT, importance=0.9, entities=("pochi",)),
        Memory(ALICE, "user: I live in Lisbon", kind=MemoryKind.EPISODE),
        Memory(ALICE, "assistant: Lisbon is lovely!", kind=MemoryKind.EPISODE),  # the model's words: not taught
        Memory(ALICE, "user: where should I eat?", kind=MemoryKind.EPISODE),  # a question: not a fact
        Memory(ALICE, "my dog is called pochi", kind=MemoryKind.FACT),  # a duplicate
    ]
    data = build_training_set(memories)
    assert data.facts == ("My dog is called Pochi", "I live in Lisbon")
    answers = {pair.answer for pair in data.train}
    assert answers == {"Your dog is called Pochi.", "You live in Lisbon."}
    train_prompts = {pair.prompt for pair in data.train}
    assert not train_prompts & {pair.prompt for pair in data.held_out}
    assert any(pair.prompt.startswith(HELD_OUT_TEMPLATES[0].split("{")[0]) for pair in data.held_out)
    assert "What do you know about pochi?" in train_prompts
    assert data.neutral == NEUTRAL_PAIRS
    assert build_training_set(memories).fingerprint == data.fingerprint


def test_the_limit_keeps_the_most_important() -> None:
    memories = [Memory(ALICE, f"I own {n} red bicycles", kind=MemoryKind.FACT, importance=n / 10) for n in range(10)]
    data = build_training_set(memories, max_examples=6)
    assert data.facts == ("I own 9 red bicycles", "I own 8 red bicycles")
    assert len(data.train) <= 6


async def test_load_memories_reads_one_scope(tmp_path: Path) -> None:
    store = SqliteGraphStore(tmp_path / "graph.sqlite3")
    await store.open()
    try:
        for n in range(5):
            await store.upsert_memory(Memory(ALICE, f"I have {n} cats", kind=MemoryKind.FACT))
        await store.upsert_memory(Memory(Scope("t", "bob"), "I have a boat", kind=MemoryKind.FACT))
        memories = await load_memories(store, ALICE, limit=3)
        assert len(memories) == 3 and all(m.scope == ALICE for m in memories)
        assert len(await load_memories(store, ALICE)) == 5
    finally:
        await store.close()
