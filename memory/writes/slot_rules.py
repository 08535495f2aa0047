"""The slot rules: which first-person statements carry which slot, in English (Japanese and Chinese in
:mod:`memory.writes.slot_rules_cjk`; see
:mod:`memory.writes.slots` for what a slot is and how a clause is read). Each rule is a slot key (or a function of
the match that makes one), a pattern anchored at the clause's start (after fillers such as "well," or "actually"),
and a check of the value it captured."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from memory.writes.slot_words import FAMILY, PARTNERS, PETS, key_word

# --- patterns ----------------------------------------------------------------------------------------------------

LEAD = (
    r"^(?:(?:well|so|oh|also|actually|btw|by\s+the\s+way|and|but|now|anyway|ok|okay|yeah|yes|hi|hey|hello|fyi"
    r"|just\s+so\s+you\s+know)[,!.]?\s+)*"
)
_I = r"(?:i|the\s+user|user)"
_MY = r"(?:my|the\s+user'?s|user'?s)"
_AM = r"(?:i'm|i\s+am|(?:the\s+)?user\s+is)"
_ADV = r"(?:(?:now|currently|actually|still|just|recently|finally|already|also|officially)\s+)?"
_HAVE = r"(?:(?:'ve|\s+have|\s+has)\s+)?"
_VALUE = r"(?P<value>[^,.;!?()\n]+)"
_NAME = r"(?P<value>[^\W\d_][\w'-]*(?:\s+[^\W\d_][\w'-]*){0,2})"
NEGATION = re.compile(r"(?i)\b(?:not|never|no\s+longer|anymore|any\s+more|used\s+to)\b|n't\b|n’t\b")
QUESTION_START = re.compile(
    r"(?i)^(?:do|does|did|am|is|are|was|were|can|could|should|would|will|where|what|who|how|why|when|which)\b"
)
VALUE_STOP = re.compile(
    r"(?i)\s+(?:and|but|because|since|as|so|with|for|from|at|in|on|where|which|who|that|when|while|if|though"
    r"|although|now"
    r"|currently|these\s+days|nowadays|at\s+the\s+moment|recently|last|this|next|two|three|several|a\s+few|many"
    r"|some|ago|already|again|too|though)\b.*$"
)
_NOT_A_PLACE = re.compile(r"(?i:^(?:a|an|my|our|his|her|their|this|that|it|there|here|fear|peace)\b)|^[Tt]he\s+[a-z]")
_NOT_AN_EMPLOYER = re.compile(r"(?i)^(?:home|night|nights|weekends?|the\s+weekend|myself|free|a\s+living|it)$")
_PROFESSION = re.compile(
    r"(?i)(?:er|or|ist|ian|ant|ent|eer|ect|ary|nurse|doctor|chef|cook|clerk|pilot|student|lawyer|dentist|surgeon"
    r"|scientist|analyst|medic|vet|barista|cashier|tutor|coach|artist|architect|actress|midwife|farmer)$"
)
_NOT_A_PROFESSION = re.compile(
    r"(?i)\b(?:vegetarian|vegan|fan|lover|beginner|believer|smoker|drinker|member|owner|gamer|reader|foodie"
    r"|parent|mother|father|customer|user|introvert|extrovert|morning|night|person|big|huge|fellow|other|winner"
    r"|newcomer|survivor|resident|citizen|native|christian|european|american|canadian|asian|australian|indian)\b"
)
_NOT_A_NAME = re.compile(
    r"(?i)^(?:a|an|the|not|after|from|also|very|so|really|too|tired|busy|happy|sad|sick|fine|sure|back|here|home"
    r"|japanese|chinese|english|british|irish|scottish|french|german|italian|spanish|korean|american|canadian"
    r"|indian|russian|brazilian|mexican|australian|christian|muslim|jewish|catholic|buddhist|pregnant|retired)\b"
)

Check = Callable[[str], bool]


def place(value: str) -> bool:
    return not _NOT_A_PLACE.search(value)


def _employer(value: str) -> bool:
    return not _NOT_AN_EMPLOYER.match(value) and not _NOT_A_PLACE.search(value)


def _profession(value: str) -> bool:
    head = value.split()[-1] if value.split() else ""
    return bool(_PROFESSION.search(head)) and not _NOT_A_PROFESSION.search(value) and len(value.split()) <= 3


def _name(value: str) -> bool:
    return not _NOT_A_NAME.search(value)


def _capitalised_name(value: str) -> bool:
    return _name(value) and value[:1].isupper()


def _age(value: str) -> bool:
    return 1 <= int(value) <= 120


def any_value(value: str) -> bool:
    return not _NOT_A_NAME.match(value) or value[:1].isupper()


Key = Callable[[re.Match[str], str], str]
"""The slot key from the match and the value as captured (trimmed)."""


@dataclass(frozen=True, slots=True)
class Rule:
    key: str | Key
    pattern: re.Pattern[str]
    check: Check
    """Of the captured value."""
    value: Callable[[re.Match[str]], str] | None = None
    """The slot's value when it is not the captured one (``preference:sushi`` holds ``likes`` or ``dislikes``)."""

    def slot_key(self, match: re.Match[str], captured: str) -> str:
        return self.key(match, captured) if callable(self.key) else self.key


def rule(
    key: str | Key,
    pattern: str,
    check: Check,
    *,
    anchored: bool = True,
    value: Callable[[re.Match[str]], str] | None = None,
) -> Rule:
    return Rule(key, re.compile((LEAD if anchored else "^") + pattern, re.IGNORECASE), check, value)


def _pet_key(match: re.Match[str], _: str) -> str:
    return f"pet:{key_word(match['pet'])}:name"


def _favourite_key(match: re.Match[str], _: str) -> str:
    thing = " ".join(match["thing"].casefold().split()).replace("color", "colour")
    return f"favourite:{thing}"


_DIETS = r"vegetarian|vegan|pescatarian|pescetarian|gluten[-\s]free|lactose[-\s]intolerant|keto|halal|kosher"
_CONDITIONS = (
    r"diabetes|asthma|arthritis|migraines?|celiac\s+disease|hypertension|high\s+blood\s+pressure|epilepsy|anxiety"
    r"|depression|adhd|insomnia|eczema|a\s+bad\s+back|back\s+pain|a\s+heart\s+condition"
)
_LANGUAGES = (
    r"english|japanese|chinese|mandarin|cantonese|korean|french|german|spanish|italian|portuguese|russian|arabic"
    r"|hindi|dutch|swedish|polish|turkish|vietnamese|thai|indonesian|greek|hebrew"
)
_LIKE = r"(?P<verb>loves?|likes?|enjoys?|adores?|hates?|dislikes?|detests?|can't\s+stand|cannot\s+stand)"
_NOT_A_THING = re.compile(
    r"(?i)^(?:it|that|this|them|you|your|to|when|how|what|the\s+idea|the\s+way|being|having|seeing|hearing|that)\b"
)
_LIKED = {"love": "likes", "like": "likes", "enjoy": "likes", "adore": "likes"}
"""Verbs of liking (any other verb of ``_LIKE`` is disliking), without a third person's -s."""


def _thing(value: str) -> bool:
    return not _NOT_A_THING.match(value) and len(value.split()) <= 3


def key_of(prefix: str, group: str | None = None) -> Key:
    """A key made of ``prefix`` and the captured value (or the match's ``group``), normalised: ``allergy:peanuts``."""
    return lambda match, captured: f"{prefix}:{' '.join((match[group] if group else captured).casefold().split())}"


def said(word: str) -> Callable[[re.Match[str]], str]:
    return lambda match: word


def _liking(match: re.Match[str]) -> str:
    verb = " ".join(match["verb"].casefold().split())
    return _LIKED.get(verb, _LIKED.get(verb.removesuffix("s"), "dislikes"))


RULES: tuple[Rule, ...] = (
    rule("residence", rf"{_I}\s+{_ADV}(?:live|lives|reside|resides)\s+in\s+{_VALUE}", place),
    rule("residence", rf"{_I}{_HAVE}\s*{_ADV}(?:moved|relocated)\s+(?:back\s+)?to\s+{_VALUE}", place),
    rule("residence", rf"{_AM}\s+{_ADV}(?:living|based|residing)\s+in\s+{_VALUE}", place),
    rule("residence", rf"{_MY}\s+home\s+is\s+in\s+{_VALUE}", place),
    rule("name", rf"{_MY}\s+name\s+is\s+{_NAME}", _name),
    rule("name", rf"(?:{_AM}\s+called|call\s+me)\s+{_NAME}", _capitalised_name),
    rule("employer", rf"{_I}\s+{_ADV}works?\s+(?:at|for)\s+{_VALUE}", _employer),
    rule("employer", rf"{_AM}\s+{_ADV}(?:working|employed)\s+(?:at|for|by)\s+{_VALUE}", _employer),
    rule("occupation", rf"{_I}\s+{_ADV}works?\s+as\s+(?:a|an)\s+{_VALUE}", _profession),
    rule("occupation", rf"{_AM}\s+{_ADV}(?:a|an)\s+{_VALUE}", _profession),
    rule("age", rf"{_AM}\s+(?P<value>\d{{1,3}})(?:\s*(?:years?\s+old|yo|y/o))?\s*$", _age),
    rule("age", rf"(?:{_I}\s+{_ADV}(?:just\s+)?turned|{_MY}\s+age\s+is)\s+(?P<value>\d{{1,3}})\b", _age),
    rule(
        "partner",
        rf"{_MY}\s+(?:{PARTNERS})(?:'s\s+name)?\s+is\s+(?:called\s+|named\s+)?{_NAME}",
        _capitalised_name,
    ),
    rule("partner", rf"{_AM}\s+{_ADV}(?:married\s+to|engaged\s+to|dating)\s+{_NAME}", _capitalised_name),
    rule(
        _favourite_key,
        rf"{_MY}\s+(?:absolute\s+)?(?:favou?rite|fave)\s+(?P<thing>[a-z]+(?:\s+[a-z]+)?)\s+(?:is|are)\s+{_VALUE}",
        any_value,
    ),
    rule(_pet_key, rf"{_MY}\s+(?:pet\s+)?(?P<pet>{PETS})(?:'s\s+name\s+is|\s+is\s+(?:called|named))\s+{_NAME}",
          _name),
    rule(_pet_key, rf"{_I}\s+(?:have|has)\s+(?:a|an)\s+(?P<pet>{PETS})\s+(?:called|named)\s+{_NAME}", _name),
    rule(key_of("family", "rel") , rf"{_MY}\s+(?P<rel>{FAMILY})(?:'s\s+name\s+is|\s+is\s+(?:called|named))\s+{_NAME}",
          _capitalised_name),
    rule("diet", rf"{_AM}\s+{_ADV}(?:a\s+|an\s+)?(?P<value>{_DIETS})\b", any_value),
    rule(key_of("allergy"), rf"{_AM}\s+{_ADV}(?:severely\s+|very\s+)?allergic\s+to\s+{_VALUE}", _thing,
          value=said("allergic")),
    rule(key_of("allergy"), rf"{_I}\s+{_ADV}(?:have|has)\s+(?:a|an)\s+(?P<value>[a-z]+(?:\s+[a-z]+)?)\s+allergy\b",
          _thing, value=said("allergic")),
    rule(key_of("condition"),
          rf"{_I}\s+{_ADV}(?:have|has|suffer\s+from|was\s+diagnosed\s+with)\s+(?P<value>{_CONDITIONS})\b", any_value,
          value=said("has")),
    rule(key_of("language"),
          rf"{_I}\s+{_ADV}(?:speak|speaks)\s+(?:fluent\s+|some\s+|a\s+little\s+)?(?P<value>{_LANGUAGES})\b", any_value,
          value=said("speaks")),
    rule("birthday", rf"{_MY}\s+birthday\s+is\s+(?:on\s+)?{_VALUE}", any_value),
    rule(key_of("pet"), rf"{_I}\s+{_ADV}(?:have|has|got|adopted)\s+(?:a|an)\s+(?:new\s+)?(?P<value>{PETS})\s*$", any_value,
          value=said("has")),
    rule(key_of("preference"), rf"{_I}\s+{_ADV}(?:really\s+|absolutely\s+)?{_LIKE}\s+{_VALUE}", _thing,
          value=_liking),
)
