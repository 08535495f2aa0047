"""The words that name a slot's kind — pets, family, partners — in English, Japanese and Chinese: one vocabulary for
the statements that fill a slot (:mod:`memory.writes.slot_rules`, :mod:`memory.writes.slot_rules_cjk`) and the
questions that ask for one (:mod:`memory.recall.slot_questions`), so that every slot a user can fill they can also
ask about."""

from __future__ import annotations

from collections.abc import Iterable

PETS = (
    r"dog|cat|puppy|kitten|hamster|rabbit|bunny|parrot|bird|fish|turtle|tortoise|horse|pony|guinea\s+pig|ferret"
    r"|lizard|snake|goldfish|budgie"
)
"""English pets, a regex alternation (the slot key is the word as said, spaces normalised: ``pet:guinea pig``)."""
FAMILY = (
    r"sister|brother|mother|mom|mum|father|dad|son|daughter|grandmother|grandma|grandfather|grandpa|aunt|uncle"
    r"|cousin|niece|nephew|best\s+friend"
)
PARTNERS = r"wife|husband|partner|girlfriend|boyfriend|fiancée?|spouse"

JA_PETS = {"犬": "dog", "猫": "cat", "うさぎ": "rabbit", "ハムスター": "hamster", "鳥": "bird"}
"""Japanese word → the English key word (``pet:dog``), so a slot is one whatever the language it was told in."""
JA_FAMILY = {"姉": "sister", "妹": "sister", "兄": "brother", "弟": "brother", "母": "mother", "父": "father",
             "息子": "son", "娘": "daughter"}  # fmt: skip
ZH_PETS = {"狗": "dog", "小狗": "dog", "狗狗": "dog", "猫": "cat", "小猫": "cat", "猫咪": "cat", "兔子": "rabbit",
           "仓鼠": "hamster", "鸟": "bird", "鹦鹉": "parrot"}  # fmt: skip
ZH_FAMILY = {"姐姐": "sister", "妹妹": "sister", "哥哥": "brother", "弟弟": "brother", "妈妈": "mother",
             "母亲": "mother", "爸爸": "father", "父亲": "father", "儿子": "son", "女儿": "daughter"}  # fmt: skip
ZH_PARTNERS = "妻子|老婆|太太|丈夫|老公|先生|男朋友|女朋友|男友|女友|未婚妻|未婚夫"


def one_of(words: Iterable[str]) -> str:
    """A regex alternation of the words, longest first (小狗 before 狗)."""
    return "|".join(sorted(words, key=len, reverse=True))


def key_word(said: str) -> str:
    """An English word as it goes into a slot key: case-folded, spaces normalised."""
    return " ".join(said.casefold().split())
