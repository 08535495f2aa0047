"""The change log: every change to a memory, numbered, across all scopes — what followers of the store read."""

from __future__ import annotations

from abc import ABC, abstractmethod

from memory.models import Change


class ChangeLogOperations(ABC):
    """Every change to a memory appends an entry with a monotonically increasing ``seq``; the vector index and,
    later, replicas follow the store by reading from the last ``seq`` they applied."""

    @abstractmethod
    async def changes_since(self, seq: int, *, limit: int = 1000) -> list[Change]:
        """Change-log entries with ``seq`` greater than the given one, ascending, across all scopes."""

    @abstractmethod
    async def last_seq(self) -> int: ...

    @abstractmethod
    async def log_expired(self, until: float) -> int:
        """Across all scopes: append an UPSERT change for every unsuperseded memory whose ``expires_at`` passed
        since the previous call, up to ``until`` (never beyond the store's clock), so followers drop it. Returns how
        many. Expiry itself is a matter of time; this is how the derived indexes hear of it."""
