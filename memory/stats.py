"""What the engine reports about its write queue and its derived indexes (metrics, health)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QueueStats:
    """The durable write queue as it stands."""

    depth: int
    """Jobs waiting or being applied."""
    oldest_age_s: float
    """Age of the oldest queued job (0 when empty)."""
    dead_letters: int
    """Jobs that failed for good."""


@dataclass(frozen=True, slots=True)
class IndexStats:
    """The derived indexes (vectors, BM25) against the store they follow."""

    store_seq: int
    """The store's change-log position."""
    applied_seq: int
    """The position the indexes reflect."""

    @property
    def lag(self) -> int:
        """Changes the store has that recall does not see yet (0: in step)."""
        return max(0, self.store_seq - self.applied_seq)
