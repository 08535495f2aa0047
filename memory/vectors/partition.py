"""One scope's vectors: a FAISS index whose type follows the partition's size, and the label ↔ memory id maps.

Index types (the README's *Design measurements* has the figures they were chosen on):

- up to ``exact_max`` vectors: exact inner-product scan (``IndexFlatIP`` under an ``IndexIDMap``), float vectors;
- above: ``IndexIVFScalarQuantizer`` with 8-bit codes, about a quarter of the bytes. Probing an eighth of its lists
  it finds nearly all of the exact top 10, far faster than the scan; it removes ids natively, so replacing or
  deleting a memory needs no tombstones and no rebuild (HNSW, tried, needs both). It is built when the partition
  crosses ``exact_max`` and rebuilt, with more lists, each time the partition has grown ``retrain_growth`` times.
  Training is slow next to a search, so :func:`build_ivf_from` runs in a background thread on a snapshot while the
  partition keeps serving, and :meth:`Partition.finish_build` swaps the result in, redoing the changes journaled
  meanwhile. The snapshot is a copy of the FAISS index; decoding its vectors is the build thread's work.

Labels are positions in :attr:`Partition.ids` (``None`` where a memory was removed); conversions compact them.
All methods are synchronous and run in the index's worker thread; :mod:`memory.vectors.index_folder` stores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np

FLAT = "flat"
IVF_SQ8 = "ivf-sq8"
_ID_OVERHEAD = 170
"""Bytes a live id costs in the Python maps (str object, dict entry, list slot), measured."""


@dataclass(frozen=True, slots=True)
class PartitionPolicy:
    exact_max: int = 20_000
    """Partitions up to this many vectors are scanned exactly; larger ones use IVF with 8-bit codes."""
    nprobe_fraction: float = 1 / 8
    """Share of the IVF lists searched per query."""
    retrain_growth: float = 4.0
    """Retrain (more lists) once the partition holds this many times the vectors it was trained on."""
    train_points_per_list: int = 40
    """Training sample size per IVF list (FAISS needs at least 39)."""
    train_iterations: int = 10
    """k-means iterations: fewer than FAISS's 25 train much faster with the same recall."""

    def __post_init__(self) -> None:
        # 100 also keeps memory.vectors.base.EXACT_SEARCH_MAX true: an IVF partition turns flat at exact_max // 2.
        if self.exact_max < 100:
            raise ValueError("exact_max must be at least 100 (smaller partitions are too small to cluster)")
        if not 0 < self.nprobe_fraction <= 1:
            raise ValueError("nprobe_fraction must be within (0, 1]")
        if self.retrain_growth <= 1:
            raise ValueError("retrain_growth must be above 1")


class Partition:
    def __init__(
        self,
        dim: int,
        index: faiss.Index | None = None,
        ids: list[str | None] | None = None,
        trained_on: int = 0,
        *,
        labels: dict[str, int] | None = None,
    ) -> None:
        self.dim = dim
        self.index = index if index is not None else _new_flat(dim)
        self.ids: list[str | None] = ids if ids is not None else []
        """Label → memory id; ``None`` marks a removed label."""
        if labels is None:
            if None in self.ids:
                labels = {memory_id: label for label, memory_id in enumerate(self.ids) if memory_id is not None}
            else:  # no removed labels (the usual case after a rebuild): built at C speed
                labels = dict(zip(self.ids, range(len(self.ids))))  # type: ignore[arg-type]
        self.labels: dict[str, int] = labels
        self.trained_on = trained_on
        """IVF: how many vectors it was trained on (0 for flat)."""
        self._journal: set[str] | None = None
        """Ids changed since :meth:`begin_build` (None: no build under way)."""

    @property
    def kind(self) -> str:
        return IVF_SQ8 if isinstance(self.index, faiss.IndexIVF) else FLAT

    @property
    def count(self) -> int:
        return len(self.labels)

    def nbytes(self) -> int:
        """Approximate resident size (index + maps), for the index's memory budget."""
        if isinstance(self.index, faiss.IndexIVF):
            index_bytes = self.index.ntotal * (self.index.code_size + 8) + self.index.nlist * self.dim * 4
        else:
            index_bytes = self.index.ntotal * (self.dim * 4 + 8)
        return index_bytes + 8 * len(self.ids) + _ID_OVERHEAD * self.count

    def snapshot(self) -> Partition:
        """A copy to write out in another thread while this one keeps changing."""
        return Partition(
            self.dim, faiss.clone_index(self.index), list(self.ids), self.trained_on, labels=dict(self.labels)
        )

    # --- changes ---------------------------------------------------------------------------------------------

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        """Insert or replace (a repeated id within ``ids``: the last one wins)."""
        latest = {memory_id: row for row, memory_id in enumerate(ids)}
        if len(latest) < len(ids):
            ids, vectors = list(latest), vectors[list(latest.values())]
        self._remove_labels([self.labels[memory_id] for memory_id in ids if memory_id in self.labels])
        first = len(self.ids)
        self.ids.extend(ids)
        self.labels.update(zip(ids, range(first, first + len(ids)), strict=True))
        self.index.add_with_ids(vectors, np.arange(first, first + len(ids), dtype=np.int64))
        if self._journal is not None:
            self._journal.update(ids)

    def remove(self, ids: list[str], policy: PartitionPolicy) -> int:
        """Drop the ids present; returns how many were. An IVF partition shrunk to half of ``exact_max`` turns
        back into an exact one (no training needed, so at once)."""
        labels = [self.labels[memory_id] for memory_id in dict.fromkeys(ids) if memory_id in self.labels]
        self._remove_labels(labels)
        if self._journal is not None:
            self._journal.update(ids)
        if self.kind == IVF_SQ8 and self.count <= policy.exact_max // 2:
            self._to_flat()
        return len(labels)

    def _remove_labels(self, labels: list[int]) -> None:
        if not labels:
            return
        self.index.remove_ids(faiss.IDSelectorBatch(np.asarray(labels, dtype=np.int64)))
        for label in labels:
            memory_id = self.ids[label]
            self.ids[label] = None
            del self.labels[memory_id]  # type: ignore[arg-type]

    def _to_flat(self) -> None:
        live = sorted(self.labels.values())
        vectors = self._vectors(live)
        self.ids = [self.ids[label] for label in live]
        self.labels = {memory_id: label for label, memory_id in enumerate(self.ids)}  # type: ignore[misc]
        self.index, self.trained_on, self._journal = _new_flat(self.dim), 0, None
        self.index.add_with_ids(vectors, np.arange(len(live), dtype=np.int64))

    # --- IVF builds, off the worker thread -------------------------------------------------------------------

    def build_due(self, policy: PartitionPolicy) -> bool:
        """Time to (re)train an IVF index: flat grown past ``exact_max``, or IVF grown ``retrain_growth`` times."""
        if self._journal is not None:  # a build is under way
            return False
        if self.kind == FLAT:
            return self.count > policy.exact_max
        return self.count >= self.trained_on * policy.retrain_growth

    def begin_build(self) -> tuple[list[str | None], BuildSource]:
        """The live ids, and a snapshot of their vectors for :func:`build_ivf_from` (run elsewhere); changes from
        now on are journaled so that :meth:`finish_build` can apply them to the new index."""
        live = sorted(self.labels.values())
        self._journal = set()
        return [self.ids[label] for label in live], BuildSource(faiss.clone_index(self.index), live)

    def finish_build(self, ids: list[str | None], built: faiss.IndexIVF) -> bool:
        """Swap in the index :func:`build_ivf` made from :meth:`begin_build`'s ``ids`` (labels 0..n-1), redoing
        the changes made since. False (and nothing changed) if the build no longer applies."""
        journal, self._journal = self._journal, None
        if journal is None:
            return False
        trained_on = len(ids)
        labels = {memory_id: label for label, memory_id in enumerate(ids)}
        stale = [labels.pop(memory_id) for memory_id in journal if memory_id in labels]
        if stale:
            built.remove_ids(faiss.IDSelectorBatch(np.asarray(stale, dtype=np.int64)))
            for label in stale:
                ids[label] = None
        current = [memory_id for memory_id in journal if memory_id in self.labels]
        if current:
            vectors = self._vectors([self.labels[memory_id] for memory_id in current])
            first = len(ids)
            built.add_with_ids(vectors, np.arange(first, first + len(current), dtype=np.int64))
            ids.extend(current)
            labels.update(zip(current, range(first, first + len(current)), strict=True))
        self.index, self.ids, self.labels = built, ids, labels  # type: ignore[assignment]
        self.trained_on = trained_on
        return True

    def cancel_build(self) -> None:
        self._journal = None

    def _vectors(self, labels: list[int]) -> np.ndarray:
        return _decode(self.index, labels)

    # --- search ----------------------------------------------------------------------------------------------

    def search(self, query: np.ndarray, k: int, policy: PartitionPolicy) -> list[tuple[str, float]]:
        k = min(k, self.count)
        if k <= 0:
            return []
        if isinstance(self.index, faiss.IndexIVF):
            nprobe = max(1, round(self.index.nlist * policy.nprobe_fraction))
            scores, labels = self.index.search(query, k, params=faiss.SearchParametersIVF(nprobe=nprobe))
        else:
            scores, labels = self.index.search(query, k)
        ids = self.ids
        return [(ids[label], float(score)) for score, label in zip(scores[0], labels[0], strict=True) if label >= 0]


@dataclass(frozen=True, slots=True)
class BuildSource:
    """What an IVF build is made from: a copy of the partition's index as the build began, and the labels to take
    from it (in this order: the new index's labels 0..n-1)."""

    index: faiss.Index
    labels: list[int] = field(repr=False)

    def vectors(self) -> np.ndarray:
        return _decode(self.index, self.labels)


def _new_flat(dim: int) -> faiss.Index:
    return faiss.IndexIDMap(faiss.IndexFlatIP(dim))


def _decode(index: faiss.Index, labels: list[int]) -> np.ndarray:
    """The vectors stored under ``labels`` (IVF: decoded from the 8-bit codes)."""
    wanted = np.asarray(labels, dtype=np.int64)
    if isinstance(index, faiss.IndexIVF):
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        try:
            return index.reconstruct_batch(wanted)
        finally:
            index.set_direct_map_type(faiss.DirectMap.NoMap)
    stored = faiss.vector_to_array(index.id_map)
    position = {int(label): row for row, label in enumerate(stored)}
    rows = faiss.downcast_index(index.index).reconstruct_n(0, len(stored))
    return rows[[position[label] for label in wanted.tolist()]]


def build_ivf_from(dim: int, source: BuildSource, policy: PartitionPolicy) -> faiss.IndexIVF:
    """:func:`build_ivf` on the vectors of ``source``, decoded here (in the build's thread)."""
    return build_ivf(dim, source.vectors(), policy)


def build_ivf(dim: int, vectors: np.ndarray, policy: PartitionPolicy) -> faiss.IndexIVF:
    """Train an IVF index with 8-bit codes on (a sample of) ``vectors`` and add them under labels 0..n-1.
    Pure: runs in a background thread while the partition keeps serving (see :meth:`Partition.begin_build`)."""
    nlist = _nlist(len(vectors))
    index = faiss.IndexIVFScalarQuantizer(
        faiss.IndexFlatIP(dim), dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    index.cp.niter = policy.train_iterations
    sample = min(len(vectors), nlist * policy.train_points_per_list)
    rows = np.random.default_rng(0).choice(len(vectors), sample, replace=False) if sample < len(vectors) else None
    index.train(vectors if rows is None else vectors[np.sort(rows)])
    index.add_with_ids(vectors, np.arange(len(vectors), dtype=np.int64))
    return index


def _nlist(n: int) -> int:
    """The largest power of two within both 4·√n (the usual rule) and n / 39 (FAISS's minimum training points)."""
    nlist = 1
    while nlist * 2 <= min(4 * n**0.5, n / 39):
        nlist *= 2
    return nlist
