"""Slots: single-valued personal attributes the user states in the first person — where they live, their name,
employer, occupation, age, partner, a favourite thing, a pet's name. A later statement of the same slot with another
value contradicts the earlier one, which the write pipeline then supersedes.

Recognition is deterministic and language-light: a clause must *start* with a first-person statement ("I live in
Sapporo", "my dog is called Pochi", "札幌に住んでいます"); questions ("do I live in Sapporo?"), negations ("I don't
live in …", "I used to live in …"), other subjects ("my friend lives in Paris") and hypotheticals ("if I lived in …")
carry no slot. Facts an LLM wrote in the third person ("The user lives in Sapporo") are read as first person when
asked (``third_person=True``).

How a slot is stored: ``metadata["slot"]`` (the key, e.g. ``"residence"``, ``"pet:dog:name"``) and
``metadata["slot_value"]`` (the value as stated), plus a MENTIONS of the entity ``slot:<key>`` of type ``"slot"``.
The entity is what finds older holders of the slot on every backend without a schema change: the memories that
share it are one SHARED_ENTITY hop away (:meth:`memory.graph.base.GraphStore.neighbours`), and since only one
holder per slot stays active, that hop is cheap.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memory.writes.extraction import ExtractedMemory

SLOT_ENTITY_TYPE = "slot"
_VALUE_WORDS = 5


@dataclass(frozen=True, slots=True)
class Slot:
    key: str
    """``residence``, ``name``, ``employer``, ``occupation``, ``age``, ``partner``, ``favourite:<thing>``,
    ``pet:<animal>:name``."""
    value: str
    """As stated (display form); compare with :attr:`normalised`."""

    @property
    def normalised(self) -> str:
        return normalise_value(self.value)

    @property
    def entity(self) -> str:
        return slot_entity(self.key)


@dataclass(frozen=True, slots=True)
class Clause:
    text: str
    slot: Slot | None


def slot_entity(key: str) -> str:
    return f"slot:{key}"


def normalise_value(value: str) -> str:
    words = " ".join(value.casefold().replace("’", "'").split()).strip(" .,!;:'\"")
    return re.sub(r"^the\s+", "", words)


# --- patterns ----------------------------------------------------------------------------------------------------

_LEAD = (
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
_PETS = (
    r"dog|cat|puppy|kitten|hamster|rabbit|bunny|parrot|bird|fish|turtle|tortoise|horse|pony|guinea\s+pig|ferret"
    r"|lizard|snake|goldfish|budgie"
)
_PARTNERS = r"wife|husband|partner|girlfriend|boyfriend|fiancée?|spouse"
_NEGATION = re.compile(r"(?i)\b(?:not|never|no\s+longer|anymore|any\s+more|used\s+to)\b|n't\b|n’t\b")
_QUESTION_START = re.compile(
    r"(?i)^(?:do|does|did|am|is|are|was|were|can|could|should|would|will|where|what|who|how|why|when|which)\b"
)
_VALUE_STOP = re.compile(
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


def _place(value: str) -> bool:
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


def _any(value: str) -> bool:
    return not _NOT_A_NAME.match(value) or value[:1].isupper()


_Rule = tuple[str | Callable[[re.Match[str]], str], re.Pattern[str], Check]


def _rule(key: str | Callable[[re.Match[str]], str], pattern: str, check: Check, *, anchored: bool = True) -> _Rule:
    return key, re.compile((_LEAD if anchored else "^") + pattern, re.IGNORECASE), check


def _pet_key(match: re.Match[str]) -> str:
    return f"pet:{' '.join(match['pet'].casefold().split())}:name"


_JA_I = "(?:私|僕|俺|わたし)"
_JA_VALUE = r"(?P<value>[^\s、。]{1,20}?)"
_JA_PETS = {"犬": "dog", "猫": "cat", "うさぎ": "rabbit", "ハムスター": "hamster", "鳥": "bird"}


def _ja_pet_key(match: re.Match[str]) -> str:
    return f"pet:{_JA_PETS[match['pet']]}:name"


def _favourite_key(match: re.Match[str]) -> str:
    thing = " ".join(match["thing"].casefold().split()).replace("color", "colour")
    return f"favourite:{thing}"


_RULES: tuple[_Rule, ...] = (
    _rule("residence", rf"{_I}\s+{_ADV}(?:live|lives|reside|resides)\s+in\s+{_VALUE}", _place),
    _rule("residence", rf"{_I}{_HAVE}\s*{_ADV}(?:moved|relocated)\s+(?:back\s+)?to\s+{_VALUE}", _place),
    _rule("residence", rf"{_AM}\s+{_ADV}(?:living|based|residing)\s+in\s+{_VALUE}", _place),
    _rule("residence", rf"{_MY}\s+home\s+is\s+in\s+{_VALUE}", _place),
    _rule("name", rf"{_MY}\s+name\s+is\s+{_NAME}", _name),
    _rule("name", rf"(?:{_AM}\s+called|call\s+me)\s+{_NAME}", _capitalised_name),
    _rule("employer", rf"{_I}\s+{_ADV}works?\s+(?:at|for)\s+{_VALUE}", _employer),
    _rule("employer", rf"{_AM}\s+{_ADV}(?:working|employed)\s+(?:at|for|by)\s+{_VALUE}", _employer),
    _rule("occupation", rf"{_I}\s+{_ADV}works?\s+as\s+(?:a|an)\s+{_VALUE}", _profession),
    _rule("occupation", rf"{_AM}\s+{_ADV}(?:a|an)\s+{_VALUE}", _profession),
    _rule("age", rf"{_AM}\s+(?P<value>\d{{1,3}})(?:\s*(?:years?\s+old|yo|y/o))?\s*$", _age),
    _rule("age", rf"(?:{_I}\s+{_ADV}(?:just\s+)?turned|{_MY}\s+age\s+is)\s+(?P<value>\d{{1,3}})\b", _age),
    _rule(
        "partner",
        rf"{_MY}\s+(?:{_PARTNERS})(?:'s\s+name)?\s+is\s+(?:called\s+|named\s+)?{_NAME}",
        _capitalised_name,
    ),
    _rule("partner", rf"{_AM}\s+{_ADV}(?:married\s+to|engaged\s+to|dating)\s+{_NAME}", _capitalised_name),
    _rule(
        _favourite_key,
        rf"{_MY}\s+(?:absolute\s+)?(?:favou?rite|fave)\s+(?P<thing>[a-z]+(?:\s+[a-z]+)?)\s+(?:is|are)\s+{_VALUE}",
        _any,
    ),
    _rule(_pet_key, rf"{_MY}\s+(?:pet\s+)?(?P<pet>{_PETS})(?:'s\s+name\s+is|\s+is\s+(?:called|named))\s+{_NAME}",
          _name),
    _rule(_pet_key, rf"{_I}\s+(?:have|has)\s+(?:a|an)\s+(?P<pet>{_PETS})\s+(?:called|named)\s+{_NAME}", _name),
    _rule("residence", rf"(?:{_JA_I}は)?(?P<value>[^\s、。はがを]{{1,20}}?)に(?:住んでいます|住んでる|引っ越し(?:ました|た))",
          _place, anchored=False),
    _rule(_ja_pet_key, rf"(?:{_JA_I}|うち)の(?P<pet>{'|'.join(_JA_PETS)})(?:の名前)?は{_JA_VALUE}(?:です|だ)", _any,
          anchored=False),
    _rule("name", rf"{_JA_I}の名前は{_JA_VALUE}(?:です|だ)", _any, anchored=False),
)

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*|\n+|;\s*")
_CLAUSE_SPLIT = re.compile(r"(?i),?\s+(?:and|but|so)\s+(?=(?:i|i'm|i’m|i've|my)\b)|,\s+(?=(?:i|i'm|i’m|my)\b)")
_QUESTION_END = re.compile(r"(?:[?？]|か[。．]?|吗|呢)\s*$")
_THIRD_PERSON = re.compile(_LEAD + r"(?:the\s+)?user\b", re.IGNORECASE)


def recognise(clause: str, *, third_person: bool = False) -> Slot | None:
    """The slot a single clause states, or None. ``third_person`` also reads "The user …" as "I …"."""
    text = " ".join(clause.replace("’", "'").split()).rstrip(" .!。！")
    if not text or _QUESTION_END.search(text) or _QUESTION_START.match(text) or _NEGATION.search(text):
        return None
    if not third_person and _THIRD_PERSON.match(text):
        return None
    for key, pattern, check in _RULES:
        match = pattern.match(text)
        if match is None:
            continue
        value = _trim(match["value"])
        if value and check(value):
            return Slot(key(match) if callable(key) else key, value)
    return None


def _trim(value: str) -> str:
    value = _VALUE_STOP.sub("", value.strip())
    words = value.split()[:_VALUE_WORDS]
    return " ".join(words).strip(" '\"")


def clauses(text: str, *, third_person: bool = False) -> list[Clause]:
    """The text cut into clauses at sentence ends and at "and / but / ," before a new first-person subject, each
    with the slot it states. A question's clauses carry none."""
    found: list[Clause] = []
    for sentence in filter(str.strip, _SENTENCE_END.split(text)):
        asked = bool(_QUESTION_END.search(sentence.strip()))
        for part in filter(str.strip, _CLAUSE_SPLIT.split(sentence)):
            part = part.strip()
            found.append(Clause(part, None if asked else recognise(part, third_person=third_person)))
    return found


def statements(text: str, *, third_person: bool = False) -> list[Clause]:
    """For a turn that states slots: each slot clause on its own, the clauses between them (no slot) kept together
    in reading order. A text that states no slot, or exactly one and nothing else, comes back whole."""
    parts = clauses(text, third_person=third_person)
    if not any(part.slot for part in parts):
        return [Clause(text.strip(), None)] if text.strip() else []
    if len(parts) == 1:
        return [Clause(text.strip(), parts[0].slot)]
    grouped: list[Clause] = []
    for part in parts:
        if part.slot is None and grouped and grouped[-1].slot is None:
            grouped[-1] = Clause(f"{grouped[-1].text} {part.text}", None)
        else:
            grouped.append(part)
    return grouped


def single_slot(text: str, *, third_person: bool = False) -> Slot | None:
    """The slot of a text that states exactly one (a memory holding two could not be superseded for one)."""
    found = {part.slot.key: part.slot for part in clauses(text, third_person=third_person) if part.slot}
    return next(iter(found.values())) if len(found) == 1 else None


# --- on memories -------------------------------------------------------------------------------------------------


def with_slot(memory: ExtractedMemory, slot: Slot | None) -> ExtractedMemory:
    """The memory carrying the slot: in its metadata and as a MENTIONS of the slot's entity."""
    if slot is None:
        return memory
    metadata = {**memory.metadata, "slot": slot.key, "slot_value": slot.value}
    return replace(memory, metadata=metadata, entities=(*memory.entities, (slot.entity, SLOT_ENTITY_TYPE)))


def slot_of(metadata: Mapping[str, Any]) -> Slot | None:
    key, value = metadata.get("slot"), metadata.get("slot_value")
    return Slot(key, value) if isinstance(key, str) and isinstance(value, str) and key and value else None


def contradicts(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Both hold the same slot with different values (such memories never merge as near-duplicates)."""
    first, second = slot_of(a), slot_of(b)
    return bool(first and second and first.key == second.key and first.normalised != second.normalised)
