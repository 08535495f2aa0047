"""Pure functions over candidate lists: fusion, episodes, time and importance signals, MMR, token budget.
No I/O, no database: each is testable on plain lists."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from memory.recall.presets import Weights

SECONDS_PER_DAY = 86_400.0


@dataclass(slots=True)
class Candidate:
    memory_id: str
    dense: float = 0.0
    lexical: float = 0.0
    graph: float = 0.0
    episode: float = 0.0
    time: float = 0.0
    speaker: float = 0.0
    slot: float = 0.0
    recency: float = 0.0
    importance: float = 0.0
    use: float = 0.0
    score: float = 0.0
    tokens: frozenset[str] = field(default_factory=frozenset)
    length: int = 0


def first_stage_score(candidate: Candidate, weights: Weights) -> float:
    return (
        weights.dense * candidate.dense
        + weights.lexical * candidate.lexical
        + weights.graph * candidate.graph
        + weights.episode * candidate.episode
    )


def episode_best(scores: Sequence[float], times: Sequence[float], gap_s: float) -> np.ndarray:
    """For each candidate, the best score among the candidates of its episode, scaled by the best score overall (0..1).

    An episode is read off the candidates' times: sorted by time, candidates no more than ``gap_s`` apart chain into
    one (the turns of one conversation). A candidate without a time (NaN) is an episode of its own. A memory of an
    episode that matches the query well is more likely to matter than an equally scored stray one elsewhere."""
    values = np.asarray(scores, dtype=np.float64)
    at = np.asarray(times, dtype=np.float64)
    best = values.copy()
    timed = np.flatnonzero(~np.isnan(at))
    if len(timed) > 1:
        order = timed[np.argsort(at[timed], kind="stable")]
        starts = np.flatnonzero(np.r_[True, np.diff(at[order]) > gap_s])
        sizes = np.diff(np.r_[starts, len(order)])
        best[order] = np.repeat(np.maximum.reduceat(values[order], starts), sizes)
    top = best.max(initial=0.0)
    return np.clip(best / top, 0.0, 1.0) if top > 0 else np.zeros_like(best)


def final_score(candidate: Candidate, weights: Weights) -> float:
    return (
        first_stage_score(candidate, weights)
        + weights.time * candidate.time
        + weights.speaker * candidate.speaker
        + weights.slot * candidate.slot
        + weights.recency * candidate.recency
        + weights.importance * candidate.importance
        + weights.use * candidate.use
    )


def recency(timestamp: float | None, now: float, half_life_days: float) -> float:
    """1.0 for now, 0.5 one half-life ago; 0 without a time."""
    if timestamp is None or half_life_days <= 0:
        return 0.0
    age_days = max(0.0, now - timestamp) / SECONDS_PER_DAY
    return math.pow(0.5, age_days / half_life_days)


def use_signal(use_count: int, saturation: int = 20) -> float:
    """log-scaled use count, 1.0 at ``saturation`` uses and above."""
    return min(1.0, math.log1p(max(use_count, 0)) / math.log1p(saturation))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def mmr(
    candidates: Sequence[Candidate],
    k: int,
    lambda_: float,
    similarity: Callable[[Candidate, Candidate], float] = lambda x, y: jaccard(x.tokens, y.tokens),
) -> list[Candidate]:
    """Maximal marginal relevance over candidates sorted by score: greedy, ``lambda_·score − (1−λ)·max_sim``."""
    if lambda_ >= 1.0 or len(candidates) <= 1:
        return list(candidates[:k])
    pool = list(candidates)
    top = max((c.score for c in pool), default=1.0) or 1.0
    # Each candidate's highest similarity to anything chosen so far, updated once per pick (not recomputed).
    redundancy = [0.0] * len(pool)
    chosen: list[Candidate] = []
    while pool and len(chosen) < k:
        best_index, best_value = 0, -math.inf
        for index, candidate in enumerate(pool):
            value = lambda_ * candidate.score / top - (1.0 - lambda_) * redundancy[index]
            if value > best_value:
                best_index, best_value = index, value
        picked = pool.pop(best_index)
        redundancy.pop(best_index)
        chosen.append(picked)
        if len(chosen) == k:
            break
        for index, candidate in enumerate(pool):
            redundancy[index] = max(redundancy[index], similarity(candidate, picked))
    return chosen


def within_budget(candidates: Iterable[Candidate], budget: int) -> list[Candidate]:
    """Keep candidates in order while their estimated tokens fit; 0 = no budget. The first one always fits."""
    if budget <= 0:
        return list(candidates)
    kept: list[Candidate] = []
    used = 0
    for candidate in candidates:
        if kept and used + candidate.length > budget:
            continue
        kept.append(candidate)
        used += candidate.length
    return kept


def estimate_tokens(text: str) -> int:
    """≈ tokens of a BPE tokenizer: 4 characters per token for Latin text, 1 per character for CJK."""
    cjk = sum(1 for ch in text if "\u3040" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af")
    return max(1, cjk + (len(text) - cjk + 3) // 4)
