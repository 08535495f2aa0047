"""The first stage of recall as numpy columns: every candidate from the vector index and BM25, with its dense,
lexical, graph and episode signals and the weighted score, before anything is fetched from the store.

A few hundred candidates per recall are scored here; only the shortlist (``rescore_k``) becomes
:class:`~memory.recall.rankers.Candidate` objects. Keeping the columns in arrays instead of one Python object per
candidate takes about a millisecond off every recall at 100k memories.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from memory.recall import rankers
from memory.recall.presets import Weights


Known = Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]]
"""Memory ids → (their times, NaN where unknown; each one's share of its score for whose words it holds, see
:mod:`memory.recall.sources`), read in one pass over the ids (a lookup per candidate, not one per column)."""


class FirstStage:
    def __init__(
        self,
        dense_hits: Sequence[tuple[str, float]],
        lexical_hits: Sequence[tuple[str, float]],
        *,
        dense_floor: float,
        weights: Weights,
        known: Known | None = None,
    ) -> None:
        """``dense_hits``: (id, cosine similarity); ``lexical_hits``: (id, BM25 score > 0). Dense is mapped onto 0..1
        above ``dense_floor``; lexical is scaled by the best score. ``known`` gives each candidate's time and source share;
        the share scales its score before graph seeds and episodes are read off the scores (None: times unknown,
        every candidate in full)."""
        self.weights = weights
        self._known = known
        self.ids: list[str] = [memory_id for memory_id, _ in dense_hits]
        self.row: dict[str, int] = {memory_id: row for row, memory_id in enumerate(self.ids)}
        extra = [memory_id for memory_id, _ in lexical_hits if memory_id not in self.row]
        for memory_id in extra:
            self.row[memory_id] = len(self.ids)
            self.ids.append(memory_id)
        n = len(self.ids)
        self.dense = np.zeros(n, dtype=np.float64)
        if dense_hits and dense_floor < 1.0:
            similarity = np.fromiter((s for _, s in dense_hits), dtype=np.float64, count=len(dense_hits))
            self.dense[: len(dense_hits)] = np.maximum(0.0, (similarity - dense_floor) / (1.0 - dense_floor))
        self.lexical = np.zeros(n, dtype=np.float64)
        if lexical_hits:
            rows = np.fromiter((self.row[m] for m, _ in lexical_hits), dtype=np.int64, count=len(lexical_hits))
            values = np.fromiter((s for _, s in lexical_hits), dtype=np.float64, count=len(lexical_hits))
            top = values.max()
            if top > 0:
                self.lexical[rows] = np.maximum(values, 0.0) / top
        self.graph = np.zeros(n, dtype=np.float64)
        self.episode = np.zeros(n, dtype=np.float64)
        self.times, self.source = self._look_up(self.ids)
        self._raw = weights.dense * self.dense + weights.lexical * self.lexical
        self.score = self._raw * self.source
        """The weighted signals, times the source's share."""

    def __len__(self) -> int:
        return len(self.ids)

    def best(self, k: int) -> list[int]:
        """Rows of the ``k`` best scores, best first."""
        if k <= 0 or not self.ids:
            return []
        score = self.score
        if k < len(self.ids):
            rows = np.argpartition(-score, k - 1)[:k]
        else:
            rows = np.arange(len(self.ids))
        return rows[np.argsort(-score[rows], kind="stable")].tolist()

    def add_graph(self, reached: Mapping[str, float], seed_score: float) -> None:
        """Memories reached from the seeds through edges of ``strength``: each inherits relevance from the best seed
        (``seed_score``), scaled by the strength. A memory not yet a candidate becomes one."""
        if not reached:
            return
        new = [memory_id for memory_id in reached if memory_id not in self.row]
        if new:
            for memory_id in new:
                self.row[memory_id] = len(self.ids)
                self.ids.append(memory_id)
            pad = np.zeros(len(new), dtype=np.float64)
            self.dense, self.lexical, self.graph, self.episode, self._raw = (
                np.concatenate([column, pad])
                for column in (self.dense, self.lexical, self.graph, self.episode, self._raw)
            )
            times, source = self._look_up(new)
            self.times = np.concatenate([self.times, times])
            self.source = np.concatenate([self.source, source])
        rows = np.fromiter((self.row[m] for m in reached), dtype=np.int64, count=len(reached))
        strength = np.fromiter(reached.values(), dtype=np.float64, count=len(reached))
        inherited = np.minimum(1.0, strength) * min(1.0, seed_score)
        before = self.graph[rows]
        self.graph[rows] = np.maximum(before, inherited)
        self._raw[rows] += self.weights.graph * (self.graph[rows] - before)
        self.score = self._raw * self.source

    def add_episodes(self, gap_s: float) -> None:
        """The episode signal from the candidates' times, as ``known`` gave them (see :func:`rankers.episode_best`)."""
        self.episode = rankers.episode_best(self.score, self.times, gap_s)
        self._raw = self._raw + self.weights.episode * self.episode
        self.score = self._raw * self.source

    def candidate(self, row: int) -> rankers.Candidate:
        return rankers.Candidate(
            self.ids[row],
            dense=float(self.dense[row]),
            lexical=float(self.lexical[row]),
            graph=float(self.graph[row]),
            episode=float(self.episode[row]),
            score=float(self.score[row]),
        )

    def _look_up(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if self._known is None or not ids:
            return np.full(len(ids), np.nan, dtype=np.float64), np.ones(len(ids), dtype=np.float64)
        times, source = self._known(ids)
        return np.asarray(times, dtype=np.float64), np.asarray(source, dtype=np.float64)
