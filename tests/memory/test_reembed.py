"""Changing the main embedder: the engine refuses a store embedded by another one (saying what to run), and
``reembed`` embeds every memory again — history included, nothing lost, links kept — after which the engine opens and
recall reads the new vectors. Stopped part-way, it resumes with the users it had not finished. Real parts throughout
(SQLite, FAISS, MiniLM ONNX, USE)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memory import EmbedderChanged, MemoryConfig, MemoryEngine, reembed
from memory.reembed import MARKER, PROGRESS, recorded

CHINESE = ["我养了一只叫小白的猫。", "我每天早上都喝咖啡。", "我在上海的一家银行上班。"]


def config(tmp_path: Path, runtime: str) -> MemoryConfig:
    return MemoryConfig(data_dir=tmp_path / "m", embedder={"runtime": runtime}, multilingual=False, dedupe_threshold=1.0)


async def fill(tmp_path: Path) -> str:
    """Memories of two users embedded by MiniLM; returns that embedder's name."""
    async with await MemoryEngine.open(config(tmp_path, "onnx")) as engine:
        for user in ("mei", "li"):
            for text in CHINESE:
                await engine.remember(text, user)
        await engine.remember("I live in Sapporo", "mei")
        await engine.remember("I moved to Osaka", "mei")  # supersedes: history to keep
        return engine.embedder.name


async def test_a_changed_embedder_is_refused_until_the_store_is_embedded_again(tmp_path: Path) -> None:
    minilm = await fill(tmp_path)
    assert recorded(tmp_path / "m") == {"name": minilm, "dim": 384}
    with pytest.raises(EmbedderChanged, match="memproxy reembed"):
        await MemoryEngine.open(config(tmp_path, "use"))

    seen: list[tuple[int, int]] = []
    count = await reembed(config(tmp_path, "use"), lambda done, total: seen.append((done, total)))
    assert count == 2 * len(CHINESE) + 2 and seen[-1] == (count, count)
    assert not (tmp_path / "m" / PROGRESS).exists()
    assert "use-multilingual" in json.loads((tmp_path / "m" / MARKER).read_text())["name"]

    async with await MemoryEngine.open(config(tmp_path, "use")) as engine:
        assert await engine.count("mei") == len(CHINESE) + 1  # the active ones; the old home is history
        hits = await engine.recall("What is the name of my pet?", "mei", top_k=1)
        assert hits[0].memory.text == CHINESE[0]  # found by meaning: the new vectors are read
        home = await engine.recall("where do I live", "mei", top_k=1)
        assert "Osaka" in home[0].memory.text and len(await engine.history(home[0].memory.id, user_id="mei")) == 2
        assert engine.vectors.dim == 512 and engine.vectors.count(engine.scope("li")) == len(CHINESE)


async def test_reembedding_resumes_with_the_users_not_finished(tmp_path: Path) -> None:
    await fill(tmp_path)
    target = config(tmp_path, "use")

    def stop_in_the_second_user(done: int, total: int) -> None:
        if done > len(CHINESE):  # li (first in key order) is finished and recorded; mei has begun
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await reembed(target, stop_in_the_second_user)
    assert json.loads((tmp_path / "m" / PROGRESS).read_text())["done"] == ["default/li"]
    with pytest.raises(EmbedderChanged):  # not finished: still refused
        await MemoryEngine.open(target)

    count = await reembed(target)
    assert count == len(CHINESE) + 2  # mei's only
    async with await MemoryEngine.open(target) as engine:
        assert (await engine.recall("Where do I work?", "mei", top_k=1))[0].memory.text == CHINESE[2]
        assert (await engine.recall("Where do I work?", "li", top_k=1))[0].memory.text == CHINESE[2]
