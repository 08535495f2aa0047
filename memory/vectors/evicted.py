"""Partitions evicted from RAM whose file is still being written (in the I/O thread of
:class:`~memory.vectors.index_folder.PartitionFiles`).

Until its write is done, such a partition is the scope's current state (the file on disk may be older): a scope
used again meanwhile gets the object back as it is, after the write. Held partitions take RAM, so their total is
bounded (:meth:`EvictedPartitions.bound`). Only the index's worker thread calls these methods.
"""

from __future__ import annotations

from concurrent.futures import Future

from memory.models import Scope
from memory.vectors.partition import Partition


class EvictedPartitions:
    def __init__(self) -> None:
        self._held: dict[Scope, tuple[Partition, Future[None]]] = {}
        """Oldest first."""

    def __contains__(self, scope: object) -> bool:
        return scope in self._held

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, scope: Scope, partition: Partition, written: Future[None]) -> None:
        self._held[scope] = (partition, written)

    def take_back(self, scope: Scope) -> tuple[Partition, BaseException | None]:
        """The scope's partition once its write is done, and the write's error (then it is still to be written)."""
        partition, written = self._held.pop(scope)
        return partition, written.exception()

    def discard(self, scope: Scope) -> None:
        """Forget the scope (dropped), after its write: no file may land after the scope's file is removed."""
        held = self._held.pop(scope, None)
        if held is not None:
            held[1].exception()

    def bound(self, limit_bytes: int) -> None:
        """Wait for the oldest writes until the partitions held take at most ``limit_bytes``."""
        held = sum(partition.nbytes() for partition, _ in self._held.values())
        for partition, written in list(self._held.values()):
            if held <= limit_bytes:
                break
            written.exception()
            held -= partition.nbytes()

    def wait_all(self) -> None:
        for _, written in list(self._held.values()):
            written.exception()

    def settled(self) -> list[Scope]:
        """Let go of the partitions now written; returns the scopes whose write failed (still held: take them
        back)."""
        failed = []
        for scope, (_, written) in list(self._held.items()):
            if written.done():
                if written.exception() is None:
                    del self._held[scope]
                else:
                    failed.append(scope)
        return failed
