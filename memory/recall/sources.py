"""Whose words a memory holds, for recall: in an assistant chat the user's own statements are the memory, and the
assistant's replies are context — the conversation's flow, what was recommended — often invented by a small model.

- A memory of the **assistant's** words (``metadata["role"] == "assistant"``) scores ``assistant_weight`` of its
  score, so it never outranks what the user said about the same thing; unless the query asks about the assistant's
  words ("the recipe you gave me", "what did you recommend", 「あなたが勧めた」), where it counts in full.
- A **question** the user asked (``metadata["question"]``) discloses little: it scores ``question_weight`` of its
  score, and when it holds nearly all of the query's words — the user asking the same thing again — it is not
  recalled at all: a question never comes back as the answer to itself.

Pure functions of the text and the memory's metadata; memories without a role (turns imported from a transcript,
stated facts) are left as they are.
"""

from __future__ import annotations

import re
from collections.abc import Collection

import numpy as np

from memory.models import Memory
from memory.writes.extraction import QUESTION, ROLE

ASSISTANT = "assistant"
ECHO_SHARE = 0.8
"""A question memory holding this share of the query's words is the query asked again."""

_ABOUT_ASSISTANT = re.compile(
    r"(?i)\b(?:you|u)\s+(?:(?:just|once|earlier|previously|already)\s+)?"
    r"(?:said|told|gave|recommended|suggested|mentioned|wrote|listed|showed|shared|explained|described|proposed"
    r"|advised|came\s+up\s+with|helped\s+me\s+with)\b"
    r"|\byour\s+(?:suggestions?|recommendations?|advice|answers?|reply|replies|recipes?|list|ideas?|tips?|plan"
    r"|explanation|summary|words)\b"
    r"|あなた|君が|きみが|教えてくれた|勧めてくれた|すすめてくれた|言ってくれた|提案してくれた|你说|你推荐|你建议|你给"
)


USERS, ASSISTANTS, QUESTIONS = 0, 1, 2
"""The kinds of source the lexical index keeps per memory (:meth:`LexicalIndex.kinds`), so that the first stage of
recall weighs candidates before anything is read from the store."""


def kind_of(memory: Memory) -> int:
    if memory.metadata.get(ROLE) == ASSISTANT:
        return ASSISTANTS
    if memory.metadata.get(QUESTION) is True:
        return QUESTIONS
    return USERS


def kind_weights(*, assistant_weight: float, question_weight: float, about_assistant: bool) -> np.ndarray:
    """Each kind's share of its score, indexed by kind."""
    return np.array([1.0, 1.0 if about_assistant else assistant_weight, question_weight], dtype=np.float64)


def about_assistant(query: str) -> bool:
    """The query asks about something the assistant said."""
    return _ABOUT_ASSISTANT.search(query) is not None


def echoes(memory_tokens: Collection[str], query_tokens: Collection[str]) -> bool:
    """The memory holds nearly all of the query's words (the same question, asked before)."""
    asked = set(query_tokens)
    return bool(asked) and len(asked.intersection(memory_tokens)) >= ECHO_SHARE * len(asked)
