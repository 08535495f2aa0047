"""The deterministic extractor: turns → episodic memories with provenance, entities (English, Japanese, Chinese,
Korean), LEADS_TO relations, explicit memories, and robustness on any input. What every extractor must do is in
test_extractor_contract.py."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from memory.models import MemoryKind, RelationType, Scope
from memory.writes.extraction import (
    DeterministicExtractor,
    ExtractedMemory,
    ExtractedRelation,
    Extraction,
    episode_importance,
    find_entities,
)
from memory.writes.jobs import WriteJob

SCOPE = Scope("acme", "hanako")
extractor = DeterministicExtractor()


def exchange(messages: list[dict[str, Any]], answer: Any, **payload: Any) -> WriteJob:
    body = {"messages": messages, "answer": answer, "conversation_id": "conv-1", "timestamp": 1_700_000_000.0}
    return WriteJob("job-1", SCOPE, "exchange", body | payload, created_at=1_700_000_100.0)


def names(text: str) -> list[str]:
    return [name for name, _ in find_entities(text)]


async def test_an_exchange_becomes_two_linked_episodes_with_provenance() -> None:
    job = exchange(
        [
            {"id": "sys", "role": "system", "content": "You are a kind assistant. Secret rules."},
            {"id": "m1", "role": "user", "content": "My dog Pochi turned 3 years old on May 7, 2023!"},
        ],
        {"id": "m2", "content": "Happy birthday to Pochi! Three is a fun age."},
    )
    result = await extractor.extract(job)
    user, assistant = result.memories
    assert user.text == "User: My dog Pochi turned 3 years old on May 7, 2023!"
    assert assistant.text == "Assistant: Happy birthday to Pochi! Three is a fun age."
    assert (user.source_ids, assistant.source_ids) == (("m1",), ("m2",))
    assert user.kind == assistant.kind == MemoryKind.EPISODE
    assert user.event_time == assistant.event_time == 1_700_000_000.0
    assert user.metadata == {"role": "user", "speaker": "User", "conversation_id": "conv-1"}
    assert ("Pochi", "name") in user.entities and ("3 years", "quantity") in user.entities
    assert ("May 7, 2023", "date") in user.entities
    assert result.relations == [ExtractedRelation(0, 1, RelationType.LEADS_TO, 1.0)]
    assert all("Secret" not in m.text for m in result.memories)  # system prompts are never memories


async def test_only_the_newest_user_turn_and_speaker_names() -> None:
    job = exchange(
        [
            {"id": "m1", "role": "user", "content": "first question"},
            {"id": "m2", "role": "user", "content": "I moved to Osaka last month", "name": "Hanako"},
        ],
        {"id": "m3", "content": "Osaka is lively!", "name": "Aiko"},
    )
    result = extractor.extract_now(job)
    assert [m.text for m in result.memories] == ["Hanako: I moved to Osaka last month", "Aiko: Osaka is lively!"]
    assert result.memories[0].metadata["speaker"] == "Hanako"


async def test_empty_turns_leave_nothing_and_missing_ids_fall_back_to_the_job() -> None:
    only_answer = extractor.extract_now(exchange([{"role": "user", "content": "  \n\t "}], {"content": "Hello!"}))
    assert [m.text for m in only_answer.memories] == ["Assistant: Hello!"]
    assert only_answer.memories[0].source_ids == ("job-1:assistant",)
    assert only_answer.relations == []

    nothing = extractor.extract_now(exchange([{"role": "system", "content": "Be brief."}], {"content": " "}))
    assert nothing.memories == [] and nothing.relations == []

    no_answer = extractor.extract_now(exchange([{"id": "m1", "role": "user", "content": "hi there friend"}], None))
    assert [m.source_ids for m in no_answer.memories] == [("m1",)]


async def test_content_parts_keep_text_and_drop_images() -> None:
    parts = [
        {"type": "text", "text": "This is my cat Tama."},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "She is 2 years old."},
    ]
    result = extractor.extract_now(exchange([{"id": "m1", "role": "user", "content": parts}], "Cute!"))
    assert result.memories[0].text == "User: This is my cat Tama.\nShe is 2 years old."
    assert result.memories[1].text == "Assistant: Cute!"


async def test_japanese_entities() -> None:
    found = names("私の犬はポチです。札幌に住んでいます。")
    assert "ポチ" in found and "札幌" in found
    result = extractor.extract_now(exchange([{"id": "m1", "role": "user", "content": "私の犬はポチです。札幌に住んでいます。"}], None))
    assert [m.metadata["slot"] for m in result.memories] == ["pet:dog:name", "residence"]  # one clause each
    assert {"ポチ", "札幌"} <= {name for m in result.memories for name, _ in m.entities}
    assert "2023年5月7日" in names("2023年5月7日に「東京タワー」へ行きました。3歳の娘と。")
    assert "ジョン・スミス" in names("ジョン・スミスさんに会いました。")


def test_chinese_and_korean_entities() -> None:
    assert {"北京", "小白"} <= set(names("我住在北京，我的狗叫小白。"))
    korean = names("저는 서울에 살아요. 고양이가 있어요.")
    assert "서울" in korean and "고양이" in korean and "저는" not in korean and "살아요" not in korean


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yesterday I met Caroline Smith in New York.", {"Caroline Smith", "New York"}),
        ("I studied at the University of Tokyo with Dr. Watson.", {"University of Tokyo", "Watson"}),
        ("Ping @bob_99 about #hiking, it was 5 km and cost $1,200.", {"@bob_99", "#hiking", "5 km", "$1,200"}),
        (
            'We watched "The Lord of the Rings" on 2024-01-05 at 7:30 pm.',
            {"The Lord of the Rings", "2024-01-05", "7:30 pm"},
        ),
        ("Paris is lovely. I want to live in Paris.", {"Paris"}),
        ("Hey Mel! How was the LGBTQ support group on Saturday?", {"Mel", "LGBTQ", "Saturday"}),
    ],
)
def test_english_entities(text: str, expected: set[str]) -> None:
    assert expected <= set(names(text))


@pytest.mark.parametrize(
    "text",
    ["Went home early.", "Thanks, that helps.", "The end.", "See https://Example.com/Foo or J.Smith@Example.org"],
)
def test_no_entities_from_sentence_starts_urls_or_emails(text: str) -> None:
    assert find_entities(text) == []


def test_entities_are_unique_by_normalised_name_in_reading_order() -> None:
    assert find_entities("Bob met Alice. Then Alice met bob's friend Bob.") == [("Bob", "name"), ("Alice", "name")]


def test_importance_heuristic() -> None:
    disclosure = episode_importance("My dog Pochi is allergic to chicken", "user", 1)
    fact_about_world = episode_importance("The weather report says rain later", "user", 0)
    question = episode_importance("What time is it in the capital?", "user", 0)
    answer = episode_importance("I think it will rain later", "assistant", 0)
    thanks = episode_importance("ok thanks", "user", 0)
    assert disclosure > fact_about_world > question and fact_about_world > answer > thanks
    assert episode_importance("私は札幌に住んでいます", "user", 1) > episode_importance("札幌はどこですか", "user", 1)
    assert all(0.0 <= x <= 1.0 for x in (disclosure, fact_about_world, question, answer, thanks))


async def test_memory_jobs_name_the_entities_in_their_text() -> None:
    job = WriteJob.for_memory(SCOPE, "  Hanako's favourite tea is Gyokuro from Uji.  ", kind="preference")
    [memory] = (await extractor.extract(job)).memories
    assert memory.entities == (("Hanako", "name"), ("Gyokuro", "name"), ("Uji", "name"))


async def test_long_texts_give_the_same_result_off_the_event_loop() -> None:
    long_text = "I visited Kyoto and Nara with Aiko. " * 400
    job = exchange([{"id": "m1", "role": "user", "content": long_text}], "Nice trip!")
    assert await extractor.extract(job) == extractor.extract_now(job)


def test_extraction_validates_relations() -> None:
    one = ExtractedMemory("User: hi")
    with pytest.raises(ValueError):
        Extraction([one], [ExtractedRelation(0, 1)])
    with pytest.raises(ValueError):
        Extraction([one, one], [ExtractedRelation(1, 1)])
    with pytest.raises(ValueError):
        ExtractedMemory("  ")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=300))  # surrogates and controls included
@example("\ud800Tokyo\udfff 私\x00ポ\u200dチ 𠮷野家 ｱｲｳ ﾊﾟﾝ #\u0301 @_ 5\u00a0km “Quote”")
def test_find_entities_never_fails_on_any_unicode(text: str) -> None:
    for display, kind in find_entities(text):
        assert display.strip() and kind


CJK_AND_FRIENDS = st.sampled_from(list("私の犬はポチですー・札幌に住んで我的狗서울에살아요 .!?「」\"'@#5年月日Ab"))


@settings(max_examples=200, deadline=None)
@given(
    user=st.one_of(st.text(max_size=80), st.text(alphabet=CJK_AND_FRIENDS, max_size=80)),
    answer=st.one_of(st.none(), st.text(max_size=80)),
    name=st.one_of(st.none(), st.text(max_size=10)),
)
def test_exchanges_of_any_text_extract_cleanly(user: str, answer: str | None, name: str | None) -> None:
    message: dict[str, Any] = {"id": "m1", "role": "user", "content": user}
    if name is not None:
        message["name"] = name
    result = extractor.extract_now(exchange([message], answer))
    assert len(result.memories) == bool(user.strip()) + bool(answer and answer.strip())
    for memory in result.memories:
        assert memory.text.strip() and 0.0 <= memory.importance <= 1.0
