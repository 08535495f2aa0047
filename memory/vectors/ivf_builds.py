"""IVF (re)builds under way: trained in a background thread of their own while the partition keeps serving.

A build starts when a partition is due one (:meth:`~memory.vectors.partition.Partition.build_due`), from a snapshot
of it (:meth:`~memory.vectors.partition.Partition.begin_build`), and is swapped in the next time the index's worker
thread touches the partition after it is done (:meth:`~memory.vectors.partition.Partition.finish_build`). One build
per scope at most. Only the index's worker thread calls these methods.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor

import faiss

from memory.models import Scope
from memory.threads import background
from memory.vectors.partition import Partition, PartitionPolicy, build_ivf_from

log = logging.getLogger(__name__)


class IvfBuilds:
    def __init__(self, dim: int, policy: PartitionPolicy) -> None:
        self._dim = dim
        self._policy = policy
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faiss-build", initializer=background(one_omp_thread))
        self._under_way: dict[Scope, tuple[Future[faiss.IndexIVF], list[str | None]]] = {}
        """Each build's future, with the snapshot ids it was built from."""

    def __len__(self) -> int:
        return len(self._under_way)

    def scopes(self) -> list[Scope]:
        return list(self._under_way)

    def futures(self) -> list[Future[faiss.IndexIVF]]:
        return [future for future, _ in list(self._under_way.values())]

    def done(self, scope: Scope) -> bool:
        return scope in self._under_way and self._under_way[scope][0].done()

    def start(self, scope: Scope, partition: Partition) -> None:
        """Start the scope's build if one is due and none is under way."""
        if scope not in self._under_way and partition.build_due(self._policy):
            ids, source = partition.begin_build()
            self._under_way[scope] = (self._thread.submit(build_ivf_from, self._dim, source, self._policy), ids)

    def finish(self, scope: Scope, partition: Partition) -> bool:
        """Swap the scope's build into ``partition`` if it is done; True if the partition changed."""
        pending = self._under_way.get(scope)
        if pending is None or not pending[0].done():
            return False
        del self._under_way[scope]
        future, ids = pending
        try:
            built = future.result()
        except Exception:
            log.exception("building an IVF index for scope %r failed", scope.key)
            partition.cancel_build()
            return False
        return partition.finish_build(ids, built)

    def cancel(self, scope: Scope, partition: Partition | None = None) -> None:
        """Forget the scope's build (the partition left RAM or was dropped); ``partition`` stops journaling."""
        if self._under_way.pop(scope, None) is not None and partition is not None:
            partition.cancel_build()

    def close(self) -> None:
        """Stop the thread; a build under way is abandoned."""
        self._thread.shutdown(wait=True, cancel_futures=True)


def one_omp_thread() -> None:
    faiss.omp_set_num_threads(1)
