"""Japanese and Chinese as English is (issue 16 §3): first-person statements carry the same slots, questions about a
slot ask for the same tags, periods the query names are read, and through the real engine (SQLite, FAISS, BM25,
ONNX MiniLM — the slot path does not need a multilingual model) a move supersedes the old home and "where do I live
now?" finds the new one."""

from __future__ import annotations

import pytest

from memory.engine import MemoryEngine
from memory.recall.lexical import tokenize
from memory.recall.query_cues import time_windows
from memory.recall.slot_questions import asked_slots
from memory.writes.duplicates import reads_alike
from memory.writes.slots import clauses, recognise
from tests.memory.recall.test_query_cues import NOW, spans

T0 = 1_700_000_000.0


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("我住在北京。", "residence", "北京"),
        ("我现在住在大阪的一个公寓", "residence", "大阪"),
        ("我搬到了上海", "residence", "上海"),
        ("私は大阪に住んでいる", "residence", "大阪"),
        ("大阪に引っ越しました", "residence", "大阪"),
        ("我叫小明", "name", "小明"),
        ("我的名字是王芳", "name", "王芳"),
        ("私の名前は花子です", "name", "花子"),
        ("我在银行工作", "employer", "银行"),
        ("トヨタで働いています", "employer", "トヨタ"),
        ("我是一名护士", "occupation", "护士"),
        ("我的工作是老师", "occupation", "老师"),
        ("看護師として働いています", "occupation", "看護師"),
        ("我的狗叫小白", "pet:dog:name", "小白"),
        ("我家的猫叫咪咪", "pet:cat:name", "咪咪"),
        ("うちの犬の名前はポチです", "pet:dog:name", "ポチ"),
        ("我的姐姐叫安娜", "family:sister", "安娜"),
        ("我老婆叫丽丽", "partner", "丽丽"),
        ("我今年30岁", "age", "30"),
        ("我对花生过敏", "allergy:花生", "allergic"),
        ("卵アレルギーです", "allergy:卵", "allergic"),
        ("我吃素", "diet", "vegetarian"),
        ("我是素食者", "diet", "vegetarian"),
        ("我会说日语", "language:japanese", "speaks"),
        ("英語が話せます", "language:english", "speaks"),
        ("我的生日是5月3日", "birthday", "5月3日"),
        ("我喜欢寿司", "preference:寿司", "likes"),
        ("我不喜欢香菜", "preference:香菜", "dislikes"),
        ("納豆が苦手です", "preference:納豆", "dislikes"),
    ],
)
def test_statements_carry_their_slot(text: str, key: str, value: str) -> None:
    slot = recognise(text)
    assert slot is not None and (slot.key, slot.value) == (key, value)


@pytest.mark.parametrize(
    "text",
    ["我住在哪里？", "你住在北京吗", "我不住在北京", "我以前住在北京", "我叫了外卖", "我在家工作", "我是中国人", "我爱你",
     "我朋友住在北京", "他叫小明", "大阪に住んでいますか"],
)
def test_questions_negations_and_others_carry_none(text: str) -> None:
    assert recognise(text) is None


def test_a_chinese_turn_is_cut_into_its_statements() -> None:
    found = [(part.text, part.slot and part.slot.key) for part in clauses("我叫小明，我住在北京，而且我在银行工作。")]
    assert found == [("我叫小明", "name"), ("我住在北京", "residence"), ("我在银行工作。", "employer")]


@pytest.mark.parametrize(
    ("query", "tags"),
    [
        ("Where do I live now?", ("§residence",)),
        ("What is my dog called?", ("§pet:dog",)),
        ("我住在哪里？", ("§residence",)),
        ("我现在住哪儿？", ("§residence",)),
        ("今どこに住んでる？", ("§residence",)),
        ("我做什么工作？", ("§occupation",)),
        ("我在哪里上班？", ("§employer",)),
        ("我叫什么名字？", ("§name",)),
        ("我的狗叫什么？", ("§pet:dog",)),
        ("犬の名前は？", ("§pet:dog",)),
        ("我对什么过敏？", ("§allergy",)),
        ("我几岁？", ("§age",)),
        ("我的姐姐叫什么", ("§family:sister",)),
        ("我会说什么语言？", ("§language",)),
        ("我昨天吃了什么？", ()),
        ("What did Caroline research?", ()),
    ],
)
def test_questions_about_a_slot_ask_for_its_tags(query: str, tags: tuple[str, ...]) -> None:
    assert asked_slots(query) == tags


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # As their English counterparts read (see test_query_cues.py, same NOW).
        ("昨日何を食べた？", [("2026-11-23", "2026-11-24")]),
        ("昨天我吃了什么？", [("2026-11-23", "2026-11-24")]),
        ("一昨日の話", [("2026-11-22", "2026-11-23")]),
        ("今天的计划", [("2026-11-24", "2026-11-25")]),
        ("3日前に会った人は？", [("2026-11-21", "2026-11-22")]),
        ("三天前", [("2026-11-21", "2026-11-22")]),
        ("两周前", [("2026-11-07", "2026-11-14")]),
        ("先週どこに行った？", [("2026-11-10", "2026-11-25")]),
        ("上周我去了哪里？", [("2026-11-10", "2026-11-25")]),
        ("去年の夏", [("2024-11-24", "2026-11-25")]),
        ("5月に何をした？", [("2026-05-01", "2026-06-01")]),
        ("十二月", [("2025-12-01", "2026-01-01")]),
        ("2023年7月31日に", [("2023-07-31", "2023-08-01")]),
        ("7月31号", [("2026-07-31", "2026-08-01")]),
        ("１２月３日", [("2025-12-03", "2025-12-04")]),
        ("2023年5月", [("2023-05-01", "2023-06-01")]),
        ("我2022年去了日本", [("2022-01-01", "2023-01-01")]),
    ],
)
def test_cjk_periods(query: str, expected: list[tuple[str, str]]) -> None:
    assert spans(query) == expected


@pytest.mark.parametrize("query", ["我的狗叫什么？", "三个人", "月曜日に会おう", "2023人が参加した"])
def test_no_cjk_period_named(query: str) -> None:
    assert time_windows(query, NOW) == []


async def residence_holders(engine: MemoryEngine) -> dict[str, str]:
    """The active holders of the residence slot: value → memory id."""
    page = await engine.list("mei", limit=100)
    return {m.metadata["slot_value"]: m.id for m in page.items if m.metadata.get("slot") == "residence"}


async def say(engine: MemoryEngine, text: str, at: float, user: str) -> tuple[str, ...]:
    applied = await engine.remember_exchange(
        [{"id": f"u{at}", "role": "user", "content": text}], {"id": f"a{at}", "content": "好的。"},
        user_id=user, timestamp=at, wait=True,
    )  # fmt: skip
    assert applied is not None
    return applied


@pytest.mark.parametrize(
    ("first", "moved", "question", "old", "new"),
    [
        ("我的狗叫小白，我住在北京。", "我搬到了上海", "我现在住在哪里？", "北京", "上海"),
        ("私は札幌に住んでいます。", "大阪に引っ越しました", "今どこに住んでる？", "札幌", "大阪"),
    ],
)
async def test_a_move_supersedes_the_old_home_and_the_question_finds_the_new(
    engine: MemoryEngine, first: str, moved: str, question: str, old: str, new: str
) -> None:
    await say(engine, first, T0, "mei")
    await say(engine, "今天天气很好，我们去公园散步了。", T0 + 3600, "mei")
    assert list(await residence_holders(engine)) == [old]
    old_id = (await residence_holders(engine))[old]
    (home, *_) = await say(engine, moved, T0 + 86_400, "mei")

    assert await residence_holders(engine) == {new: home}
    assert (await engine.get(old_id, user_id="mei")).superseded_by == home  # type: ignore[union-attr]

    hits = await engine.recall(question, user_id="mei", top_k=3)
    assert new in hits[0].memory.text, [h.memory.text for h in hits]
    assert not any(old in h.memory.text and h.memory.superseded_by is None for h in hits)


async def test_different_cjk_memories_never_merge_and_a_repeat_does(engine: MemoryEngine) -> None:
    """all-MiniLM-L6-v2 puts these two different memories at cosine 0.99 (it reads Chinese as noise): the merge
    used to keep the first and lose the second. A repeat of the same words still merges into the memory it
    repeats."""
    pendant = "Lisa从祖母那里收到了一个翠绿色椭圆形的玉坠。"
    pen = "Lisa从叔叔那里得到一支多彩的长条形彩色钢笔作为礼物。"
    first = await engine.remember(pendant, "lisa", kind="episode", source_ids=("D1",))
    second = await engine.remember(pen, "lisa", kind="episode", source_ids=("D6",))
    again = await engine.remember(pendant, "lisa", kind="episode", source_ids=("D9",))
    assert second != first and again == first
    page = await engine.list("lisa", limit=10)
    assert sorted(m.text for m in page.items) == sorted([pendant, pen])
    kept = await engine.get(first, user_id="lisa")
    assert kept is not None and kept.source_ids == ("D1", "D9")


@pytest.mark.parametrize(
    ("first", "second", "alike"),
    [
        ("Bart去动物园看到了他喜欢的大象，感到非常开心。", "Bart去动物园看到了自己最喜欢的企鹅，感到非常开心。", False),
        ("我住在北京。", "我住在北京", True),
        ("I moved to Paris", "I moved to Paris.", True),
        ("Yesterday I met Tom at the station", "I met Tom at the station yesterday", True),
        ("My parcel code is X7Q2 for Friday", "My parcel code is K9L4 for Friday", False),
        ("I met Tom at the station", "I met Tim at the station", False),
        ("我的生日是5月3日", "我的生日是5月4日", False),
    ],
)
def test_texts_read_alike_only_with_the_same_words_numbers_and_names(first: str, second: str, alike: bool) -> None:
    assert reads_alike(first, second) is alike


def test_chinese_reads_as_bigrams_and_japanese_keeps_its_single_kanji() -> None:
    """Chinese: bigrams alone (single characters matched too much that was not meant: MADial zh R@10 0.681 with
    them, 0.710 without). Japanese: the single kanji and katakana too, so 犬 matches across particles."""
    assert tokenize("我喜欢狗") == ["我喜", "喜欢", "欢狗"]
    assert tokenize("狗") == ["狗"]
    japanese = tokenize("私の犬が好き")
    assert "犬" in japanese and "私" in japanese and "の" not in japanese
    assert set(tokenize("犬")) & set(japanese)
