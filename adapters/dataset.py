"""The training set of a user's adapter, built from their memories: instruction pairs that teach the facts,
preferences and profile the memory holds, with held-out pairs (other phrasings of the same facts) for validation,
and a neutral set (general questions) that checks the adapter does not degrade ordinary answers.

Memories are mostly in the user's own words ("My dog is called Pochi"); answers speak to the user
("Your dog is called Pochi."). Episodes of past exchanges contribute the user's own statements ("user: …");
the assistant's side is not trained on (it is the base model's output already).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from memory import Memory, MemoryKind, MemoryReader, Scope

TEACHING_KINDS = (MemoryKind.PROFILE, MemoryKind.PREFERENCE, MemoryKind.FACT, MemoryKind.EPISODE)


@dataclass(frozen=True, slots=True)
class InstructionPair:
    prompt: str
    answer: str

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.prompt}]


@dataclass(frozen=True, slots=True)
class TrainingSet:
    train: tuple[InstructionPair, ...]
    held_out: tuple[InstructionPair, ...]
    neutral: tuple[InstructionPair, ...]
    facts: tuple[str, ...]

    @property
    def fingerprint(self) -> str:
        """Changes whenever the facts change: a new version is only worth training when this differs."""
        return hashlib.sha256("\n".join(self.facts).encode()).hexdigest()[:16]


# Phrasings seen in training; the held-out ones below are never trained on.
TRAIN_TEMPLATES = (
    "What do you remember about me?",
    "Tell me one thing you know about me.",
    "Remind me: {prefix}",
)
HELD_OUT_TEMPLATES = ("Please finish this sentence about me: {prefix}",)
ENTITY_TRAIN_TEMPLATE = "What do you know about {entity}?"
ENTITY_HELD_OUT_TEMPLATE = "Tell me about {entity}, as far as it concerns me."

NEUTRAL_PAIRS = (
    InstructionPair("What is the capital of France?", "The capital of France is Paris."),
    InstructionPair("How many days are there in a week?", "There are seven days in a week."),
    InstructionPair("What colour is the sky on a clear day?", "On a clear day the sky is blue."),
    InstructionPair("What is two plus two?", "Two plus two is four."),
    InstructionPair("Which planet do we live on?", "We live on the planet Earth."),
    InstructionPair("What do bees make?", "Bees make honey and wax."),
    InstructionPair("What is water made of?", "Water is made of hydrogen and oxygen."),
    InstructionPair("Name a primary colour.", "Red is a primary colour."),
    InstructionPair("What is the opposite of hot?", "The opposite of hot is cold."),
    InstructionPair("How many legs does a spider have?", "A spider has eight legs."),
    InstructionPair("What season comes after winter?", "Spring comes after winter."),
    InstructionPair("What do plants need to grow?", "Plants need light, water and nutrients to grow."),
)

_SPEAKER = re.compile(r"^(user|human)\s*:\s*", re.IGNORECASE)
_PRONOUNS = {
    "i": "you", "me": "you", "my": "your", "mine": "yours", "myself": "yourself", "am": "are",
    "i'm": "you're", "i've": "you've", "i'll": "you'll", "i'd": "you'd", "we": "you", "our": "your", "us": "you",
}
_WORD = re.compile(r"[A-Za-z']+|[^A-Za-z']+")


def second_person(text: str) -> str:
    """"My dog is called Pochi" → "Your dog is called Pochi." (first person words swapped, a final full stop)."""
    words = []
    for token in _WORD.findall(text.strip()):
        swapped = _PRONOUNS.get(token.lower())
        if swapped is None:
            words.append(token)
        else:
            words.append(swapped.capitalize() if token[0].isupper() or not words else swapped)
    out = "".join(words)
    out = out[0].upper() + out[1:] if out else out
    return out if out.endswith((".", "!", "?")) else out + "."


def fact_text(memory: Memory) -> str | None:
    """The statement a memory teaches, or None (assistant turns, questions, very short or very long texts)."""
    text = memory.text.strip()
    if memory.kind == MemoryKind.EPISODE:
        match = _SPEAKER.match(text)
        if match is None:
            return None
        text = text[match.end():].strip()
    if text.endswith("?") or not 3 <= len(text.split()) <= 60:
        return None
    return text


def cloze_prefix(answer: str) -> str:
    """The first half of the answer's words (at least two; at least one word is left to say)."""
    words = answer.rstrip(".!?").split()
    keep = max(2, min(len(words) - 1, len(words) // 2))
    return " ".join(words[:keep])


def pairs_for(fact: str, entities: Sequence[str]) -> tuple[list[InstructionPair], list[InstructionPair]]:
    """(training pairs, held-out pairs) for one fact."""
    answer = second_person(fact)
    prefix = cloze_prefix(answer)
    train = [InstructionPair(t.format(prefix=prefix), answer) for t in TRAIN_TEMPLATES]
    held_out = [InstructionPair(t.format(prefix=prefix), answer) for t in HELD_OUT_TEMPLATES]
    for entity in entities[:2]:
        train.append(InstructionPair(ENTITY_TRAIN_TEMPLATE.format(entity=entity), answer))
        held_out.append(InstructionPair(ENTITY_HELD_OUT_TEMPLATE.format(entity=entity), answer))
    return train, held_out


def build_training_set(memories: Iterable[Memory], *, max_examples: int = 256) -> TrainingSet:
    """Teaching kinds first (profile, preference, fact, then episodes), most important first; duplicates dropped."""
    ranked = sorted(memories, key=lambda m: (TEACHING_KINDS.index(m.kind), -m.importance, -m.created_at))
    facts: list[str] = []
    train: list[InstructionPair] = []
    held_out: list[InstructionPair] = []
    seen: set[str] = set()
    for memory in ranked:
        fact = fact_text(memory)
        if fact is None or fact.casefold() in seen:
            continue
        seen.add(fact.casefold())
        fact_train, fact_held_out = pairs_for(fact, memory.entities)
        if len(train) + len(fact_train) > max_examples:
            break
        facts.append(fact)
        train.extend(fact_train)
        held_out.extend(fact_held_out)
    return TrainingSet(tuple(train), tuple(held_out), NEUTRAL_PAIRS, tuple(facts))


async def load_memories(memories_of: MemoryReader, scope: Scope, *, limit: int = 2000) -> list[Memory]:
    """The user's active memories, newest first, at most ``limit``."""
    memories: list[Memory] = []
    cursor: str | None = None
    while len(memories) < limit:
        page = await memories_of.list(
            scope.user, tenant=scope.tenant, limit=min(500, limit - len(memories)), cursor=cursor
        )
        memories.extend(page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return memories
