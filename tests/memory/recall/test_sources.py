"""Whose words a memory holds, in recall (memory/recall/sources.py), on the real engine: in an assistant chat the
user's statements outrank the assistant's replies, unless the query asks about the assistant's words; a question
the user asked never comes back as the answer to itself; and a bare reply is found by what it replied to."""

from __future__ import annotations

import pytest

from memory import MemoryEngine
from memory.recall.sources import about_assistant
from memory.writes.extraction import is_question

T0 = 1_700_000_000.0


async def say(engine: MemoryEngine, text: str, answer: str, at: float, before: str | None = None) -> None:
    messages = [{"id": f"a-{at}", "role": "assistant", "content": before}] if before else []
    messages.append({"id": f"u-{at}", "role": "user", "content": text})
    await engine.remember_exchange(
        messages, {"id": f"r-{at}", "content": answer}, user_id="alice", timestamp=at, wait=True
    )


async def test_the_users_statement_outranks_the_assistants_invention(engine: MemoryEngine) -> None:
    await say(engine, "I work as a nurse at a hospital", "Nurses work long shifts in demanding hospital wards.", T0)
    await say(engine, "Tell me something about jobs", "A job as a software engineer at a big tech firm pays well.", T0 + 10)
    hits = await engine.recall("What is my job?", user_id="alice", top_k=3)
    assert hits[0].memory.text == "User: I work as a nurse at a hospital"


async def test_the_assistants_words_count_when_the_query_asks_about_them(engine: MemoryEngine) -> None:
    await say(engine, "Any idea for dinner?", "Try my miso salmon recipe: bake the salmon with white miso glaze.", T0)
    await say(engine, "I cooked salmon for my sister yesterday", "Nice, how did it go?", T0 + 3600)
    hits = await engine.recall("What was the recipe you gave me for salmon?", user_id="alice", top_k=1)
    assert hits[0].memory.text.startswith("Assistant: Try my miso salmon recipe")


async def test_a_question_never_comes_back_as_its_own_answer(engine: MemoryEngine) -> None:
    await say(engine, "What is my dog called?", "I don't know yet, tell me!", T0)
    await say(engine, "My dog is called Pochi", "What a lovely name.", T0 + 60)
    await say(engine, "What is my dog called?", "Pochi, you told me.", T0 + 120)
    texts = [hit.memory.text for hit in await engine.recall("What is my dog called?", user_id="alice", top_k=6)]
    assert texts[0] == "User: My dog is called Pochi"
    assert "User: What is my dog called?" not in texts


async def test_a_bare_reply_is_found_by_what_it_replied_to(engine: MemoryEngine) -> None:
    await say(engine, "I took her in from the shelter in March", "Lovely!", T0,
              before="Where did you get your cat Luna from?")  # fmt: skip
    await say(engine, "The weather is grim today", "Stay warm!", T0 + 86_400)
    hits = await engine.recall("Where did I get my cat?", user_id="alice", top_k=1)
    assert hits[0].memory.text == "User: I took her in from the shelter in March"


@pytest.mark.parametrize(
    "query, expected",
    [
        ("What was the recipe you gave me?", True),
        ("Can you remind me what you recommended for my back pain?", True),
        ("What did I say about my job?", False),
        ("Can you tell me where I live?", False),
        ("あなたが勧めた本は何？", True),
    ],
)
def test_a_query_about_the_assistants_words(query: str, expected: bool) -> None:
    assert about_assistant(query) is expected


@pytest.mark.parametrize(
    "text, asked",
    [
        ("What did you paint?", True),
        ("Wow! What did you paint?", True),
        ("I painted a lake. What about you?", False),
        ("札幌に住んでいますか？", True),
        ("I live in Sapporo.", False),
    ],
)
def test_a_turn_that_only_asks(text: str, asked: bool) -> None:
    assert is_question(text) is asked
