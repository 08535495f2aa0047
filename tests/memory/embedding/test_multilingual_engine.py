"""The engine on the multilingual embedder (``embedder={"runtime": "use"}``): Chinese and Japanese memories are found
by what they mean, in their own language and from an English question, where no word of the query is in the memory
(so BM25 cannot be what found them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

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


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[MemoryEngine]:
    config = MemoryConfig(data_dir=tmp_path / "memories", embedder={"runtime": "use"}, dedupe_threshold=1.0)
    async with await MemoryEngine.open(config) as opened:
        for text in MEMORIES.values():
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
