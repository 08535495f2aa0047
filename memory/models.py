"""The memory data model, shared by every backend: memories, entities, relationships, scopes, change records.

Times are UNIX seconds (UTC) as floats throughout; exports render them as ISO 8601.
Every object belongs to exactly one :class:`Scope` (tenant, user); no operation ever crosses scopes.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_SCOPE_PART = re.compile(r"^[^\x00-\x1f]{1,256}$")


class MemoryKind(StrEnum):
    FACT = "fact"
    EPISODE = "episode"
    PREFERENCE = "preference"
    PROFILE = "profile"


class RelationType(StrEnum):
    """Edges between two memories. ``MENTIONS`` (memory → entity) is kept separately, see ``Memory.entities``."""

    RELATED_TO = "RELATED_TO"
    LEADS_TO = "LEADS_TO"
    SUPERSEDES = "SUPERSEDES"


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose memory: a tenant (from the API key) and an end user inside it."""

    tenant: str
    user: str

    def __post_init__(self) -> None:
        for name in ("tenant", "user"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _SCOPE_PART.match(value):
                raise ValueError(f"scope {name} must be 1-256 printable characters, got {value!r}")

    @property
    def key(self) -> str:
        """A stable string for partition names and file names (both parts are length-prefixed: no collisions)."""
        return f"{len(self.tenant)}:{self.tenant}/{self.user}"


def new_id() -> str:
    return uuid.uuid4().hex


def now() -> float:
    return time.time()


@dataclass(slots=True)
class Memory:
    scope: Scope
    text: str
    kind: MemoryKind = MemoryKind.EPISODE
    importance: float = 0.5
    id: str = field(default_factory=new_id)
    created_at: float = field(default_factory=now)
    event_time: float | None = None
    last_used_at: float | None = None
    use_count: int = 0
    expires_at: float | None = None
    source_ids: tuple[str, ...] = ()
    """Provenance: the ids of the messages / turns this memory came from."""
    superseded_by: str | None = None
    entities: tuple[str, ...] = ()
    """Normalised names of the entities it MENTIONS (see :func:`normalise_entity`)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Free-form, JSON-serialisable (e.g. ``{"category": "pets"}``)."""

    def __post_init__(self) -> None:
        if not self.text or not self.text.strip():
            raise ValueError("memory text must not be empty")
        if not 0.0 <= self.importance <= 1.0:
            raise ValueError(f"importance must be within 0..1, got {self.importance}")
        self.kind = MemoryKind(self.kind)

    @property
    def active(self) -> bool:
        return self.superseded_by is None and (self.expires_at is None or self.expires_at > now())

    def evolve(self, **changes: Any) -> Memory:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Entity:
    scope: Scope
    name: str
    """Normalised name (the key within the scope)."""
    type: str = "thing"
    display_name: str | None = None


@dataclass(frozen=True, slots=True)
class Relationship:
    scope: Scope
    source_id: str
    target_id: str
    type: RelationType
    strength: float = 1.0


@dataclass(frozen=True, slots=True)
class GraphHit:
    """A memory reached by a graph traversal, with the number of hops and the product of edge strengths."""

    memory: Memory
    depth: int
    strength: float


class ChangeOp(StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the store's change log, ordered by a monotonically increasing ``seq``."""

    seq: int
    scope: Scope
    memory_id: str
    op: ChangeOp


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def normalise_entity(name: str) -> str:
    """Entity key: case-folded, inner whitespace collapsed. ``"  New  York "`` and ``"new york"`` are one entity."""
    return " ".join(name.casefold().split())
