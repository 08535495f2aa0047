"""LoCoMo-schema data for the recall benchmark: conversations → turns (with session dates), questions → gold
evidence turn ids. Only the schema is known here; the data is read from wherever the caller points (it is licensed
CC BY-NC 4.0 and is never copied into this repository).

Quirks handled: evidence ids written together (``"D8:6; D9:17"``), stray spaces, ids missing from the dialogue,
category 5 (adversarial) without an ``answer``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

_EVIDENCE = re.compile(r"D\s*(\d+)\s*:\s*(\d+)")
_SESSION = re.compile(r"^session_(\d+)$")
CATEGORY_NAMES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}


@dataclass(frozen=True, slots=True)
class Turn:
    dia_id: str
    speaker: str
    text: str
    session: int
    timestamp: float | None

    def as_memory_text(self) -> str:
        return f"{self.speaker}: {self.text}"


@dataclass(frozen=True, slots=True)
class Question:
    question: str
    category: int
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Conversation:
    sample_id: str
    turns: tuple[Turn, ...]
    questions: tuple[Question, ...]


def parse_session_time(value: str) -> float | None:
    """``"1:56 pm on 8 May, 2023"`` → UNIX seconds (UTC); None if it does not parse."""
    for pattern in ("%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y", "%I:%M %p on %B %d, %Y"):
        try:
            return datetime.strptime(value.strip(), pattern).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    return None


def parse_evidence(raw: object) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw]
    found: list[str] = []
    for item in items:
        for session, turn in _EVIDENCE.findall(str(item)):
            dia_id = f"D{int(session)}:{int(turn)}"
            if dia_id not in found:
                found.append(dia_id)
    return tuple(found)


def load(path: Path) -> list[Conversation]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [_conversation(sample, index) for index, sample in enumerate(data)]


def _conversation(sample: dict, index: int) -> Conversation:
    conversation = sample["conversation"]
    turns: list[Turn] = []
    for key, value in conversation.items():
        match = _SESSION.match(key)
        if not match or not isinstance(value, list):
            continue
        session = int(match.group(1))
        timestamp = parse_session_time(str(conversation.get(f"{key}_date_time", "")))
        for turn in value:
            text = str(turn.get("text", "")).strip()
            caption = turn.get("blip_caption")
            if caption:
                text = f"{text} [shares a photo: {caption}]".strip()
            if not text:
                continue
            turns.append(Turn(str(turn["dia_id"]).strip(), str(turn.get("speaker", "")), text, session, timestamp))
    turns.sort(key=lambda t: (t.session, _turn_number(t.dia_id)))
    questions = tuple(
        Question(str(qa["question"]), int(qa["category"]), parse_evidence(qa.get("evidence", [])))
        for qa in sample.get("qa", [])
    )
    return Conversation(str(sample.get("sample_id", f"conv-{index}")), tuple(turns), questions)


def _turn_number(dia_id: str) -> int:
    match = _EVIDENCE.search(dia_id)
    return int(match.group(2)) if match else 0


def evaluable(conversation: Conversation, categories: frozenset[int]) -> Iterator[Question]:
    """Questions of the wanted categories whose evidence exists among the conversation's turns."""
    known = {turn.dia_id for turn in conversation.turns}
    for question in conversation.questions:
        if question.category not in categories:
            continue
        gold = tuple(e for e in question.evidence if e in known)
        if gold:
            yield Question(question.question, question.category, gold)


def recall_at(gold: tuple[str, ...], retrieved: list[tuple[str, ...]], k: int) -> float:
    """Share of the gold turns found in the provenance of the top-k retrieved memories."""
    seen = {source for sources in retrieved[:k] for source in sources}
    return sum(1 for g in gold if g in seen) / len(gold)
