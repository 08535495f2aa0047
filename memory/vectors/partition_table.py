"""The FAISS index's partitions as its worker thread keeps them: every scope's vector count, the partitions in RAM
(least recently used first, within a memory budget), which changed since their file was written, which are being
written out, and their IVF builds.

:class:`~memory.vectors.faiss_index.FaissVectorIndex` is the asynchronous face: it runs these methods in its one
worker thread, one at a time and in the order they were called, and reads partitions back beside that thread
(:meth:`PartitionTable.load_ticket`, then :meth:`PartitionTable.adopt`). From the event loop only
:attr:`PartitionTable.counts` and :attr:`PartitionTable.resident` are read, by key.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from concurrent.futures import Future

import numpy as np

from memory.models import Scope
from memory.vectors.evicted import EvictedPartitions
from memory.vectors.index_folder import Manifest, PartitionFiles
from memory.vectors.ivf_builds import IvfBuilds
from memory.vectors.partition import IVF_SQ8, Partition, PartitionPolicy

log = logging.getLogger(__name__)

LEAVING_FLOOR = 32 * 2**20
"""Evicted partitions being written may hold at least this much RAM before eviction waits for their writes."""


class PartitionTable:
    def __init__(
        self,
        dim: int,
        policy: PartitionPolicy,
        builds: IvfBuilds,
        files: PartitionFiles | None,
        *,
        resident_bytes: int,
        counts: dict[Scope, int] | None = None,
    ) -> None:
        """``files``: where partitions beyond ``resident_bytes`` go, and are saved (None: all stay in RAM, nothing
        is saved). ``counts``: the saved partitions' (all of them on disk)."""
        self.dim = dim
        self._policy = policy
        self.builds = builds
        self._files = files
        self._resident_bytes = resident_bytes
        self.counts: dict[Scope, int] = dict(counts or {})
        """Every partition's vector count, resident or not."""
        self.resident: OrderedDict[Scope, Partition] = OrderedDict()
        """Partitions in RAM, least recently used first; the others' files are current."""
        self._sizes: dict[Scope, int] = {}
        self._resident_total = 0
        self._dirty: set[Scope] = set()
        self._dropped: set[Scope] = set()
        """Scopes whose file goes at the next save (after the manifest that no longer lists them)."""
        self.leaving = EvictedPartitions()
        self._generation: dict[Scope, int] = {}
        self._epoch = 0
        """A scope's generation changes whenever it enters or leaves RAM: a partition read beside the worker is
        adopted only if its generation is still the one its read began with (the file is then current)."""

    # --- changes and searches --------------------------------------------------------------------------------

    def add(self, scope: Scope, ids: list[str], vectors: np.ndarray) -> None:
        partition = self._partition(scope, create=True)
        assert partition is not None
        partition.add(ids, vectors)
        self.builds.start(scope, partition)
        self._changed(scope, partition)

    def remove(self, scope: Scope, ids: list[str]) -> None:
        partition = self._partition(scope)
        if partition is not None and partition.remove(ids, self._policy):
            self._changed(scope, partition)

    def search(self, scope: Scope, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        partition = self._partition(scope)
        if partition is None:
            return []
        hits = partition.search(query, k, self._policy)
        self._evict(keep=scope)
        return hits

    def drop(self, scope: Scope) -> None:
        self.builds.cancel(scope)
        if self._files is not None:
            # A write under way lands first, so the file removed at the next save is not brought back after it.
            self.leaving.discard(scope)
            self._files.settle(scope)
            self._bump(scope)
        if self.counts.pop(scope, None) is None:
            return
        if self.resident.pop(scope, None) is not None:
            self._resident_total -= self._sizes.pop(scope)
        self._dirty.discard(scope)
        if self._files is not None:
            self._dropped.add(scope)

    def clear(self) -> None:
        for scope in list(self.counts):
            self.drop(scope)

    def stats(self) -> dict[str, int]:
        return {
            "partitions": len(self.counts),
            "vectors": sum(self.counts.values()),
            "resident_partitions": len(self.resident),
            "resident_vectors": sum(p.count for p in self.resident.values()),
            "resident_bytes": self._resident_total,
            "resident_ivf_partitions": sum(p.kind == IVF_SQ8 for p in self.resident.values()),
            "builds_under_way": len(self.builds),
        }

    # --- residency -------------------------------------------------------------------------------------------

    def _partition(self, scope: Scope, *, create: bool = False) -> Partition | None:
        """The scope's partition, made resident (taken back while it is being written out, or read from disk) if
        needed, and marked most recently used."""
        partition = self.resident.get(scope)
        if partition is not None:
            self.resident.move_to_end(scope)
            self._install_build(scope, partition)
            return partition
        if scope in self.leaving:
            partition = self._take_back(scope)
            self.builds.start(scope, partition)
        elif scope in self.counts:
            assert self._files is not None
            partition = self._files.read(scope)
            self.builds.start(scope, partition)  # one may have been due when it was written out
        elif create:
            partition = Partition(self.dim)
            self.counts[scope] = 0
            self._dropped.discard(scope)  # its old file, if any, is overwritten when this one is written
        else:
            return None
        self._make_resident(scope, partition)
        return partition

    def _make_resident(self, scope: Scope, partition: Partition) -> None:
        self.resident[scope] = partition
        self._sizes[scope] = partition.nbytes()
        self._resident_total += self._sizes[scope]
        self._bump(scope)

    def _bump(self, scope: Scope) -> None:
        self._epoch += 1
        self._generation[scope] = self._epoch

    def _take_back(self, scope: Scope) -> Partition:
        """An evicted partition used again while its write is under way: the object itself, once written (it has
        not changed since; if the write failed, it is still to be written)."""
        partition, error = self.leaving.take_back(scope)
        if error is not None:
            log.error("writing the vector partition of %r failed: %s", scope.key, error)
            self._dirty.add(scope)
        return partition

    def load_ticket(self, scope: Scope) -> int | None:
        """The scope's generation if its partition is only on disk (None: nothing to read)."""
        on_disk = scope in self.counts and scope not in self.resident and scope not in self.leaving
        return self._generation.get(scope, 0) if on_disk else None

    def adopt(self, scope: Scope, partition: Partition, ticket: int) -> None:
        """Make a partition read beside the worker resident, unless the scope entered or left RAM meanwhile (its
        file may then be older than its vectors)."""
        if self.load_ticket(scope) != ticket:
            return
        self.builds.start(scope, partition)
        self._make_resident(scope, partition)
        self._evict(keep=scope)

    def _install_build(self, scope: Scope, partition: Partition) -> None:
        """Swap in the scope's finished IVF build, if there is one."""
        if self.builds.finish(scope, partition):
            self._dirty.add(scope)
            size = partition.nbytes()
            self._resident_total += size - self._sizes[scope]
            self._sizes[scope] = size

    def install_finished_builds(self) -> None:
        for scope in self.builds.scopes():
            partition = self.resident.get(scope)
            if partition is not None:
                self._install_build(scope, partition)
            elif self.builds.done(scope):
                self.builds.cancel(scope)  # written out meanwhile: it starts again when next loaded
            self._evict(keep=scope)

    def _changed(self, scope: Scope, partition: Partition) -> None:
        if partition.count == 0:
            self.drop(scope)
            return
        self.counts[scope] = partition.count
        self._dirty.add(scope)
        size = partition.nbytes()
        self._resident_total += size - self._sizes[scope]
        self._sizes[scope] = size
        self._evict(keep=scope)

    def _evict(self, keep: Scope) -> None:
        """Drop least recently used partitions until within the memory budget; a changed one is written out in the
        I/O thread, and stays at hand (:attr:`leaving`) until it is."""
        if self._files is None:
            return
        for scope in list(self.resident):
            if self._resident_total <= self._resident_bytes:
                break
            if scope == keep:
                continue
            partition = self.resident.pop(scope)
            self._resident_total -= self._sizes.pop(scope)
            self.builds.cancel(scope, partition)  # its journal goes with it; rebuilt when next loaded
            self._bump(scope)
            if scope in self._dirty:
                self._dirty.discard(scope)
                self.leaving.hold(scope, partition, self._files.write(scope, partition))
            elif (written := self._files.pending(scope)) is not None:  # a save's copy of it is being written
                self.leaving.hold(scope, partition, written)
        # Past a quarter of the budget (a bulk load evicting faster than the disk writes), wait for the oldest.
        self.leaving.bound(max(self._resident_bytes // 4, LEAVING_FLOOR))
        self._reap()

    def _reap(self) -> int:
        """Let go of evicted partitions now written; one whose write failed comes back into RAM, to be written
        again. Returns how many failed."""
        failed = self.leaving.settled()
        for scope in failed:
            self._partition(scope)  # taken back (and logged) as if used
        return len(failed)

    # --- saving ----------------------------------------------------------------------------------------------

    def dirty_resident(self) -> list[Scope]:
        return [scope for scope in self.resident if scope in self._dirty]

    def mark_dirty(self, scope: Scope) -> None:
        """The scope's file is older than its vectors (a save's write of it failed): written next time."""
        self._dirty.add(scope)

    def save_partition(self, scope: Scope) -> Future[None] | None:
        """Hand a copy of the scope's partition to the I/O thread (None if dropped, evicted or saved meanwhile)."""
        partition = self.resident.get(scope)
        if partition is None or scope not in self._dirty:
            return None
        assert self._files is not None
        self._dirty.discard(scope)
        return self._files.write(scope, partition.snapshot())

    def finish_save(self, embedder: str, applied_seq: int) -> None:
        """Write the manifest once every partition it lists has its file, then remove the dropped scopes' files."""
        assert self._files is not None
        # Partitions evicted meanwhile may hold changes from before applied_seq: their files land first.
        self.leaving.wait_all()
        if self._reap():
            raise OSError("writing an evicted vector partition failed; the manifest was left as it was")
        self._files.folder.write_manifest(Manifest(self.dim, embedder, applied_seq, dict(self.counts)))
        for scope in self._dropped:  # only now that no manifest lists them
            self._files.folder.remove_partition(scope)
        self._dropped.clear()
