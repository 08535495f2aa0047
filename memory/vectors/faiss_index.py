"""The FAISS vector index: one partition per scope, a memory budget, atomic persistence.

**Isolation by construction.** Each :class:`~memory.models.Scope` has its own FAISS index (see
:mod:`memory.vectors.partition`): a search only ever looks into the caller's partition.

**Threads.** All FAISS work runs in one worker thread, with one OpenMP thread (two made a flat scan at 100k 2.3x
slower on this 2-core machine); one thread also orders the operations: a search sees every add awaited before it.
IVF training runs in a second thread (:mod:`memory.vectors.ivf_builds`); partition files are read and written in a
third (:class:`~memory.vectors.index_folder.PartitionFiles`), so a search whose partition must be read back
(140 ms at 100k) or a partition being evicted or saved (120 ms) does not hold up other scopes' searches.

**Memory.** With a ``path``, partitions are kept in RAM within ``resident_bytes``; the least recently used ones are
written out (if changed; :mod:`memory.vectors.evicted` while that lasts) and read back on their next use. With 1M
vectors (one user with 100k, 900 with 1k) and the default 256 MiB, the index added about 360 MB to the RSS.

**Persistence.** :meth:`FaissVectorIndex.save` writes each changed partition to its own file atomically, then
``manifest.json`` with ``applied_seq`` (the graph store change-log seq the index reflects), the dimension and the
embedder's name. A partition file may be newer than the manifest (written when evicted), never older, so replaying
the change log from ``applied_seq`` (idempotent) brings every partition up to date after a crash. A damaged,
missing or mismatched file raises :class:`IndexLoadError`; the caller rebuilds from the graph store
(:func:`memory.vectors.sync.rebuild_index`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from memory.models import Scope
from memory.vectors.base import VectorIndex
from memory.vectors.evicted import EvictedPartitions
from memory.vectors.index_folder import IndexFolder, IndexLoadError, Manifest, PartitionFiles
from memory.vectors.ivf_builds import IvfBuilds, one_omp_thread
from memory.vectors.partition import IVF_SQ8, Partition, PartitionPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")
LEAVING_FLOOR = 32 * 2**20
"""Evicted partitions being written may hold at least this much RAM before eviction waits for their writes."""


class FaissVectorIndex(VectorIndex):
    def __init__(
        self,
        dim: int,
        path: Path | None = None,
        *,
        embedder_name: str = "",
        exact_max: int = 20_000,
        nprobe_fraction: float = 1 / 8,
        resident_bytes: int = 256 * 2**20,
        fresh: bool = False,
    ) -> None:
        """``path``: a folder of its own (None: in memory only). An existing index there is opened, unless
        ``fresh``, which discards it. ``resident_bytes`` bounds the partitions kept in RAM (with a path)."""
        self.dim = dim
        self.applied_seq = 0
        self.embedder_name = embedder_name
        self._policy = PartitionPolicy(exact_max=exact_max, nprobe_fraction=nprobe_fraction)
        self._folder = IndexFolder(Path(path)) if path is not None else None
        self._files = PartitionFiles(self._folder, dim) if self._folder is not None else None
        self._resident_bytes = resident_bytes
        self._counts: dict[Scope, int] = {}
        """Every partition's vector count, resident or not (read from the event loop by :meth:`count`)."""
        self._resident: OrderedDict[Scope, Partition] = OrderedDict()
        """Partitions in RAM, least recently used first; the others' files are current."""
        self._sizes: dict[Scope, int] = {}
        self._resident_total = 0
        self._dirty: set[Scope] = set()
        self._dropped: set[Scope] = set()
        """Scopes whose file goes at the next save (after the manifest that no longer lists them)."""
        self._leaving = EvictedPartitions()
        self._generation: dict[Scope, int] = {}
        self._epoch = 0
        """A scope's generation changes whenever it enters or leaves RAM: a partition read beside the worker is
        adopted only if its generation is still the one its read began with (the file is then current)."""
        self._loads: dict[Scope, asyncio.Future[None]] = {}
        """Reads under way for searches (event-loop side): concurrent searches of one scope share one."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faiss", initializer=one_omp_thread)
        self._builds = IvfBuilds(dim, self._policy)
        self.load_error: str | None = None
        """Set by :meth:`open` when the saved index could not be used and a fresh one was started instead."""
        if self._folder is not None:
            try:
                manifest = self._folder.open(dim=dim, embedder=embedder_name, fresh=fresh)
            except BaseException:
                self._executor.shutdown(wait=False)
                self._builds.close()
                assert self._files is not None
                self._files.close()
                raise
            if manifest is not None:
                self._counts = manifest.counts
                self.applied_seq = manifest.applied_seq

    @classmethod
    def open(cls, path: Path, *, dim: int, embedder_name: str = "", **options: Any) -> FaissVectorIndex:
        """The index saved at ``path``; if it is damaged, missing files or built for another dimension or embedder,
        a fresh empty one (``applied_seq`` 0, the reason in :attr:`load_error`, logged): the caller rebuilds it
        from the graph store (:func:`memory.vectors.sync.rebuild_index`, or by replaying the change log)."""
        try:
            return cls(dim, path, embedder_name=embedder_name, **options)
        except IndexLoadError as exc:
            log.warning("%s; starting a fresh vector index (it will be rebuilt from the graph store)", exc)
            index = cls(dim, path, embedder_name=embedder_name, fresh=True, **options)
            index.load_error = str(exc)
            return index

    # --- VectorIndex -----------------------------------------------------------------------------------------

    async def add(self, scope: Scope, ids: Sequence[str], vectors: np.ndarray) -> None:
        vectors = self._check_vectors(vectors, len(ids))
        if len(ids):
            await self._run(self._add, scope, list(ids), vectors)

    async def remove(self, scope: Scope, ids: Sequence[str]) -> None:
        if ids:
            await self._run(self._remove, scope, list(ids))

    async def drop_scope(self, scope: Scope) -> None:
        await self._run(self._drop, scope)

    async def search(self, scope: Scope, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        query = self._check_vectors(np.asarray(query).reshape(1, -1), 1)
        if k <= 0 or self.count(scope) == 0:
            return []
        if self._files is not None and scope not in self._resident:  # a hint; the worker thread decides
            await self._load(scope)
        return await self._run(self._search, scope, query, k)

    def count(self, scope: Scope) -> int:
        return self._counts.get(scope, 0)

    async def save(self) -> None:
        """Write the changed partitions and then the manifest. Each partition is copied in the index's thread
        (25 ms at 100k) and written from the copy in the I/O thread, one at a time, so searches go on meanwhile.
        The manifest's ``applied_seq`` is the one before the first partition was copied: changes after it are
        replayed on load, and replaying an add or a removal that a file already holds changes nothing."""
        if self._folder is None:
            return
        applied_seq = self.applied_seq
        for scope in await self._run(self._dirty_resident):
            written = await self._run(self._save_partition, scope)
            if written is None:
                continue
            try:
                await asyncio.wrap_future(written)
            except BaseException:
                await self._run(self._dirty.add, scope)  # its file is older than its vectors: written next time
                raise
        await self._run(self._finish_save, applied_seq)

    # --- beyond the interface --------------------------------------------------------------------------------

    def scopes(self) -> list[Scope]:
        """Scopes with at least one vector."""
        return [scope for scope, count in list(self._counts.items()) if count]

    async def clear(self) -> None:
        """Drop every partition (before a rebuild); ``applied_seq`` goes back to 0."""
        await self._run(self._clear)
        self.applied_seq = 0

    async def stats(self) -> dict[str, int]:
        """Partitions and vectors, in all and resident (with the estimated bytes), for metrics and benchmarks."""
        return await self._run(self._stats)

    async def settle(self) -> None:
        """Wait for the IVF builds under way and swap them in (benchmarks and tests want a steady state)."""
        while len(self._builds):
            futures = [asyncio.wrap_future(future) for future in self._builds.futures()]
            await asyncio.gather(*futures, return_exceptions=True)
            await self._run(self._install_finished_builds)

    async def close(self) -> None:
        """Finish queued work and stop the threads (does not save; a build under way is abandoned)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._executor.shutdown, True)
        await loop.run_in_executor(None, self._builds.close)
        if self._files is not None:
            await loop.run_in_executor(None, self._files.close)  # evicted partitions' writes land

    # --- worker-thread side ----------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _add(self, scope: Scope, ids: list[str], vectors: np.ndarray) -> None:
        partition = self._partition(scope, create=True)
        assert partition is not None
        partition.add(ids, vectors)
        self._builds.start(scope, partition)
        self._changed(scope, partition)

    def _remove(self, scope: Scope, ids: list[str]) -> None:
        partition = self._partition(scope)
        if partition is not None and partition.remove(ids, self._policy):
            self._changed(scope, partition)

    def _search(self, scope: Scope, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        partition = self._partition(scope)
        if partition is None:
            return []
        hits = partition.search(query, k, self._policy)
        self._evict(keep=scope)
        return hits

    def _drop(self, scope: Scope) -> None:
        self._builds.cancel(scope)
        if self._files is not None:
            # A write under way lands first, so the file removed at the next save is not brought back after it.
            self._leaving.discard(scope)
            self._files.settle(scope)
            self._bump(scope)
        if self._counts.pop(scope, None) is None:
            return
        if self._resident.pop(scope, None) is not None:
            self._resident_total -= self._sizes.pop(scope)
        self._dirty.discard(scope)
        if self._folder is not None:
            self._dropped.add(scope)

    def _clear(self) -> None:
        for scope in list(self._counts):
            self._drop(scope)

    def _stats(self) -> dict[str, int]:
        return {
            "partitions": len(self._counts),
            "vectors": sum(self._counts.values()),
            "resident_partitions": len(self._resident),
            "resident_vectors": sum(p.count for p in self._resident.values()),
            "resident_bytes": self._resident_total,
            "resident_ivf_partitions": sum(p.kind == IVF_SQ8 for p in self._resident.values()),
            "builds_under_way": len(self._builds),
        }

    def _partition(self, scope: Scope, *, create: bool = False) -> Partition | None:
        """The scope's partition, made resident (taken back while it is being written out, or read from disk) if
        needed, and marked most recently used."""
        partition = self._resident.get(scope)
        if partition is not None:
            self._resident.move_to_end(scope)
            self._install_build(scope, partition)
            return partition
        if scope in self._leaving:
            partition = self._take_back(scope)
            self._builds.start(scope, partition)
        elif scope in self._counts:
            assert self._files is not None
            partition = self._files.read(scope)
            self._builds.start(scope, partition)  # one may have been due when it was written out
        elif create:
            partition = Partition(self.dim)
            self._counts[scope] = 0
            self._dropped.discard(scope)  # its old file, if any, is overwritten when this one is written
        else:
            return None
        self._make_resident(scope, partition)
        return partition

    def _make_resident(self, scope: Scope, partition: Partition) -> None:
        self._resident[scope] = partition
        self._sizes[scope] = partition.nbytes()
        self._resident_total += self._sizes[scope]
        self._bump(scope)

    def _bump(self, scope: Scope) -> None:
        self._epoch += 1
        self._generation[scope] = self._epoch

    def _take_back(self, scope: Scope) -> Partition:
        """An evicted partition used again while its write is under way: the object itself, once written (it has
        not changed since; if the write failed, it is still to be written)."""
        partition, error = self._leaving.take_back(scope)
        if error is not None:
            log.error("writing the vector partition of %r failed: %s", scope.key, error)
            self._dirty.add(scope)
        return partition

    async def _load(self, scope: Scope) -> None:
        """Read a scope's partition back in the I/O thread, not the worker: other scopes' searches go on
        meanwhile. Concurrent searches of the scope share the read; a search given up (recall's timeout) leaves it
        to finish for the next one. If this does not work out, the search reads the partition itself."""
        load = self._loads.get(scope)
        if load is None:
            load = self._loads[scope] = asyncio.ensure_future(self._load_beside(scope))
            load.add_done_callback(lambda _: self._loads.pop(scope, None))
        await asyncio.shield(load)

    async def _load_beside(self, scope: Scope) -> None:
        assert self._files is not None
        try:
            ticket = await self._run(self._load_ticket, scope)
            if ticket is not None:
                partition = await self._files.read_beside(scope)
                await self._run(self._adopt, scope, partition, ticket)
        except Exception as exc:  # the search's own read reports it
            log.debug("reading the vector partition of %r beside the index failed: %s", scope.key, exc)

    def _load_ticket(self, scope: Scope) -> int | None:
        """The scope's generation if its partition is only on disk (None: nothing to read)."""
        on_disk = scope in self._counts and scope not in self._resident and scope not in self._leaving
        return self._generation.get(scope, 0) if on_disk else None

    def _adopt(self, scope: Scope, partition: Partition, ticket: int) -> None:
        """Make a partition read beside the worker resident, unless the scope entered or left RAM meanwhile (its
        file may then be older than its vectors)."""
        if self._load_ticket(scope) != ticket:
            return
        self._builds.start(scope, partition)
        self._make_resident(scope, partition)
        self._evict(keep=scope)

    def _install_build(self, scope: Scope, partition: Partition) -> None:
        """Swap in the scope's finished IVF build, if there is one."""
        if self._builds.finish(scope, partition):
            self._dirty.add(scope)
            size = partition.nbytes()
            self._resident_total += size - self._sizes[scope]
            self._sizes[scope] = size

    def _install_finished_builds(self) -> None:
        for scope in self._builds.scopes():
            partition = self._resident.get(scope)
            if partition is not None:
                self._install_build(scope, partition)
            elif self._builds.done(scope):
                self._builds.cancel(scope)  # written out meanwhile: it starts again when next loaded
            self._evict(keep=scope)

    def _changed(self, scope: Scope, partition: Partition) -> None:
        if partition.count == 0:
            self._drop(scope)
            return
        self._counts[scope] = partition.count
        self._dirty.add(scope)
        size = partition.nbytes()
        self._resident_total += size - self._sizes[scope]
        self._sizes[scope] = size
        self._evict(keep=scope)

    def _evict(self, keep: Scope) -> None:
        """Drop least recently used partitions until within the memory budget; a changed one is written out in the
        I/O thread, and stays at hand (:attr:`_leaving`) until it is."""
        if self._files is None:
            return
        for scope in list(self._resident):
            if self._resident_total <= self._resident_bytes:
                break
            if scope == keep:
                continue
            partition = self._resident.pop(scope)
            self._resident_total -= self._sizes.pop(scope)
            self._builds.cancel(scope, partition)  # its journal goes with it; rebuilt when next loaded
            self._bump(scope)
            if scope in self._dirty:
                self._dirty.discard(scope)
                self._leaving.hold(scope, partition, self._files.write(scope, partition))
            elif (written := self._files.pending(scope)) is not None:  # a save's copy of it is being written
                self._leaving.hold(scope, partition, written)
        # Past a quarter of the budget (a bulk load evicting faster than the disk writes), wait for the oldest.
        self._leaving.bound(max(self._resident_bytes // 4, LEAVING_FLOOR))
        self._reap()

    def _reap(self) -> int:
        """Let go of evicted partitions now written; one whose write failed comes back into RAM, to be written
        again. Returns how many failed."""
        failed = self._leaving.settled()
        for scope in failed:
            self._partition(scope)  # taken back (and logged) as if used
        return len(failed)

    # --- files -----------------------------------------------------------------------------------------------

    def _dirty_resident(self) -> list[Scope]:
        return [scope for scope in self._resident if scope in self._dirty]

    def _save_partition(self, scope: Scope) -> Future[None] | None:
        """Hand a copy of the scope's partition to the I/O thread (None if dropped, evicted or saved meanwhile)."""
        partition = self._resident.get(scope)
        if partition is None or scope not in self._dirty:
            return None
        assert self._files is not None
        self._dirty.discard(scope)
        return self._files.write(scope, partition.snapshot())

    def _finish_save(self, applied_seq: int) -> None:
        assert self._folder is not None and self._files is not None
        # Partitions evicted meanwhile may hold changes from before applied_seq: their files land first.
        self._leaving.wait_all()
        if self._reap():
            raise OSError("writing an evicted vector partition failed; the manifest was left as it was")
        self._folder.write_manifest(Manifest(self.dim, self.embedder_name, applied_seq, dict(self._counts)))
        for scope in self._dropped:  # only now that no manifest lists them
            self._folder.remove_partition(scope)
        self._dropped.clear()

    def _check_vectors(self, vectors: np.ndarray, rows: int) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (rows, self.dim):
            raise ValueError(f"expected {rows} vector(s) of dimension {self.dim}, got shape {vectors.shape}")
        return vectors

