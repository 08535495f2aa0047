"""Extraction: what a write job should leave behind — memories with entities, and relations between them.

:class:`Extractor` is the seam. The default here, :class:`DeterministicExtractor`, needs no model: each turn of an
exchange becomes an episodic memory with simple entities (:func:`find_entities`). An LLM extractor (the upstream
model with a JSON-schema ``response_format``) implements the same interface. Extraction may differ when a job is
replayed (an LLM is not deterministic); that is harmless, because the graph store refuses a job id it has applied.
"""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from memory.models import MemoryKind, RelationType
from memory.writes.entities import find_entities
from memory.writes.jobs import WriteJob
from memory.writes.slots import Slot, single_slot, slot_of, statements, with_slot

__all__ = [
    "DeterministicExtractor",
    "ExtractedMemory",
    "ExtractedRelation",
    "Extraction",
    "Extractor",
    "episode_importance",
    "find_entities",
]

ROLE = "role"
"""A turn's metadata: whose it is, ``"user"`` or ``"assistant"``."""
QUESTION = "question"
"""A user turn's metadata: the turn only asks (see :func:`is_question`)."""
REPLIED_TO = "replied_to"
"""A user turn's metadata: the start of the assistant message it answered (what a bare "yes, I'll try it" means)."""
FACT_IMPORTANCE = 0.8
"""At least this important: a fact the user states about themselves (a slot clause of their turn)."""
_OFF_LOOP_CHARS = 4_000
"""Above this much text, the deterministic extractor runs in a worker thread instead of on the event loop."""


@dataclass(frozen=True, slots=True)
class ExtractedMemory:
    text: str
    kind: MemoryKind = MemoryKind.EPISODE
    importance: float = 0.5
    entities: tuple[tuple[str, str], ...] = ()
    """(display name, type) pairs; the pipeline normalises names into entity keys."""
    event_time: float | None = None
    source_ids: tuple[str, ...] = ()
    """Provenance: the message ids this memory came from."""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError("extracted memory text must not be empty")
        if not 0.0 <= self.importance <= 1.0:
            raise ValueError(f"importance must be within 0..1, got {self.importance}")
        object.__setattr__(self, "kind", MemoryKind(self.kind))
        object.__setattr__(self, "entities", tuple((str(name), str(kind)) for name, kind in self.entities))
        object.__setattr__(self, "source_ids", tuple(str(s) for s in self.source_ids))


@dataclass(frozen=True, slots=True)
class ExtractedRelation:
    """An edge between two memories of the same extraction, by their index in ``Extraction.memories``."""

    source: int
    target: int
    type: RelationType = RelationType.LEADS_TO
    strength: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", RelationType(self.type))
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must be within 0..1, got {self.strength}")


@dataclass(slots=True)
class Extraction:
    memories: list[ExtractedMemory] = field(default_factory=list)
    relations: list[ExtractedRelation] = field(default_factory=list)

    def __post_init__(self) -> None:
        count = len(self.memories)
        for relation in self.relations:
            ends = (relation.source, relation.target)
            if not all(0 <= end < count for end in ends) or relation.source == relation.target:
                raise ValueError(f"relation {relation} does not join two distinct memories of {count}")


class Extractor(ABC):
    """Every implementation runs the contract suite in tests/memory/writes/test_extractor_contract.py."""

    @abstractmethod
    async def extract(self, job: WriteJob) -> Extraction:
        """The memories a job should leave (possibly none). Raises ValueError for a malformed job; the pipeline
        then fails it (retried with backoff, finally dead-lettered).

        A ``"memory"`` job is the user's own words: one memory with its text (stripped), kind, importance, event
        time, source ids and metadata (the slot it states added; none for a blank text), and no model is asked.
        An ``"exchange"`` job keeps its newest user turn and the answer, unless blank, each with its message id
        in the provenance of a memory; every memory's provenance is within the exchange (its message ids, or ids
        made from the job id where a message has none); system prompts leave nothing. An extractor that asks a
        model adds nothing random of its own (the same job with the same answers gives an equal extraction), and
        where the model gives no usable answer it falls back to what :class:`DeterministicExtractor` extracts."""

    @abstractmethod
    def stats(self) -> dict[str, int]:
        """Outcome counts since start, by outcome, in a new dict (the proxy exports them as a metric). An extractor
        that asks a model counts each job it asks about once: under ``"ok"``, or under a ``"fallback_…"`` outcome
        saying why it fell back. One that asks no model may report nothing."""

    async def close(self) -> None:
        """Release what the extractor holds (an HTTP client, say); nothing by default. Safe to call twice."""


class DeterministicExtractor(Extractor):
    """No model needed. For an ``"exchange"`` job, the newest user turn and the assistant's answer each become an
    episodic memory — text ``"<speaker>: <content>"`` (the message's ``name`` if given, else ``User`` /
    ``Assistant``), provenance = that message's id, event time = the exchange's timestamp — joined by a LEADS_TO
    edge; a user turn stating slots is split into clauses first (see :func:`_user_turn`), and a clause stating a
    slot is a fact memory that carries it (:func:`memory.writes.slots.with_slot`; importance at least
    ``FACT_IMPORTANCE``). A user turn that only asks is marked ``question``, and a user turn keeps the start of the
    message it replied to (``replied_to``). For a ``"memory"`` job, the given text becomes one
    memory with the given fields (and its slot, if it states exactly one). Empty turns leave
    nothing; system and developer prompts are never memories. Importance: :func:`episode_importance`."""

    def stats(self) -> dict[str, int]:
        """Nothing to count: no model is asked, and a job either extracts or is malformed (ValueError)."""
        return {}

    async def extract(self, job: WriteJob) -> Extraction:
        if _payload_chars(job.payload) > _OFF_LOOP_CHARS:
            return await asyncio.to_thread(self.extract_now, job)
        return self.extract_now(job)

    def extract_now(self, job: WriteJob) -> Extraction:
        """The same, synchronously (pure CPU, no I/O)."""
        if job.kind == "memory":
            return explicit_memory(job.payload)
        if job.kind == "exchange":
            return _exchange(job)
        raise ValueError(f"unknown job kind {job.kind!r}")


# --- importance --------------------------------------------------------------------------------------------------

_SELF = re.compile(
    r"(?i:\b(?:i|i'm|i’m|i've|i’ve|i'd|i’d|i'll|i’ll|me|my|mine|myself|we|our|ours)\b)"
    r"|私|僕|俺|わたし|あたし|自分|我|저는|제가|나는|내가|저의|나의|우리"
)
_LIKES = re.compile(
    r"(?i:\b(?:like|love|enjoy|hate|dislike|prefer|favou?rite|want|need|plan|planning|allergic|always|never)\b)"
    r"|好き|嫌い|欲しい|苦手|大好き|喜欢|讨厌|爱|想要|좋아|싫어"
)
_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7a3]")
_QUESTION_END = re.compile(r"(?:[?？]|か[。．]?|吗|呢|까)\s*$")
_SENTENCES = re.compile(r"(?<=[.!?。！？])\s*|\n+")
_FILLER_WORDS = 3
"""A sentence this short beside a question ("Wow!", "Hey Bo,") does not make the turn a statement."""


def _importance(content: str, role: str, entity_count: int, stated: bool) -> float:
    importance = episode_importance(content, role, entity_count)
    return max(FACT_IMPORTANCE, importance) if stated else importance


def is_question(text: str) -> bool:
    """Every sentence of the text asks something (greetings and the like aside): it discloses little."""
    sentences = [s.strip() for s in _SENTENCES.split(text) if s.strip()]
    asked = [s for s in sentences if _QUESTION_END.search(s)]
    return bool(asked) and all(s in asked or len(s.split()) <= _FILLER_WORDS for s in sentences)


def episode_importance(text: str, role: str, entity_count: int) -> float:
    """A deterministic heuristic, 0.05–0.95.

    User turns start at 0.4: +0.3 when the user says something about themselves (first person: I / my / we,
    私 / 僕, 我, 저는 …), +0.1 for likes, dislikes, wants and plans, −0.1 for a question that discloses nothing.
    Assistant turns start at 0.3 (the assistant's "I" is not about the user, so it earns nothing). Either: +0.1 when
    the turn names something (at least one entity), −0.2 for a bare acknowledgement (one or two words such as
    "ok thanks"; in CJK text, under six characters)."""
    words = len(text.split())
    if role == "user":
        score = 0.4
        discloses = _SELF.search(text) is not None
        if discloses:
            score += 0.3
        if _LIKES.search(text):
            score += 0.1
        if not discloses and _QUESTION_END.search(text):
            score -= 0.1
    else:
        score = 0.3
    if entity_count:
        score += 0.1
    if (len(text) < 6) if _CJK_CHAR.search(text) else (words <= 2 and len(text) < 12):
        score -= 0.2
    return round(min(0.95, max(0.05, score)), 2)


# --- jobs --------------------------------------------------------------------------------------------------------


def explicit_memory(payload: dict[str, Any]) -> Extraction:
    """A ``"memory"`` job's payload as one memory: its entities found in the text, and its slot (the one the
    metadata names, else the one the text states, if exactly one)."""
    text = payload.get("text")
    if not isinstance(text, str):
        raise ValueError("a memory job needs a text")
    if not text.strip():
        return Extraction()
    metadata = payload.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError("memory metadata must be an object")
    memory = ExtractedMemory(
        text=text.strip(),
        kind=MemoryKind(payload.get("kind") or MemoryKind.FACT),
        importance=float(payload.get("importance", 0.5)),
        entities=tuple(find_entities(text)),
        event_time=_optional_float(payload.get("event_time")),
        source_ids=tuple(payload.get("source_ids") or ()),
        metadata=dict(metadata),
    )
    return Extraction([with_slot(memory, slot_of(metadata) or single_slot(text))])


def _exchange(job: WriteJob) -> Extraction:
    payload = job.payload
    messages = payload.get("messages") or []
    if not isinstance(messages, list):
        raise ValueError("an exchange job needs a list of messages")
    user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None)
    answer = payload.get("answer")
    if isinstance(answer, str):
        answer = {"content": answer}
    event_time = _optional_float(payload.get("timestamp"))
    context = {
        "conversation_id": payload.get("conversation_id"),
        "event_time": job.created_at if event_time is None else event_time,
        "job_id": job.job_id,
        "replied_to": payload.get("context") if isinstance(payload.get("context"), str) else None,
    }
    memories = _user_turn(user, context) if user is not None else []
    reply = _turn(answer, "assistant", context) if isinstance(answer, dict) else None
    if reply is not None:
        memories.append(reply)
    relations = [ExtractedRelation(i, i + 1, RelationType.LEADS_TO, 1.0) for i in range(len(memories) - 1)]
    return Extraction(memories, relations)


def _user_turn(message: dict[str, Any], context: dict[str, Any]) -> list[ExtractedMemory]:
    """The user's turn as one episode; a turn stating slots (:mod:`memory.writes.slots`) as one episode per slot
    clause plus one for the rest, so that a later contradiction supersedes only the clause it contradicts."""
    parts = statements(content_text(message.get("content")))
    return [
        memory
        for part in parts
        if (memory := _turn(message, "user", context, part.text, part.slot)) is not None
    ]


def _turn(
    message: dict[str, Any], role: str, context: dict[str, Any], text: str | None = None, slot: Slot | None = None
) -> ExtractedMemory | None:
    content = (content_text(message.get("content")) if text is None else text).strip()
    if not content:
        return None
    name = message.get("name")
    speaker = name.strip() if isinstance(name, str) and name.strip() else role.capitalize()
    message_id = message.get("id")
    source = str(message_id) if message_id else f"{context['job_id']}:{role}"
    entities = find_entities(content)
    metadata: dict[str, Any] = {ROLE: role, "speaker": speaker}
    if context["conversation_id"] is not None:
        metadata["conversation_id"] = context["conversation_id"]
    if role == "user" and context.get("replied_to"):
        metadata[REPLIED_TO] = context["replied_to"]
    if role == "user" and is_question(content):
        metadata[QUESTION] = True
    stated = role == "user" and slot is not None  # a fact the user states about themselves
    memory = ExtractedMemory(
        text=f"{speaker}: {content}",
        kind=MemoryKind.FACT if stated else MemoryKind.EPISODE,
        importance=_importance(content, role, len(entities), stated),
        entities=tuple(entities),
        event_time=context["event_time"],
        source_ids=(source,),
        metadata=metadata,
    )
    return with_slot(memory, slot)


def content_text(content: Any) -> str:
    """OpenAI message content: a string, or a list of parts of which the text parts count (images do not)."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, bytes | bytearray):
        texts = [
            part if isinstance(part, str) else part.get("text", "")
            for part in content
            if isinstance(part, str) or (isinstance(part, dict) and part.get("type", "text") == "text")
        ]
        return "\n".join(t for t in texts if isinstance(t, str))
    return ""


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _payload_chars(payload: dict[str, Any]) -> int:
    total = len(str(payload.get("text") or ""))
    for message in payload.get("messages") or ():
        if isinstance(message, dict):
            total += len(content_text(message.get("content")))
    answer = payload.get("answer")
    if isinstance(answer, str):
        total += len(answer)
    elif isinstance(answer, dict):
        total += len(content_text(answer.get("content")))
    return total
