"""The unit of work of the write pipeline: :class:`WriteJob`, JSON-serialisable, stored by the durable queue."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from memory.models import Scope, new_id

JobKind = Literal["exchange", "memory", "revision"]
JOB_KINDS: tuple[str, ...] = ("exchange", "memory", "revision")
_HISTORY_ROLES = ("system", "developer")
CONTEXT_CHARS = 400
"""How much of the message a user replied to an exchange keeps (the start of it)."""


@dataclass(frozen=True, slots=True)
class WriteJob:
    """One unit of work for the write pipeline; JSON-serialisable (:meth:`to_json`).

    ``payload`` by ``kind``:

    - ``"exchange"``: ``{"messages": [{"id", "role", "content", "name"?}, ...], "answer": {"id", "content",
      "name"?}, "conversation_id": str | None, "timestamp": float}`` — the new turns of a chat and the assistant's
      answer (see :meth:`for_exchange`);
    - ``"memory"``: ``{"text", "kind", "importance", "metadata", "event_time", "source_ids"}`` — an explicit
      ``remember()`` (see :meth:`for_memory`);
    - ``"revision"``: ``{"memory_id", "text"}`` — a new version of a memory, which supersedes it (see
      :meth:`for_revision` and :mod:`memory.writes.revisions`).
    """

    job_id: str
    scope: Scope
    kind: JobKind
    payload: dict[str, Any]
    created_at: float = field(default_factory=time.time)
    attempts: int = 0
    """How many times the queue has handed this job out, this hand-out included (0 before the first claim)."""

    def __post_init__(self) -> None:
        if not isinstance(self.job_id, str) or not self.job_id:
            raise ValueError("job_id must be a non-empty string")
        if self.kind not in JOB_KINDS:
            raise ValueError(f"job kind must be one of {JOB_KINDS}, got {self.kind!r}")
        if not isinstance(self.payload, dict):
            raise ValueError("payload must be a dict")

    @classmethod
    def for_exchange(
        cls,
        scope: Scope,
        messages: Sequence[dict[str, Any]],
        answer: dict[str, Any],
        *,
        conversation_id: str | None = None,
        timestamp: float | None = None,
        job_id: str | None = None,
    ) -> WriteJob:
        """A finished chat exchange. Only the turns after the last assistant message are kept (what the client
        sent as new), and never system / developer prompts: the queue holds no more of a conversation than needed.
        Of that last assistant message — what the user replied to — the start is kept as ``context``."""
        new_turns: list[dict[str, Any]] = []
        replied_to: dict[str, Any] | None = None
        for message in reversed(messages):
            if message.get("role") == "assistant":
                replied_to = message
                break
            if message.get("role") not in _HISTORY_ROLES:
                new_turns.append(dict(message))
        stamp = time.time() if timestamp is None else timestamp
        payload = {
            "messages": new_turns[::-1],
            "answer": dict(answer),
            "conversation_id": conversation_id,
            "timestamp": stamp,
        }
        if replied_to is not None and isinstance(replied_to.get("content"), str) and replied_to["content"].strip():
            payload["context"] = " ".join(replied_to["content"].split())[:CONTEXT_CHARS]
        return cls(job_id or new_id(), scope, "exchange", payload, created_at=stamp)

    @classmethod
    def for_memory(
        cls,
        scope: Scope,
        text: str,
        *,
        kind: str = "fact",
        importance: float = 0.5,
        metadata: dict[str, Any] | None = None,
        event_time: float | None = None,
        source_ids: Sequence[str] = (),
        job_id: str | None = None,
    ) -> WriteJob:
        payload = {
            "text": text,
            "kind": str(kind),
            "importance": importance,
            "metadata": dict(metadata or {}),
            "event_time": event_time,
            "source_ids": list(source_ids),
        }
        return cls(job_id or new_id(), scope, "memory", payload)

    @classmethod
    def for_revision(cls, scope: Scope, memory_id: str, text: str, *, job_id: str | None = None) -> WriteJob:
        return cls(job_id or new_id(), scope, "revision", {"memory_id": memory_id, "text": text})

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "scope": {"tenant": self.scope.tenant, "user": self.scope.user},
            "kind": self.kind,
            "payload": self.payload,
            "created_at": self.created_at,
            "attempts": self.attempts,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WriteJob:
        scope = data["scope"]
        return cls(
            job_id=data["job_id"],
            scope=Scope(scope["tenant"], scope["user"]),
            kind=data["kind"],
            payload=data["payload"],
            created_at=float(data["created_at"]),
            attempts=int(data.get("attempts", 0)),
        )

    def to_json(self) -> str:
        """Raises TypeError / ValueError if the payload is not plain JSON (no NaN, no objects)."""
        return dumps_json(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> WriteJob:
        return cls.from_dict(json.loads(text))


def dumps_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
