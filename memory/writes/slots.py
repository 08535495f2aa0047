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

from memory.writes.slot_rules import LEAD, NEGATION, QUESTION_START, RULES, VALUE_STOP
from memory.writes.slot_rules_cjk import CJK_RULES

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



_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*|\n+|;\s*")
_CLAUSE_SPLIT = re.compile(
    r"(?i),?\s+(?:and|but|so)\s+(?=(?:i|i'm|i’m|i've|my)\b)|,\s+(?=(?:i|i'm|i’m|my)\b)"
    r"|[，,、]\s*(?:而且|并且|但是|还有|所以)?(?=我|私は|僕は|私の)"
)
_QUESTION_END = re.compile(r"(?:[?？]|か[。．]?|吗|呢)\s*$")
_ALL_RULES = (*RULES, *CJK_RULES)
_THIRD_PERSON = re.compile(LEAD + r"(?:the\s+)?user\b", re.IGNORECASE)


def recognise(clause: str, *, third_person: bool = False) -> Slot | None:
    """The slot a single clause states, or None. ``third_person`` also reads "The user …" as "I …"."""
    text = " ".join(clause.replace("’", "'").split()).rstrip(" .!。！")
    if not text or _QUESTION_END.search(text) or QUESTION_START.match(text) or NEGATION.search(text):
        return None
    if not third_person and _THIRD_PERSON.match(text):
        return None
    for rule in _ALL_RULES:
        match = rule.pattern.match(text)
        if match is None:
            continue
        value = _trim(match["value"])
        if value and rule.check(value):
            return Slot(rule.slot_key(match, value), rule.value(match) if rule.value else value)
    return None


def _trim(value: str) -> str:
    value = VALUE_STOP.sub("", value.strip())
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
