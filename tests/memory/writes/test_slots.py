"""The slot recogniser (pure functions): which first-person statements carry a single-valued attribute, which do
not, how a turn is cut into clauses, and how a slot rides on an extracted memory."""

from __future__ import annotations

import pytest

from memory.models import Scope
from memory.writes.extraction import DeterministicExtractor, ExtractedMemory
from memory.writes.jobs import WriteJob
from memory.recall.slot_questions import asked_slots, holds_asked
from memory.writes.slots import Slot, contradicts, recognise, single_slot, slot_of, statements, with_slot


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("I live in Sapporo", "residence", "Sapporo"),
        ("I moved to Osaka last month!", "residence", "Osaka"),
        ("I'm living in Osaka now", "residence", "Osaka"),
        ("Actually, I relocated to Berlin", "residence", "Berlin"),
        ("I've moved to New York City with my wife", "residence", "New York City"),
        ("I live in the UK", "residence", "the UK"),
        ("i live in osaka", "residence", "osaka"),
        ("私は札幌に住んでいます", "residence", "札幌"),
        ("大阪に引っ越しました", "residence", "大阪"),
        ("My name is Alice", "name", "Alice"),
        ("Call me Bob", "name", "Bob"),
        ("私の名前は花子です", "name", "花子"),
        ("I work at Google", "employer", "Google"),
        ("I'm working at Sony now", "employer", "Sony"),
        ("I work at Bank of America in Tokyo", "employer", "Bank of America"),
        ("I'm a software engineer", "occupation", "software engineer"),
        ("I'm a nurse at St Mary's", "occupation", "nurse"),
        ("I'm 34 years old", "age", "34"),
        ("I turned 40", "age", "40"),
        ("My wife is Yuki", "partner", "Yuki"),
        ("I'm married to Ken", "partner", "Ken"),
        ("my favourite colour is blue", "favourite:colour", "blue"),
        ("My favorite color is green", "favourite:colour", "green"),
        ("my dog is called Pochi", "pet:dog:name", "Pochi"),
        ("My cat's name is Tama", "pet:cat:name", "Tama"),
        ("I have a dog named Rex", "pet:dog:name", "Rex"),
        ("私の犬はポチです", "pet:dog:name", "ポチ"),
        ("I'm a vegetarian", "diet", "vegetarian"),
        ("My sister is called Anna", "family:sister", "Anna"),
        ("I'm allergic to peanuts", "allergy:peanuts", "allergic"),
        ("I have a peanut allergy", "allergy:peanut", "allergic"),
        ("I have asthma", "condition:asthma", "has"),
        ("I speak Japanese", "language:japanese", "speaks"),
        ("My birthday is on May 5", "birthday", "May 5"),
        ("I have a dog", "pet:dog", "has"),
        ("I love sushi", "preference:sushi", "likes"),
        ("I really hate cilantro", "preference:cilantro", "dislikes"),
        ("仕事はエンジニアです", "occupation", "エンジニア"),
        ("看護師として働いています", "occupation", "看護師"),
        ("トヨタで働いています", "employer", "トヨタ"),
        ("卵アレルギーです", "allergy:卵", "allergic"),
        ("日本語が話せます", "language:japanese", "speaks"),
        ("寿司が好きです", "preference:寿司", "likes"),
        ("納豆が苦手です", "preference:納豆", "dislikes"),
    ],
)
def test_first_person_statements_carry_a_slot(text: str, key: str, value: str) -> None:
    assert recognise(text) == Slot(key, value)


@pytest.mark.parametrize(
    "text",
    [
        "my friend lives in Paris",  # someone else
        "do I live in Sapporo?",  # a question
        "Do I live in Sapporo",  # a question without its mark
        "where do I live",
        "I don't live in Sapporo anymore",  # negation
        "I used to live in Kyoto",  # the past
        "if I lived in Rome I would cycle",  # hypothetical
        "I want to move to Rome",
        "I live in a small flat",  # not a place name
        "I work from home",
        "I'm a big fan of jazz",
        "I'm 5 minutes away",  # not an age
        "my wife is Japanese",  # not a name
        "My dog loves the park",
        "The user lives in Sapporo",  # third person only when asked for (LLM facts)
        "札幌に住んでいますか",  # a Japanese question
    ],
)
def test_other_statements_carry_none(text: str) -> None:
    assert recognise(text) is None


def test_llm_facts_in_the_third_person() -> None:
    assert recognise("The user lives in Sapporo.", third_person=True) == Slot("residence", "Sapporo")
    assert recognise("The user's dog is called Pochi", third_person=True) == Slot("pet:dog:name", "Pochi")
    assert recognise("User is 34 years old", third_person=True) == Slot("age", "34")


def test_a_turn_with_several_slot_statements_is_cut_into_clauses() -> None:
    parts = statements("My dog is called Pochi and I live in Sapporo")
    assert [(p.text, p.slot) for p in parts] == [
        ("My dog is called Pochi", Slot("pet:dog:name", "Pochi")),
        ("I live in Sapporo", Slot("residence", "Sapporo")),
    ]
    mixed = statements("I live in Sapporo and I love it here. Any tips for winter?")
    assert [(p.text, p.slot) for p in mixed] == [
        ("I live in Sapporo", Slot("residence", "Sapporo")),
        ("I love it here. Any tips for winter?", None),  # the rest stays together
    ]
    asked = statements("Do I live in Sapporo? My dog is called Pochi.")
    assert [p.slot for p in asked] == [None, Slot("pet:dog:name", "Pochi")]


def test_texts_without_a_slot_or_with_one_come_back_whole() -> None:
    assert [(p.text, p.slot) for p in statements("Rock and roll, and I love it")] == [
        ("Rock and roll, and I love it", None)
    ]
    whole = [(p.text, p.slot) for p in statements("I moved to Osaka!")]
    assert whole == [("I moved to Osaka!", Slot("residence", "Osaka"))]
    assert statements("   ") == []


def test_single_slot_refuses_a_text_with_two() -> None:
    assert single_slot("I live in Sapporo.") == Slot("residence", "Sapporo")
    assert single_slot("My dog is called Pochi and I live in Sapporo") is None


def test_a_slot_rides_in_metadata_and_as_an_entity() -> None:
    plain = ExtractedMemory("I live in Sapporo", entities=(("Sapporo", "name"),))
    memory = with_slot(plain, Slot("residence", "Sapporo"))
    assert memory.metadata == {"slot": "residence", "slot_value": "Sapporo"}
    assert memory.entities == (("Sapporo", "name"), ("slot:residence", "slot"))
    assert slot_of(memory.metadata) == Slot("residence", "Sapporo")
    assert contradicts(memory.metadata, {"slot": "residence", "slot_value": "Osaka"})
    assert not contradicts(memory.metadata, {"slot": "residence", "slot_value": "the sapporo."})
    assert not contradicts(memory.metadata, {"slot": "name", "slot_value": "Osaka"})
    assert not contradicts(memory.metadata, {})


def test_the_deterministic_extractor_splits_slot_clauses_and_keeps_the_answer() -> None:
    job = WriteJob.for_exchange(
        Scope("t", "u"),
        [{"id": "m1", "role": "user", "content": "My dog is called Pochi and I live in Sapporo"}],
        {"id": "a1", "content": "Nice! I love Sapporo."},
    )
    result = DeterministicExtractor().extract_now(job)
    assert [m.text for m in result.memories] == [
        "User: My dog is called Pochi",
        "User: I live in Sapporo",
        "Assistant: Nice! I love Sapporo.",
    ]
    assert [m.metadata.get("slot") for m in result.memories] == ["pet:dog:name", "residence", None]
    assert [m.source_ids for m in result.memories] == [("m1",), ("m1",), ("a1",)]
    assert [(r.source, r.target) for r in result.relations] == [(0, 1), (1, 2)]


def test_an_explicit_memory_carries_its_single_slot() -> None:
    job = WriteJob.for_memory(Scope("t", "u"), "I moved to Osaka", job_id="j")
    (memory,) = DeterministicExtractor().extract_now(job).memories
    assert slot_of(memory.metadata) == Slot("residence", "Osaka")


@pytest.mark.parametrize(
    ("statement", "question"),
    [
        ("My goldfish is called Bubbles", "What is my goldfish called?"),
        ("My guinea pig is called Bun", "What's my guinea pig's name?"),
        ("My best friend is called Sam", "Who is my best friend?"),
        ("my dog is called Pochi", "What is my dog called?"),
        ("我的狗狗叫旺财", "我的狗叫什么？"),
        ("我的母亲叫王芳", "我妈妈叫什么名字？"),
        ("我老公叫李明", "我老公叫什么？"),
        ("うちの犬の名前はポチです", "犬の名前は？"),
    ],
)
def test_a_slot_that_can_be_told_can_be_asked_about(statement: str, question: str) -> None:
    """Statements and questions share one vocabulary (memory/writes/slot_words.py): the question asks for a tag the
    told slot holds."""
    slot = recognise(statement)
    assert slot is not None
    assert holds_asked(slot.key, asked_slots(question)), (slot.key, asked_slots(question))
