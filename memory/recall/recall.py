"""Hybrid recall: dense (FAISS) + lexical (BM25) + graph expansion + episode (a candidate shares the best score of
its conversation's candidates), then the query's cues (a period or a speaker it names), recency / importance / use,
MMR and a token budget. Returns memories with their scores and provenance."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from memory.embedding.base import Embedder
from memory.graph.base import GraphStore
from memory.models import Memory, Scope, now
from memory.recall import rankers, sources
from memory.recall.first_stage import FirstStage
from memory.recall.lexical import LexicalIndex, has_cjk, tokenize
from memory.recall.multilingual import MultilingualLane, merge
from memory.recall.presets import RecallPreset
from memory.recall.query_cues import named_speakers, time_windows
from memory.recall.slot_questions import asked_slots, holds_asked
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
    def __init__(
        self,
        embedder: Embedder,
        vectors: VectorIndex,
        lexical: LexicalIndex,
        store: GraphStore,
        lane: MultilingualLane | None = None,
    ) -> None:
        self._embedder = embedder
        self._vectors = vectors
        self._lexical = lexical
        self._store = store
        self._lane = lane

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
        # The query is embedded in the embedder's thread (onnxruntime lets go of the interpreter) while BM25 runs
        # here; then the vector search (faster, measured with `memproxy bench latency`, than BM25 beside the search).
        # A user who writes CJK text is in the multilingual lane (see memory.recall.multilingual): their query is
        # embedded by the lane's model too (alone, for a CJK query); anyone else's exactly as before.
        lane = self._lane if self._lane is not None and self._lane.holds(scope) else None
        embedding: asyncio.Future[Any] = asyncio.ensure_future(
            self._embedder.embed_one(query) if lane is None else _lane_query(self._embedder, lane, query)
        )
        try:
            await asyncio.sleep(0)  # the embedding task hands its work to the embedder's thread before BM25 runs
            asked = asked_slots(query) if preset.weights.slot else ()
            lexical_hits = self._lexical.search(scope, query, preset.lexical_k, tags=asked)
            query_vector = await embedding
        except BaseException:
            embedding.cancel()
            raise
        if lane is None:
            dense_hits = await self._vectors.search(scope, query_vector, preset.dense_k)
        else:
            dense_hits = await self._lane_hits(scope, lane, query_vector, preset.dense_k)
            if query_vector[0] is None:  # a CJK query, read by the lane's model
                preset = preset.with_overrides(
                    weights=replace(preset.weights, lexical=preset.weights.lexical * preset.cjk_lexical_share)
                )

        asks_assistant = sources.about_assistant(query)
        by_kind = sources.kind_weights(
            assistant_weight=preset.assistant_weight, question_weight=preset.question_weight,
            about_assistant=asks_assistant,
        )  # fmt: skip
        first = FirstStage(
            dense_hits, lexical_hits, dense_floor=preset.dense_floor, weights=preset.weights,
            known=lambda ids: self._known(scope, ids, by_kind),
        )  # fmt: skip
        if preset.graph_seeds > 0 and len(first):
            seeds = first.best(preset.graph_seeds)
            reached = await self._store.neighbours(
                scope, [first.ids[row] for row in seeds], max_hops=preset.graph_hops, types=preset.graph_types
            )
            first.add_graph(reached, float(first.score[seeds[0]]) or 1.0)
        if preset.weights.episode > 0 and preset.episode_gap_s > 0 and len(first):
            first.add_episodes(preset.episode_gap_s)

        shortlist = [first.candidate(row) for row in first.best(preset.rescore_k)]
        memories = {m.id: m for m in await self._store.get_memories(scope, [c.memory_id for c in shortlist])}
        # The query's cues, read once; a zero weight skips reading them.
        windows = time_windows(query, at) if preset.weights.time else []
        speakers = (
            named_speakers(query, {m.metadata.get("speaker") for m in memories.values()})
            if preset.weights.speaker
            else set()
        )
        query_tokens: set[str] | None = None  # tokenised only if a question memory is among the shortlist
        kind_share = by_kind.tolist()
        scored: list[rankers.Candidate] = []
        for candidate in shortlist:
            memory = memories.get(candidate.memory_id)
            if memory is None or memory.superseded_by is not None or (
                memory.expires_at is not None and memory.expires_at <= at
            ):
                continue
            if skip is not None and skip(memory):
                continue
            if memory.metadata.get(sources.QUESTION) is True:
                query_tokens = set(tokenize(query)) if query_tokens is None else query_tokens
                if sources.echoes(tokenize(memory.text), query_tokens):
                    continue  # the user asking this before: never the answer to itself
            when = memory.event_time or memory.created_at
            candidate.time = float(any(window.matches(when) for window in windows))
            candidate.speaker = float(memory.metadata.get("speaker") in speakers)
            candidate.slot = float(holds_asked(memory.metadata.get("slot"), asked))
            candidate.recency = rankers.recency(when, at, preset.recency_half_life_days)
            candidate.importance = memory.importance
            candidate.use = rankers.use_signal(memory.use_count)
            candidate.score = rankers.final_score(candidate, preset.weights) * kind_share[sources.kind_of(memory)]
            scored.append(candidate)
        scored.sort(key=lambda c: c.score, reverse=True)
        if preset.mmr_lambda < 1.0:
            # Diversity is decided among the best few only: MMR is quadratic and needs each text's tokens.
            pool = scored[: MMR_POOL_FACTOR * preset.top_k]
            for candidate in pool:
                candidate.tokens = frozenset(tokenize(memories[candidate.memory_id].text))
            # MMR decides which memories; they come back in the order of the score that ranked them.
            chosen = sorted(rankers.mmr(pool, preset.top_k, preset.mmr_lambda), key=lambda c: c.score, reverse=True)
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
                    "time": c.time,
                    "speaker": c.speaker,
                    "slot": c.slot,
                    "recency": c.recency,
                    "importance": c.importance,
                    "use": c.use,
                },
            )
            for c in chosen
        ]

    async def _lane_hits(
        self, scope: Scope, lane: MultilingualLane, vectors: tuple[np.ndarray | None, np.ndarray], k: int
    ) -> list[tuple[str, float]]:
        primary, multilingual = vectors
        if primary is None:
            return await lane.search(scope, multilingual, k)
        ours, theirs = await asyncio.gather(self._vectors.search(scope, primary, k), lane.search(scope, multilingual, k))
        return merge(ours, theirs)

    def _known(self, scope: Scope, memory_ids: Sequence[str], by_kind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The candidates' times and source shares, as the lexical index keeps them (no store read)."""
        times, kinds = self._lexical.times_and_kinds(scope, memory_ids)
        return times, by_kind[kinds]


async def _lane_query(embedder: Embedder, lane: MultilingualLane, query: str) -> tuple[np.ndarray | None, np.ndarray]:
    """The query's vectors for a user in the lane: the lane's alone for a query in CJK script (the main model
    cannot read it), both otherwise, each on its own model's thread."""
    multilingual = await lane.embedder()
    if has_cjk(query):
        return None, await multilingual.embed_one(query)
    primary, theirs = await asyncio.gather(embedder.embed_one(query), multilingual.embed_one(query))
    return primary, theirs
