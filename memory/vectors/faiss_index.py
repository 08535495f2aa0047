"""The FAISS vector index: one partition per scope, a memory budget, atomic persistence.

**Isolation by construction.** Each :class:`~memory.models.Scope` has its own FAISS index (see
:mod:`memory.vectors.partition`); a search only ever looks into the caller's partition, so no filter can be
forgotten and no other scope's vector can come back.

**Threads.** All FAISS work runs in one worker thread (FAISS releases the GIL), with one OpenMP thread: a single
query gains nothing from more, and two made a flat scan at 100k 2.3x slower on this 2-core machine (6.4 → 15 ms).
One thread also orders the operations: a search sees every add that was awaited before it. IVF training runs in a
second, background thread (see :mod:`memory.vectors.partition`).

**Memory.** With a ``path``, partitions are kept in RAM within ``resident_bytes``; the least recently used ones are
written out (if changed) and dropped, and read back on their next use. So a million memories need not be resident
at once: only the users being served are. Measured with 1M vectors (one user with 100k, 900 with 1k) and the
default 256 MiB budget: the index added about 360 MB to the process's RSS.

**Persistence.** :meth:`FaissVectorIndex.save` writes each changed partition to its own file atomically (temp
file, fsync, rename, fsync of the folder), then ``manifest.json`` with ``applied_seq`` (the graph store change-log
seq the index reflects), the dimension and the embedder's name. A partition file may be newer than the manifest
(written when evicted); never older, so replaying the change log from ``applied_seq`` (idempotent) brings every
partition up to date after a crash. Opening an existing ``path`` restores the index; a damaged, missing or
mismatched file raises :class:`IndexLoadError`, and the caller rebuilds from the graph store
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

import faiss
import numpy as np

from memory.models import Scope
from memory.vectors.base import VectorIndex
from memory.vectors.index_folder import IndexFolder, IndexLoadError, Manifest
from memory.vectors.partition import IVF_SQ8, Partition, PartitionPolicy, build_ivf

log = logging.getLogger(__name__)

T = TypeVar("T")


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
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faiss", initializer=_one_omp_thread)
        self._builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faiss-build", initializer=_one_omp_thread)
        self._builds: dict[Scope, tuple[Future[faiss.IndexIVF], list[str | None]]] = {}
        """IVF builds under way in the builder thread, with the snapshot ids each was built from."""
        self.load_error: str | None = None
        """Set by :meth:`open` when the saved index could not be used and a fresh one was started instead."""
        if self._folder is not None:
            try:
                manifest = self._folder.open(dim=dim, embedder=embedder_name, fresh=fresh)
            except BaseException:
                self._executor.shutdown(wait=False)
                self._builder.shutdown(wait=False)
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
        return await self._run(self._search, scope, query, k)

    def count(self, scope: Scope) -> int:
        return self._counts.get(scope, 0)

    async def save(self) -> None:
        """Write the changed partitions and then the manifest. One partition per turn of the index's thread, so
        searches run between them: a save never stalls them for longer than one partition's write (not the
        hundreds of milliseconds all of them take after a bulk load). The manifest's ``applied_seq`` is the one
        before the first partition was written: changes after it are replayed on load, and replaying an add or a
        removal that a file already holds changes nothing."""
        if self._folder is None:
            return
        applied_seq = self.applied_seq
        for scope in await self._run(self._dirty_resident):
            await self._run(self._save_partition, scope)
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
        while self._builds:
            futures = [asyncio.wrap_future(future) for future, _ in list(self._builds.values())]
            await asyncio.gather(*futures, return_exceptions=True)
            await self._run(self._install_finished_builds)

    async def close(self) -> None:
        """Finish queued work and stop the threads (does not save; a build under way is abandoned)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._executor.shutdown, True)
        await loop.run_in_executor(None, lambda: self._builder.shutdown(wait=True, cancel_futures=True))

    # --- worker-thread side ----------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _add(self, scope: Scope, ids: list[str], vectors: np.ndarray) -> None:
        partition = self._partition(scope, create=True)
        assert partition is not None
        partition.add(ids, vectors)
        self._start_build(scope, partition)
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
        self._builds.pop(scope, None)
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
        """The scope's partition, made resident (read from disk) if needed, and marked most recently used."""
        partition = self._resident.get(scope)
        if partition is not None:
            self._resident.move_to_end(scope)
            self._install_build(scope, partition)
            return partition
        if scope in self._counts:
            partition = self._read_partition(scope)
            self._start_build(scope, partition)  # one may have been due when it was written out
        elif create:
            partition = Partition(self.dim)
            self._counts[scope] = 0
            self._dropped.discard(scope)  # its old file, if any, is overwritten when this one is written
        else:
            return None
        self._resident[scope] = partition
        self._sizes[scope] = partition.nbytes()
        self._resident_total += self._sizes[scope]
        return partition

    def _start_build(self, scope: Scope, partition: Partition) -> None:
        if scope not in self._builds and partition.build_due(self._policy):
            ids, vectors = partition.begin_build()
            self._builds[scope] = (self._builder.submit(build_ivf, self.dim, vectors, self._policy), ids)

    def _install_build(self, scope: Scope, partition: Partition) -> None:
        """Swap in the scope's finished IVF build, if there is one."""
        pending = self._builds.get(scope)
        if pending is None or not pending[0].done():
            return
        del self._builds[scope]
        future, ids = pending
        try:
            built = future.result()
        except Exception:
            log.exception("building an IVF index for scope %r failed", scope.key)
            partition.cancel_build()
            return
        if partition.finish_build(ids, built):
            self._dirty.add(scope)
            size = partition.nbytes()
            self._resident_total += size - self._sizes[scope]
            self._sizes[scope] = size

    def _install_finished_builds(self) -> None:
        for scope in list(self._builds):
            partition = self._resident.get(scope)
            if partition is not None:
                self._install_build(scope, partition)
            elif self._builds[scope][0].done():
                del self._builds[scope]  # written out meanwhile: it starts again when next loaded
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
        """Write out (if changed) and drop least recently used partitions until within the memory budget."""
        if self._folder is None:
            return
        for scope in list(self._resident):
            if self._resident_total <= self._resident_bytes:
                break
            if scope == keep:
                continue
            partition = self._resident[scope]
            if scope in self._dirty:
                self._write_partition(scope, partition)
            if self._builds.pop(scope, None) is not None:  # its journal goes with it; rebuilt when next loaded
                partition.cancel_build()
            del self._resident[scope]
            self._resident_total -= self._sizes.pop(scope)

    # --- files -----------------------------------------------------------------------------------------------

    def _write_partition(self, scope: Scope, partition: Partition) -> None:
        assert self._folder is not None
        self._folder.write_partition(scope, partition)
        self._dirty.discard(scope)

    def _read_partition(self, scope: Scope) -> Partition:
        assert self._folder is not None
        return self._folder.read_partition(scope, self.dim)

    def _dirty_resident(self) -> list[Scope]:
        return [scope for scope in self._resident if scope in self._dirty]

    def _save_partition(self, scope: Scope) -> None:
        partition = self._resident.get(scope)
        if partition is not None and scope in self._dirty:  # dropped, evicted (written then) or saved meanwhile
            self._write_partition(scope, partition)

    def _finish_save(self, applied_seq: int) -> None:
        assert self._folder is not None
        self._folder.write_manifest(Manifest(self.dim, self.embedder_name, applied_seq, dict(self._counts)))
        for scope in self._dropped:  # only now that no manifest lists them
            self._folder.remove_partition(scope)
        self._dropped.clear()

    def _check_vectors(self, vectors: np.ndarray, rows: int) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (rows, self.dim):
            raise ValueError(f"expected {rows} vector(s) of dimension {self.dim}, got shape {vectors.shape}")
        return vectors


def _one_omp_thread() -> None:
    faiss.omp_set_num_threads(1)
