"""Questions about a slot (:mod:`memory.writes.slots`): "Where do I live now?" and 「我住在哪里？」 ask for the
current holder of ``residence``, "What do I do for a living?" for ``occupation`` and ``employer``, 「犬の名前は？」 and
「我的狗叫什么？」 for ``pet:dog``.

A memory that holds a slot is indexed with the slot's tags (``§residence``; ``§pet``, ``§pet:dog``,
``§pet:dog:name`` for a nested key), which no word of any text can produce. Recall adds the tags a query asks for
to its lexical search, so the slot's holder is a candidate however the question is worded, and lifts a candidate
that holds an asked slot (``Weights.slot``). Only the current holder is active; an older one is history.

Pure functions of the text: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from memory.writes.slot_words import FAMILY, JA_FAMILY, JA_PETS, PARTNERS, PETS, ZH_FAMILY, ZH_PARTNERS, ZH_PETS, key_word, one_of

TAG = "§"


_ASKED: tuple[tuple[tuple[str, ...], re.Pattern[str], str], ...] = tuple(
    (cues, re.compile(pattern, re.IGNORECASE), key)
    for cues, pattern, key in (
        (("where", "home", "address", "city"),
         r"\bwhere\s+(?:do|did|will)\s+i\s+(?:\w+\s+)?(?:live|stay|move)\b|\bwhere\s+am\s+i\s+(?:living|based|from)\b"
         r"|\bwhere\s+i\s+live\b|\bmy\s+(?:home\s*town|address|home|city)\b", "residence"),
        (("job", "occupation", "profession", "career", "work", "living"),
         r"\bmy\s+(?:job|occupation|profession|career|line\s+of\s+work)\b|\bwhat\s+do\s+i\s+do\s+(?:for\s+(?:a\s+living"
         r"|work)|professionally)\b|\bwhat\s+is\s+my\s+work\b", "occupation"),
        (("job", "employer", "company", "work", "living"),
         r"\bmy\s+(?:job|employer|company|workplace|work)\b|\bwhere\s+do\s+i\s+work\b|\bwho\s+do\s+i\s+work\s+for\b"
         r"|\bwhat\s+do\s+i\s+do\s+for\s+(?:a\s+living|work)\b", "employer"),
        (("name", "called", "who"), r"\bwhat(?:'s|\s+is)\s+my\s+name\b|\bwhat\s+am\s+i\s+called\b|\bwho\s+am\s+i\b",
         "name"),
        (("old", "age"), r"\bhow\s+old\s+am\s+i\b|\bmy\s+age\b", "age"),
        (("wife", "husband", "partner", "friend", "fianc", "spouse", "married", "engaged"),
         rf"\bmy\s+(?:{PARTNERS})\b|\bwho\s+am\s+i\s+(?:married|engaged)\s+to\b", "partner"),
        (("pet",),
         r"\bmy\s+pets?\b|\bpets?\s+do\s+i\s+(?:have|own)\b|\bdo\s+i\s+(?:have|own)\s+(?:any\s+|a\s+)?pets?\b", "pet"),
        (("allerg",), r"\ballerg", "allergy"),
        (("diet", "vegetarian", "vegan", "meat"), r"\bdiet\b|\bvegetarian\b|\bvegan\b|\bdo\s+i\s+eat\s+meat\b", "diet"),
        (("language", "speak"), r"\blanguages?\b|\bwhat\s+do\s+i\s+speak\b", "language"),
        (("birthday", "born"), r"\bbirthday\b|\bwhen\s+was\s+i\s+born\b", "birthday"),
        (("health", "medical", "illness"), r"\b(?:health|medical)\s+(?:condition|issue|problem)s?\b|\billness\b",
         "condition"),
        (("like", "love", "enjoy", "hate"),
         r"\bwhat\s+(?:do|did)\s+i\s+(?:like|love|enjoy|hate|dislike)\b|\bwhat\s+are\s+my\s+(?:likes|dislikes)\b",
         "preference"),
        (("住",), r"どこ.{0,6}住|住んで(?:いる|る|います)(?:の|ところ|場所)|住まい|住所", "residence"),
        (("仕事", "職業", "勤", "働"), r"仕事|職業|勤め先|勤務先|どこで働", "occupation"),
        (("仕事", "勤", "働", "会社"), r"仕事|勤め先|勤務先|どこで働|会社", "employer"),
        (("名前",), r"(?:私|僕|俺|わたし)の名前", "name"),
        (("何歳", "年齢"), r"何歳|年齢", "age"),
        (("アレルギー",), r"アレルギー", "allergy"),
        (("何語", "言語"), r"何語|話せる言語", "language"),
        (("誕生日",), r"誕生日", "birthday"),
        (("好き", "嫌い", "苦手"), r"(?:好き|嫌い|苦手)な(?:もの|食べ物|こと)", "preference"),
        (("住",), r"住在?哪|住哪|在哪[里儿]?住|住址|家在哪", "residence"),
        (("工作", "职业", "做什么", "干什么", "从事"),
         r"我的?(?:工作|职业)是什么|我(?:是)?做什么(?:工作|的)|我是干什么的|我从事什么", "occupation"),
        (("工作", "上班", "公司"), r"我在哪[里儿]?(?:工作|上班)|我的公司|我在什么公司|我的?工作是什么", "employer"),
        (("叫", "名字"), r"我叫什么|我的名字", "name"),
        (("岁", "多大", "年龄"), r"我几岁|我多大|我的年龄|我今年多大", "age"),
        (("过敏",), r"过敏", "allergy"),
        (("素", "饮食"), r"吃素|素食|饮食", "diet"),
        (("语", "话"), r"我会说什么|什么语言|几种语言|会说.{0,4}吗", "language"),
        (("生日",), r"生日", "birthday"),
        (("喜欢", "讨厌"), r"我(?:喜欢|讨厌|不喜欢)什么", "preference"),
        (("妻", "老婆", "太太", "丈夫", "老公", "先生", "朋友", "男友", "女友", "未婚"),
         rf"我的?(?:{ZH_PARTNERS})", "partner"),
        (("宠物",), r"宠物", "pet"),
    )
)
"""Each slot question: words one of which the question holds (a cheap test that spares most queries the patterns),
the pattern, the slot."""
_MY_PET = re.compile(rf"\bmy\s+({PETS})s?\b", re.IGNORECASE)
_MY_FAMILY = re.compile(rf"\bmy\s+({FAMILY})\b", re.IGNORECASE)
_MY_FAVOURITE = re.compile(r"\bmy\s+(?:favou?rite|fave)\s+([a-z]+(?:\s+[a-z]+)?)", re.IGNORECASE)
_DO_I_LIKE = re.compile(r"\bdo\s+i\s+(?:like|love|enjoy|hate|dislike)\s+([a-z]+(?:\s+[a-z]+)?)\b", re.IGNORECASE)
_JA_PET = re.compile(f"({one_of(JA_PETS)})の名前|ペット")
_ZH_PET = re.compile(f"我(?:的|家的?)({one_of(ZH_PETS)})(?:叫什么|的名字)")
_ZH_FAMILY_NAME = re.compile(f"我的?({one_of(ZH_FAMILY)})(?:叫什么|的名字)")
_JA_FAMILY_NAME = re.compile(f"({one_of(JA_FAMILY)})の名前")


def slot_tags(key: str) -> tuple[str, ...]:
    """The lexical index's tags for a memory holding ``key``: the key and each of its prefixes."""
    parts = key.split(":")
    return tuple(TAG + ":".join(parts[: depth + 1]) for depth in range(len(parts)))


def asked_slots(query: str) -> tuple[str, ...]:
    """The tags of the slots the query asks about (empty for a query about none)."""
    lowered = query.casefold()
    asked: list[str] = [
        TAG + key for cues, pattern, key in _ASKED if any(cue in lowered for cue in cues) and pattern.search(query)
    ]
    if "my" in lowered:
        asked += [f"{TAG}pet:{key_word(match)}" for match in _MY_PET.findall(query)]
        asked += [f"{TAG}family:{key_word(match)}" for match in _MY_FAMILY.findall(query)]
        asked += [f"{TAG}favourite:{_favourite(match)}" for match in _MY_FAVOURITE.findall(query)]
    if "do i" in lowered:
        asked += [f"{TAG}preference:{' '.join(match.casefold().split())}" for match in _DO_I_LIKE.findall(query)]
    if "名前" in query or "ペット" in query:
        for match in _JA_PET.finditer(query):
            asked.append(f"{TAG}pet:{JA_PETS[match[1]]}" if match[1] else f"{TAG}pet")
        asked += [f"{TAG}family:{JA_FAMILY[word]}" for word in _JA_FAMILY_NAME.findall(query)]
    if "我" in query:
        asked += [f"{TAG}pet:{ZH_PETS[word]}" for word in _ZH_PET.findall(query)]
        asked += [f"{TAG}family:{ZH_FAMILY[word]}" for word in _ZH_FAMILY_NAME.findall(query)]
    return tuple(dict.fromkeys(asked))


def holds_asked(key: object, asked: Iterable[str]) -> bool:
    """A memory holding slot ``key`` answers one of the ``asked`` tags (the tag is the key or one of its prefixes)."""
    return isinstance(key, str) and bool(set(slot_tags(key)).intersection(asked))


def _favourite(thing: str) -> str:
    return " ".join(thing.casefold().split()).replace("color", "colour")
