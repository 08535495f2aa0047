"""Recall settings as data: weights, candidate counts and budgets, in named presets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class Weights:
    """How much each signal adds to a candidate's score (each signal is scaled to 0..1 first)."""

    dense: float = 1.0
    lexical: float = 1.0
    graph: float = 0.3
    episode: float = 1.0
    """The best first-stage score among the candidates of the same episode (see ``RecallPreset.episode_gap_s``)."""
    time: float = 1.0
    """The memory's time falls in a period the query names ("on 31 July, 2023", "last week"; see
    :mod:`memory.recall.query_cues`)."""
    speaker: float = 0.5
    """The memory's speaker (conversation turns) is named in the query."""
    slot: float = 1.0
    """The memory holds a slot the query asks about ("Where do I live now?", see
    :mod:`memory.recall.slot_questions`)."""
    recency: float = 0.05
    importance: float = 0.05
    use: float = 0.02


@dataclass(frozen=True, slots=True)
class RecallPreset:
    name: str
    top_k: int = 10
    dense_k: int = 200
    """Candidates taken from the vector index."""
    lexical_k: int = 200
    """Candidates taken from BM25."""
    graph_seeds: int = 10
    """How many of the best first-stage candidates seed graph expansion (0 = no graph)."""
    graph_hops: int = 1
    graph_types: tuple[str, ...] | None = ("RELATED_TO", "LEADS_TO")
    """Edge types followed. Shared entities ("MENTIONS") are left out by default: one entity mentioned by most of a
    user's memories (their own name) would pull all of them in. None = every type, shared entities included."""
    episode_gap_s: float = 3600.0
    """Candidates whose times chain together with gaps up to this (seconds) count as one episode — one sitting of
    conversation — and share its best score through ``Weights.episode`` (0 = no episode signal)."""
    rescore_k: int = 40
    """How many first-stage candidates are fetched from the store for the final score."""
    weights: Weights = field(default_factory=Weights)
    dense_floor: float = 0.1
    """Cosine similarity counted as no dense signal at all (MiniLM puts unrelated text around 0..0.1)."""
    recency_half_life_days: float = 30.0
    mmr_lambda: float = 0.8
    """1.0 = pure relevance; lower trades relevance for diversity (near-duplicates pushed down)."""
    token_budget: int = 1500
    """Upper bound on the recalled memories' tokens (estimated); 0 = unlimited."""
    assistant_weight: float = 0.3
    """The share of its score a memory of the assistant's words keeps, unless the query asks about them (see
    :mod:`memory.recall.sources`)."""
    question_weight: float = 0.5
    """The share of its score a question the user asked keeps."""
    cjk_lexical_share: float = 0.3
    """The share of ``Weights.lexical`` a query in Chinese, Japanese or Korean keeps when the multilingual lane reads
    it (see :mod:`memory.recall.multilingual`): character bigrams match much that is not meant, and the lane's
    dense signal reads the meaning (measured: README, *Design measurements*)."""

    def with_overrides(self, **changes: Any) -> RecallPreset:
        return replace(self, **changes)


PRESETS: dict[str, RecallPreset] = {
    preset.name: preset
    for preset in (
        RecallPreset(name="balanced"),
        # Relevance only: the benchmark-facing preset, and what a caller wants when diversity is not a concern.
        RecallPreset(name="precise", mmr_lambda=1.0, weights=Weights(recency=0.0, importance=0.0, use=0.0)),
        RecallPreset(name="broad", top_k=20, dense_k=400, lexical_k=400, graph_seeds=20, graph_hops=2, mmr_lambda=0.6),
        RecallPreset(name="fast", dense_k=40, lexical_k=40, graph_seeds=0, rescore_k=30),
    )
}
DEFAULT_PRESET = "balanced"


def get_preset(name: str | None) -> RecallPreset:
    try:
        return PRESETS[name or DEFAULT_PRESET]
    except KeyError:
        raise ValueError(f"unknown recall preset {name!r}; choose one of {sorted(PRESETS)}") from None
