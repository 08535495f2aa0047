"""The slot rules for Japanese and Chinese first-person statements (see :mod:`memory.writes.slot_rules` for English
and for how a rule reads): 大阪に引っ越しました / 我搬到了上海 (home), 看護師として働いています / 我是一名护士
(occupation), 我在银行工作 (employer), 私の名前は… / 我叫… (name), 我的狗叫… (pets), 卵アレルギーです / 我对花生过敏
(allergies), 我吃素 (diet), 我会说日语 (languages), 我今年30岁 (age), 我的妻子叫… (partner), 我的姐姐叫… (family),
納豆が苦手です / 我喜欢… / 我讨厌… (likes and dislikes).

A clause that asks (…か, 吗, 呢, ？) or negates (不 / 没 before the verb: 我不住在北京) matches no rule: every pattern
needs its verb right after the subject and the adverbs allowed there."""

from __future__ import annotations

import re
from collections.abc import Callable

from memory.writes.slot_rules import Check, Key, Rule, any_value, key_of, place, rule, said
from memory.writes.slot_words import JA_PETS, ZH_FAMILY, ZH_PARTNERS, ZH_PETS, one_of

# --- Japanese ----------------------------------------------------------------------------------------------------

_JA_I = "(?:私|僕|俺|わたし)"
_JA_VALUE = r"(?P<value>[^\s、。]{1,20}?)"
_JA_LANGUAGES = {"英": "english", "日本": "japanese", "中国": "chinese", "韓国": "korean", "フランス": "french",
                 "ドイツ": "german", "スペイン": "spanish", "イタリア": "italian"}  # fmt: skip

# --- Chinese -----------------------------------------------------------------------------------------------------

_ZH_ADV = r"(?:现在|目前|如今|已经|刚刚?|最近|一直|还|也|终于)?"
_ZH_VALUE = r"(?P<value>[^\s，。、！？,.!?；;]{1,12})"
_ZH_PLACE = r"(?P<value>[^\s，。、！？,.!?；;的了里]{1,12})"
_ZH_NAME = r"(?P<value>[^\s，。、！？,.!?；;了过]{1,10})"
_ZH_LANGUAGES = {"英": "english", "日": "japanese", "中": "chinese", "汉": "chinese", "普通": "chinese",
                 "韩": "korean", "法": "french", "德": "german", "西班牙": "spanish", "意大利": "italian",
                 "俄": "russian", "粤": "cantonese"}  # fmt: skip
_ZH_PROFESSION = re.compile(r"(?:师|员|生|家|医|护士|工|警察|司机|记者|老板|经理|编辑|作家|主播|厨师|律师|学者|博士)$")
_ZH_PRONOUNS = ("你", "他", "她", "它", "您", "你们", "他们", "她们", "大家")
_ZH_NOT_A_WORKPLACE = frozenset({"家", "家里", "家中", "这里", "那里", "外地", "国外"})


def _ja_pet_key(match: re.Match[str], _: str) -> str:
    return f"pet:{JA_PETS[match['pet']]}:name"


def _ja_language_key(match: re.Match[str], _: str) -> str:
    return f"language:{_JA_LANGUAGES[match['value']]}"


def _zh_pet_key(match: re.Match[str], _: str) -> str:
    return f"pet:{ZH_PETS[match['pet']]}:name"


def _zh_family_key(match: re.Match[str], _: str) -> str:
    return f"family:{ZH_FAMILY[match['rel']]}"


def _zh_language_key(match: re.Match[str], _: str) -> str:
    return f"language:{_ZH_LANGUAGES[match['value']]}"


def _zh_profession(value: str) -> bool:
    return bool(_ZH_PROFESSION.search(value)) and len(value) <= 8


def _zh_workplace(value: str) -> bool:
    return value not in _ZH_NOT_A_WORKPLACE


def _zh_age(value: str) -> bool:
    return 1 <= int(value) <= 120


def _zh_diet(match: re.Match[str]) -> str:
    """As the English rules word it, so that 吃素 and 素食者 are one value, not a contradiction."""
    return "vegan" if match["value"].startswith("纯") else "vegetarian"


def _zh_name(value: str) -> bool:
    return not value.startswith(_ZH_PRONOUNS)


def _zh_thing(value: str) -> bool:
    return value not in _ZH_PRONOUNS


def _cjk(
    key: str | Key, pattern: str, check: Check = any_value, *, value: Callable[[re.Match[str]], str] | None = None
) -> Rule:
    """A rule anchored at the clause's start with no English fillers before it."""
    return rule(key, pattern, check, anchored=False, value=value)


CJK_RULES: tuple[Rule, ...] = (
    # Japanese
    _cjk("residence", rf"(?:{_JA_I}は)?(?P<value>[^\s、。はがを]{{1,20}}?)に(?:住んでいます|住んでいる|住んでる|引っ越し(?:ました|た))",
         place),
    _cjk(_ja_pet_key, rf"(?:{_JA_I}|うち)の(?P<pet>{one_of(JA_PETS)})(?:の名前)?は{_JA_VALUE}(?:です|だ)"),
    _cjk("name", rf"{_JA_I}の名前は{_JA_VALUE}(?:です|だ)"),
    _cjk("occupation", rf"(?:{_JA_I}の)?仕事は{_JA_VALUE}(?:です|だ)"),
    _cjk("occupation", rf"(?:{_JA_I}は)?{_JA_VALUE}として働いて(?:います|いる|る)"),
    _cjk("employer", rf"(?:{_JA_I}は)?(?P<value>[^\s、。はがを]{{1,20}}?)で働いて(?:います|いる|る)"),
    _cjk(key_of("allergy"), rf"(?:{_JA_I}は)?(?P<value>[^\s、。はがを]{{1,12}}?)アレルギー(?:です|があります|持ち)",
         value=said("allergic")),
    _cjk("diet", rf"(?:{_JA_I}は)?(?P<value>ベジタリアン|ヴィーガン|ビーガン)(?:です|だ)"),
    _cjk(_ja_language_key, rf"(?:{_JA_I}は)?(?P<value>{one_of(_JA_LANGUAGES)})語(?:が|を)話せ(?:ます|る)",
         value=said("speaks")),
    _cjk(key_of("preference"), rf"(?:{_JA_I}は)?(?P<value>[^\s、。はがを]{{1,15}}?)が(?:大好き|好き)(?:です|だ|!|！)?$",
         value=said("likes")),
    _cjk(key_of("preference"), rf"(?:{_JA_I}は)?(?P<value>[^\s、。はがを]{{1,15}}?)が(?:大嫌い|嫌い|苦手)(?:です|だ|!|！)?$",
         value=said("dislikes")),
    # Chinese
    _cjk("residence", rf"我{_ZH_ADV}(?:住在|定居在|生活在){_ZH_PLACE}", place),
    _cjk("residence", rf"我{_ZH_ADV}搬(?:家)?(?:到|去)了?{_ZH_PLACE}", place),
    _cjk("name", rf"我(?:的名字)?叫{_ZH_NAME}", _zh_name),
    _cjk("name", rf"我的名字是{_ZH_NAME}", _zh_name),
    _cjk("employer", rf"我{_ZH_ADV}在(?P<value>[^\s，。、！？,.!?；;]{{1,15}}?)(?:工作|上班)", _zh_workplace),
    _cjk("occupation", rf"我{_ZH_ADV}是(?:一名|一个|一位|个|名)?{_ZH_VALUE}$", _zh_profession),
    _cjk("occupation", rf"我的(?:工作|职业)是{_ZH_VALUE}$"),
    _cjk("occupation", rf"我{_ZH_ADV}(?:当|做)(?P<value>[^\s，。、！？,.!?；;]{{1,8}})$", _zh_profession),
    _cjk(_zh_pet_key, rf"我(?:的|家的?)(?P<pet>{one_of(ZH_PETS)})(?:的名字)?(?:叫|是){_ZH_NAME}"),
    _cjk(_zh_family_key, rf"我(?:的)?(?P<rel>{one_of(ZH_FAMILY)})(?:的名字)?叫{_ZH_NAME}"),
    _cjk("partner", rf"我的?(?:{ZH_PARTNERS})(?:的名字)?叫{_ZH_NAME}"),
    _cjk("age", rf"我{_ZH_ADV}(?:今年)?(?P<value>\d{{1,3}})岁", _zh_age),
    _cjk(key_of("allergy"), rf"我{_ZH_ADV}对(?P<value>[^\s，。、！？,.!?；;]{{1,10}}?)过敏", value=said("allergic")),
    _cjk("diet", rf"我{_ZH_ADV}(?:是)?(?:一[个名])?(?P<value>素食者|素食主义者|纯素食者|吃素)", value=_zh_diet),
    _cjk(_zh_language_key, rf"我{_ZH_ADV}会(?:说|讲)(?P<value>{one_of(_ZH_LANGUAGES)})(?:语|话|文)", value=said("speaks")),
    _cjk("birthday", rf"我的生日是{_ZH_VALUE}"),
    _cjk(key_of("preference"), rf"我{_ZH_ADV}(?:很|非常|特别|最|超)?(?:讨厌|不喜欢|受不了){_ZH_VALUE}$",
         _zh_thing, value=said("dislikes")),
    _cjk(key_of("preference"), rf"我{_ZH_ADV}(?:很|非常|特别|最|超)?(?:喜欢|爱吃|爱)(?P<value>[^\s，。、！？,.!?；;]{{1,12}})$",
         _zh_thing, value=said("likes")),
)
