"""LoCoMo conversations as assistant chats, for ``memproxy bench chat-recall``: pure functions, no I/O.

One speaker of a conversation plays **the user**: their turns are the user messages of one chat per session (the
session's history as a client sends it), each chat dated with its session's time. The assistant's answer to each
message is, in ``replay`` mode, the other speaker's turns up to the user's next turn, and in ``noisy`` mode text of
the same length from another conversation — as a small model's invented answers are. Afterwards each question whose
gold evidence includes the user's own turns is asked by that user in a fresh chat, turned into the first person
("What did Caroline research?" → "What did I research?").
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from memory.bench import locomo

Mode = Literal["replay", "noisy"]
MODES: tuple[Mode, ...] = ("replay", "noisy")
CATEGORIES = frozenset({1, 2, 3, 4})
INVENTED = (
    "The Eiffel Tower was originally built for the 1889 World's Fair in Paris.",
    "Many people find that a short walk after lunch helps them focus in the afternoon.",
    "Pochi is the name of a renowned dog in the field of animal training.",
    "Sourdough bread relies on wild yeast and lactic acid bacteria for its rise.",
    "The best time to visit Kyoto is in spring, when the cherry blossoms are in bloom.",
)
"""Answers a small model might invent, for ``noisy`` mode when there is no other conversation to take text from."""
"""LoCoMo's answerable categories (5, adversarial, asks about what was never said)."""


@dataclass(frozen=True, slots=True)
class Exchange:
    """One chat request of the replay: the history as the client sends it, the new user message, the answer the
    upstream is to give, and when it happened."""

    user: str
    history: tuple[dict[str, str], ...]
    message: str
    answer: str
    timestamp: float | None


@dataclass(frozen=True, slots=True)
class Ask:
    """One question, asked by one user in a fresh chat."""

    user: str
    question: str
    category: int
    gold: tuple[str, ...]
    """The texts of the gold evidence turns that are the user's own."""


@dataclass(frozen=True, slots=True)
class Replay:
    """One speaker's side of one conversation."""

    user: str
    speaker: str
    mode: Mode
    exchanges: tuple[Exchange, ...]
    asks: tuple[Ask, ...]
    turns: tuple[str, ...]
    """Every text the user said (to tell a user's memory from an assistant's in a prompt)."""
    answers: tuple[str, ...]
    """Every answer the assistant gave."""


def replays(
    conversations: Sequence[locomo.Conversation], speakers: Sequence[tuple[str, str]], mode: Mode, seed: int = 0
) -> Iterator[Replay]:
    """Each conversation from each of its two speakers' side; ``speakers[i]`` names conversation i's two."""
    for index, (conversation, pair) in enumerate(zip(conversations, speakers, strict=True)):
        others = [turn.text for other in conversations if other is not conversation for turn in other.turns] or list(
            INVENTED
        )
        for speaker in pair:
            rng = random.Random(f"{seed}:{conversation.sample_id}:{speaker}")
            yield _replay(conversation, speaker, mode, others, rng, index)


def _replay(
    conversation: locomo.Conversation, speaker: str, mode: Mode, others: list[str], rng: random.Random, index: int
) -> Replay:
    user = f"{conversation.sample_id}-{_slug(speaker)}"
    exchanges: list[Exchange] = []
    for session in sorted({turn.session for turn in conversation.turns}):
        turns = [turn for turn in conversation.turns if turn.session == session]
        history: list[dict[str, str]] = []
        position = 0
        while position < len(turns) and turns[position].speaker != speaker:
            history.append({"role": "assistant", "content": turns[position].text})  # the session's opening
            position += 1
        while position < len(turns):
            said: list[str] = []
            while position < len(turns) and turns[position].speaker == speaker:
                said.append(turns[position].text)
                position += 1
            replies: list[str] = []
            while position < len(turns) and turns[position].speaker != speaker:
                replies.append(turns[position].text)
                position += 1
            reply = "\n".join(replies) or "Okay."
            answer = reply if mode == "replay" else _noise(len(reply), others, rng)
            message = "\n".join(said)
            exchanges.append(Exchange(user, tuple(history), message, answer, turns[0].timestamp))
            history += [{"role": "user", "content": message}, {"role": "assistant", "content": answer}]
    own = {turn.dia_id: turn.text for turn in conversation.turns if turn.speaker == speaker}
    other = next((turn.speaker for turn in conversation.turns if turn.speaker != speaker), None)
    asks = tuple(
        Ask(user, first_person(question.question, speaker, other), question.category, tuple(own[e] for e in gold))
        for question in conversation.questions
        if question.category in CATEGORIES and (gold := tuple(e for e in question.evidence if e in own))
    )
    said_texts = tuple(own.values())
    answers = tuple(exchange.answer for exchange in exchanges)
    return Replay(user, speaker, mode, tuple(exchanges), asks, said_texts, answers)


def _noise(length: int, pool: list[str], rng: random.Random) -> str:
    """Text of about ``length`` characters from other conversations' turns."""
    parts: list[str] = []
    while sum(len(part) + 1 for part in parts) < length:
        parts.append(rng.choice(pool))
    return " ".join(parts)[: max(length, 1)].rstrip() or "Okay."


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "speaker"


_WITH_I = {"is": "am", "was": "was", "has": "have", "does": "do"}
_AUXILIARY = r"did|does|do|is|was|has|had|would|will|can|could|should|might"
_BEFORE_ME = r"to|with|for|about|from|of|by|at|on|in|than|help|helped|tell|told|give|gave|make|made|let|ask|asked"


def first_person(question: str, name: str, other: str | None = None) -> str:
    """The question as ``name`` would ask it about themselves: their name becomes I / me / my, and a verb that
    followed it agrees ("Caroline has" → "I have", "does Caroline" → "do I"). Other people's names stay; where the
    ``other`` speaker is not named, her / his / she / he are the user's too."""
    first = re.escape(name.split()[0])
    text = question
    if other is None or not re.search(rf"\b{re.escape(other.split()[0])}\b", question):
        text = re.sub(r"\b(?:her|his)self\b", "myself", text)
        text = re.sub(r"\b(?:her|his)(?=\s+(?!and\b|or\b|to\b|for\b|with\b|about\b)\w)", "my", text)
        text = re.sub(r"\b(?:her|him)\b", "me", text)
        text = re.sub(r"\b(?:she|he)\b", name.split()[0], text)
    text = re.sub(rf"\b{first}(?:'s|’s)(?=\W)", "my", text)
    text = re.sub(rf"\b({_AUXILIARY})\s+{first}\b", lambda m: f"{_WITH_I.get(m[1], m[1])} I", text)
    text = re.sub(rf"\b({_BEFORE_ME})\s+{first}\b", lambda m: f"{m[1]} me", text, flags=re.IGNORECASE)
    text = re.sub(rf"\b{first}\s+(\w+)\b", lambda m: f"I {_agree(m[1])}", text)
    return re.sub(rf"\b{first}\b", "me", text)


def _agree(verb: str) -> str:
    """A third-person present verb in the first person ("likes" → "like"); anything else as it is."""
    if verb in _WITH_I:
        return _WITH_I[verb]
    if verb.endswith("ies") and len(verb) > 4:
        return verb[:-3] + "y"
    if re.search(r"(ch|sh|ss|x|z|o)es$", verb):
        return verb[:-2]
    if verb.endswith("s") and not verb.endswith(("ss", "us", "is")) and len(verb) > 3:
        return verb[:-1]
    return verb
