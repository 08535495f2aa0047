"""The FAISS vector index: one partition per scope, a memory budget, atomic persistence.

**Isolation by construction.** Each :class:`~memory.models.Scope` has its own FAISS index (see
:mod:`memory.vectors.partition`): a search only ever looks into the caller's partition.

**Threads.** All FAISS work runs in one worker thread, with one OpenMP thread (two made a large flat scan slower on a
2-core machine, not faster); one thread also orders the operations: a search sees every add awaited before it.
What that thread keeps, the partitions and their state, is a :class:`~memory.vectors.partition_table.PartitionTable`;
this class is its asynchronous face.
IVF training runs in a second thread (:mod:`memory.vectors.ivf_builds`); partition files are read and written in a
third (:class:`~memory.vectors.index_folder.PartitionFiles`), so a search whose partition must be read back, or a
partition being evicted or saved, does not hold up other scopes' searches (``memproxy bench latency``'s ``reload``).

**Memory.** With a ``path``, partitions are kept in RAM within ``resident_bytes``; the least recently used ones are
written out (if changed; :mod:`memory.vectors.evicted` while that lasts) and read back on their next use
(``memproxy bench latency`` reports the process's RSS with a million memories).

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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from memory.models import Scope
from memory.vectors.base import VectorIndex
from memory.vectors.index_folder import IndexFolder, IndexLoadError, PartitionFiles
from memory.vectors.ivf_builds import IvfBuilds, one_omp_thread
from memory.vectors.partition import PartitionPolicy
from memory.vectors.partition_table import PartitionTable

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
        policy = PartitionPolicy(exact_max=exact_max, nprobe_fraction=nprobe_fraction)
        self._folder = IndexFolder(Path(path)) if path is not None else None
        self._files = PartitionFiles(self._folder, dim) if self._folder is not None else None
        self._loads: dict[Scope, asyncio.Future[None]] = {}
        """Reads under way for searches (event-loop side): concurrent searches of one scope share one."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faiss", initializer=one_omp_thread)
        builds = IvfBuilds(dim, policy)
        self.load_error: str | None = None
        """Set by :meth:`open` when the saved index could not be used and a fresh one was started instead."""
        manifest = None
        if self._folder is not None:
            try:
                manifest = self._folder.open(dim=dim, embedder=embedder_name, fresh=fresh)
            except BaseException:
                self._executor.shutdown(wait=False)
                builds.close()
                assert self._files is not None
                self._files.close()
                raise
            if manifest is not None:
                self.applied_seq = manifest.applied_seq
        self._table = PartitionTable(
            dim,
            policy,
            builds,
            self._files,
            resident_bytes=resident_bytes,
            counts=manifest.counts if manifest is not None else None,
        )
        """The partitions; only the worker thread (:attr:`_executor`) calls its methods."""

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
            await self._run(self._table.add, scope, list(ids), vectors)

    async def remove(self, scope: Scope, ids: Sequence[str]) -> None:
        if ids:
            await self._run(self._table.remove, scope, list(ids))

    async def drop_scope(self, scope: Scope) -> None:
        await self._run(self._table.drop, scope)

    async def search(self, scope: Scope, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        query = self._check_vectors(np.asarray(query).reshape(1, -1), 1)
        if k <= 0 or self.count(scope) == 0:
            return []
        if self._files is not None and not self.is_resident(scope):  # a hint; the worker thread decides
            await self._load(scope)
        return await self._run(self._table.search, scope, query, k)

    def count(self, scope: Scope) -> int:
        return self._table.counts.get(scope, 0)

    def is_resident(self, scope: Scope) -> bool:
        return scope in self._table.resident

    async def clear(self) -> None:
        """Drop every partition (before a rebuild); ``applied_seq`` goes back to 0."""
        await self._run(self._table.clear)
        self.applied_seq = 0

    async def settle(self) -> None:
        """Wait for the IVF builds under way and swap them in."""
        builds = self._table.builds
        while len(builds):
            futures = [asyncio.wrap_future(future) for future in builds.futures()]
            await asyncio.gather(*futures, return_exceptions=True)
            await self._run(self._table.install_finished_builds)

    async def save(self) -> None:
        """Write the changed partitions and then the manifest. Each partition is copied in the index's thread and
        written from the copy in the I/O thread, one at a time, so searches go on meanwhile.
        The manifest's ``applied_seq`` is the one before the first partition was copied: changes after it are
        replayed on load, and replaying an add or a removal that a file already holds changes nothing."""
        if self._folder is None:
            return
        applied_seq = self.applied_seq
        for scope in await self._run(self._table.dirty_resident):
            written = await self._run(self._table.save_partition, scope)
            if written is None:
                continue
            try:
                await asyncio.wrap_future(written)
            except BaseException:
                await self._run(self._table.mark_dirty, scope)
                raise
        await self._run(self._table.finish_save, self.embedder_name, applied_seq)

    async def close(self) -> None:
        """Finish queued work and stop the threads (does not save; a build under way is abandoned)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._executor.shutdown, True)
        await loop.run_in_executor(None, self._table.builds.close)
        if self._files is not None:
            await loop.run_in_executor(None, self._files.close)  # evicted partitions' writes land

    # --- beyond the interface --------------------------------------------------------------------------------

    def scopes(self) -> list[Scope]:
        """Scopes with at least one vector."""
        return [scope for scope, count in list(self._table.counts.items()) if count]

    async def stats(self) -> dict[str, int]:
        """Partitions and vectors, in all and resident (with the estimated bytes), for metrics and benchmarks."""
        return await self._run(self._table.stats)

    # --- threads ---------------------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` in the worker thread, after everything handed to it before."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

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
            ticket = await self._run(self._table.load_ticket, scope)
            if ticket is not None:
                partition = await self._files.read_beside(scope)
                await self._run(self._table.adopt, scope, partition, ticket)
        except Exception as exc:  # the search's own read reports it
            log.debug("reading the vector partition of %r beside the index failed: %s", scope.key, exc)

    def _check_vectors(self, vectors: np.ndarray, rows: int) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (rows, self.dim):
            raise ValueError(f"expected {rows} vector(s) of dimension {self.dim}, got shape {vectors.shape}")
        return vectors
