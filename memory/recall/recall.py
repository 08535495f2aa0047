"""Hybrid recall: dense (FAISS) + lexical (BM25) + graph expansion + episode (a candidate shares the best score of
its conversation's candidates), then recency / importance / use, MMR and a token budget. Returns memories with their
scores and provenance."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from memory.embedding.base import Embedder
from memory.graph.base import GraphStore
from memory.models import Memory, Scope, now
from memory.recall import rankers
from memory.recall.lexical import LexicalIndex, tokenize
from memory.recall.presets import RecallPreset
from memory.vectors.base import VectorIndex

MMR_POOL_FACTOR = 2


@dataclass(frozen=True, slots=True)
class RecalledMemory:
    memory: Memory
    score: float
    signals: dict[str, float]
    """The per-signal values (0..1) the score was built from, for auditing and benchmarks."""

    @property
    def provenance(self) -> tuple[str, ...]:
        return self.memory.source_ids


class Recaller:
    def __init__(self, embedder: Embedder, vectors: VectorIndex, lexical: LexicalIndex, store: GraphStore) -> None:
        self._embedder = embedder
        self._vectors = vectors
        self._lexical = lexical
        self._store = store

    async def recall(
        self,
        scope: Scope,
        query: str,
        preset: RecallPreset,
        *,
        at: float | None = None,
        skip: Callable[[Memory], bool] | None = None,
    ) -> list[RecalledMemory]:
        """The best ``preset.top_k`` memories for ``query``; ``skip`` leaves memories out before they are ranked
        against each other (the proxy skips what the prompt already holds, so it does not cost a place)."""
        if not query.strip() or preset.top_k <= 0:
            return []
        at = now() if at is None else at
        # The query embeds on both cores (see OnnxEmbedder), then the vector search runs in the index's worker
        # thread while BM25 runs here: 1 ms less than BM25 beside a one-core embedding, the search after both.
        query_vector = await self._embedder.embed_one(query)
        search = asyncio.ensure_future(self._vectors.search(scope, query_vector, preset.dense_k))
        await asyncio.sleep(0)  # let the search task hand its work to the index's thread before BM25 takes this one
        lexical_hits = self._lexical.search(scope, query, preset.lexical_k)
        dense_hits = await search

        dense = {memory_id: rankers.cosine_to_unit(sim, preset.dense_floor) for memory_id, sim in dense_hits}
        lexical = rankers.scale_by_max(dict(lexical_hits))
        candidates = rankers.merge_candidates(dense, lexical, {})
        for candidate in candidates.values():
            candidate.score = rankers.first_stage_score(candidate, preset.weights)

        if preset.graph_seeds > 0 and candidates:
            await self._expand_graph(scope, candidates, preset)
        if preset.weights.episode > 0 and preset.episode_gap_s > 0 and candidates:
            self._add_episodes(scope, candidates, preset)

        shortlist = sorted(candidates.values(), key=lambda c: c.score, reverse=True)[: preset.rescore_k]
        memories = {m.id: m for m in await self._store.get_memories(scope, [c.memory_id for c in shortlist])}
        scored: list[rankers.Candidate] = []
        for candidate in shortlist:
            memory = memories.get(candidate.memory_id)
            if memory is None or memory.superseded_by is not None or (
                memory.expires_at is not None and memory.expires_at <= at
            ):
                continue
            if skip is not None and skip(memory):
                continue
            candidate.recency = rankers.recency(
                memory.event_time or memory.created_at, at, preset.recency_half_life_days
            )
            candidate.importance = memory.importance
            candidate.use = rankers.use_signal(memory.use_count)
            candidate.score = rankers.final_score(candidate, preset.weights)
            scored.append(candidate)
        scored.sort(key=lambda c: c.score, reverse=True)
        if preset.mmr_lambda < 1.0:
            # Diversity is decided among the best few only: MMR is quadratic and needs each text's tokens.
            pool = scored[: MMR_POOL_FACTOR * preset.top_k]
            for candidate in pool:
                candidate.tokens = frozenset(tokenize(memories[candidate.memory_id].text))
            chosen = rankers.mmr(pool, preset.top_k, preset.mmr_lambda)
        else:
            chosen = scored[: preset.top_k]
        for candidate in chosen:
            candidate.length = rankers.estimate_tokens(memories[candidate.memory_id].text)
        chosen = rankers.within_budget(chosen, preset.token_budget)
        return [
            RecalledMemory(
                memory=memories[c.memory_id],
                score=c.score,
                signals={
                    "dense": c.dense,
                    "lexical": c.lexical,
                    "graph": c.graph,
                    "episode": c.episode,
                    "recency": c.recency,
                    "importance": c.importance,
                    "use": c.use,
                },
            )
            for c in chosen
        ]

    async def _expand_graph(self, scope: Scope, candidates: dict[str, rankers.Candidate], preset: RecallPreset) -> None:
        seeds = sorted(candidates.values(), key=lambda c: c.score, reverse=True)[: preset.graph_seeds]
        reached = await self._store.neighbours(
            scope, [c.memory_id for c in seeds], max_hops=preset.graph_hops, types=preset.graph_types
        )
        best_seed = max((c.score for c in seeds), default=0.0) or 1.0
        for memory_id, strength in reached.items():
            candidate = candidates.get(memory_id)
            if candidate is None:
                candidate = candidates[memory_id] = rankers.Candidate(memory_id)
            # A neighbour inherits relevance from the seeds, scaled by the edge strength.
            candidate.graph = max(candidate.graph, min(1.0, strength) * min(1.0, best_seed))
            candidate.score = rankers.first_stage_score(candidate, preset.weights)

    def _add_episodes(self, scope: Scope, candidates: dict[str, rankers.Candidate], preset: RecallPreset) -> None:
        """Each candidate's episode signal from the candidates' times (kept by the lexical index: no store read)."""
        ordered = list(candidates.values())
        times = self._lexical.times(scope, [c.memory_id for c in ordered])
        best = rankers.episode_best([c.score for c in ordered], times, preset.episode_gap_s)
        weight = preset.weights.episode
        for candidate, value in zip(ordered, best.tolist(), strict=True):
            candidate.episode = value
            candidate.score += weight * value  # the score held no episode part yet
