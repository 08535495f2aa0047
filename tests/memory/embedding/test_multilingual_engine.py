"""Chinese and Japanese memories found by what they mean, in their own language and from an English question, where
no word of the query is in the memory (so BM25 cannot be what found them): on the engine's default setup (MiniLM
plus the multilingual lane, see memory/recall/multilingual.py) and with the multilingual embedder as the only one.
Then the lane's own contract: who is in it, that it survives a restart, and that forgetting a user empties it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from memory import MemoryConfig, MemoryEngine

MEMORIES = {
    "cat": "我养了一只叫小白的猫。",
    "coffee": "我每天早上都喝咖啡。",
    "bank": "我在上海的一家银行上班。",
    "sapporo": "去年の冬、札幌で雪まつりを見ました。",
    "piano": "子供の頃からピアノを習っています。",
    "allergy": "私は卵アレルギーがあります。",
}
ENGLISH = ["I went hiking with my brother on Sunday.", "My favourite band is Radiohead."]
SETUPS = {"default": {}, "use-only": {"embedder": {"runtime": "use"}}}


@pytest.fixture(params=sorted(SETUPS))
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MemoryEngine]:
    config = MemoryConfig(data_dir=tmp_path / "memories", dedupe_threshold=1.0, **SETUPS[request.param])
    async with await MemoryEngine.open(config) as opened:
        for text in [*ENGLISH, *MEMORIES.values()]:
            await opened.remember(text, "mei")
        yield opened


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("我的宠物叫什么名字？", "cat"),
        ("What is the name of my pet?", "cat"),
        ("Where do I work?", "bank"),
        ("楽器は何を弾きますか？", "piano"),
        ("Which festival did I see in winter?", "sapporo"),
        ("What food can't I eat?", "allergy"),
    ],
)
async def test_a_question_finds_its_memory_by_meaning(engine: MemoryEngine, query: str, expected: str) -> None:
    recalled = await engine.recall(query, "mei", top_k=2)
    assert recalled and recalled[0].memory.text == MEMORIES[expected], [r.memory.text for r in recalled]


async def test_english_memories_still_answer_english_questions(engine: MemoryEngine) -> None:
    recalled = await engine.recall("Who did I go hiking with?", "mei", top_k=1)
    assert recalled[0].memory.text == ENGLISH[0]


def open_config(tmp_path: Path, **options: Any) -> MemoryConfig:
    return MemoryConfig(data_dir=tmp_path / "lane", dedupe_threshold=1.0, **options)


async def test_only_users_who_write_cjk_are_in_the_lane_with_all_their_memories(tmp_path: Path) -> None:
    async with await MemoryEngine.open(open_config(tmp_path)) as engine:
        assert engine.lane is not None
        for text in ENGLISH:
            await engine.remember(text, "ann")
            await engine.remember(text, "mei")
        assert not engine.lane.holds(engine.scope("ann")) and not engine.lane.holds(engine.scope("mei"))
        assert not engine.lane.loaded  # English only so far: the model is not even loaded
        await engine.remember(MEMORIES["cat"], "mei")  # mei's first CJK memory brings her English ones in
        assert engine.lane.loaded
        assert engine.lane.index.count(engine.scope("mei")) == 3
        await engine.remember("I also play tennis.", "mei")  # and every later one joins
        assert engine.lane.index.count(engine.scope("mei")) == 4
        assert not engine.lane.holds(engine.scope("ann"))


async def test_the_lane_survives_a_restart_and_forgetting_a_user_empties_it(tmp_path: Path) -> None:
    async with await MemoryEngine.open(open_config(tmp_path)) as engine:
        for text in MEMORIES.values():
            await engine.remember(text, "mei")
        assert engine.lane is not None and engine.lane.index.count(engine.scope("mei")) == len(MEMORIES)
    async with await MemoryEngine.open(open_config(tmp_path)) as engine:
        assert engine.lane is not None and engine.lane.index.count(engine.scope("mei")) == len(MEMORIES)
        assert engine.lane.loaded  # someone is in the lane: loaded at start, not on their first question
        recalled = await engine.recall("What is the name of my pet?", "mei", top_k=1)
        assert recalled[0].memory.text == MEMORIES["cat"]
        await engine.forget_user("mei")
        assert not engine.lane.holds(engine.scope("mei"))


async def test_a_lane_new_on_an_existing_store_catches_up(tmp_path: Path) -> None:
    async with await MemoryEngine.open(open_config(tmp_path, multilingual=False)) as engine:
        assert engine.lane is None
        for text in MEMORIES.values():
            await engine.remember(text, "mei")
    async with await MemoryEngine.open(open_config(tmp_path)) as engine:
        assert engine.lane is not None and engine.lane.index.count(engine.scope("mei")) == len(MEMORIES)
        recalled = await engine.recall("Which festival did I see in winter?", "mei", top_k=1)
        assert recalled[0].memory.text == MEMORIES["sapporo"]
