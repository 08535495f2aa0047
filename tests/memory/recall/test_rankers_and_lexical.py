"""Recall's pure parts: BM25 lexical index (incl. CJK), rankers, presets. No database, no model."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory.models import Scope
from memory.recall import rankers
from memory.recall.lexical import LexicalIndex, tokenize
from memory.recall.presets import PRESETS, get_preset

ALICE = Scope("acme", "alice")
BOB = Scope("acme", "bob")
OTHER_TENANT_ALICE = Scope("globex", "alice")


def test_tokenize_english_and_japanese() -> None:
    assert tokenize("Caroline's paintings of the sunrise") == ["caroline", "painting", "sunrise"]
    assert "ポチ" in tokenize("私の犬はポチです") and "札幌" in tokenize("札幌に住んでいます")
    assert tokenize("the and of") == []


@given(st.text(max_size=200))
def test_tokenize_never_fails(text: str) -> None:
    assert all(token for token in tokenize(text))


def test_bm25_ranks_the_matching_memory_first() -> None:
    index = LexicalIndex()
    index.add(ALICE, "m1", "I adopted a dog called Pochi last spring")
    index.add(ALICE, "m2", "We talked about the weather")
    index.add(ALICE, "m3", "Pochi loves long walks in Sapporo")
    hits = index.search(ALICE, "what is my dog called?", 10)
    assert hits[0][0] == "m1"
    assert {memory_id for memory_id, _ in index.search(ALICE, "Pochi", 10)} == {"m1", "m3"}
    assert index.search(ALICE, "札幌", 10) == []


def test_japanese_memories_are_found_by_japanese_queries() -> None:
    index = LexicalIndex()
    index.add(ALICE, "m1", "私の犬はポチです")
    index.add(ALICE, "m2", "札幌に住んでいます")
    assert index.search(ALICE, "犬の名前は？", 5)[0][0] == "m1"
    assert index.search(ALICE, "どこに住んでいますか 札幌", 5)[0][0] == "m2"


def test_replace_and_remove() -> None:
    index = LexicalIndex()
    index.add(ALICE, "m1", "apples and pears")
    index.add(ALICE, "m1", "bananas only")
    assert index.search(ALICE, "apples", 5) == []
    assert index.search(ALICE, "bananas", 5)[0][0] == "m1"
    index.remove(ALICE, ["m1"])
    assert index.search(ALICE, "bananas", 5) == [] and index.count(ALICE) == 0


def test_compaction_keeps_results() -> None:
    index = LexicalIndex()
    for i in range(3000):
        index.add(ALICE, f"m{i}", f"note number {i} about topic{i % 7}")
    index.remove(ALICE, [f"m{i}" for i in range(0, 3000, 2)])  # > 30% dead → compacted
    hits = index.search(ALICE, "topic3", 2000)
    assert {memory_id for memory_id, _ in hits} == {f"m{i}" for i in range(1, 3000, 2) if i % 7 == 3}


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([ALICE, BOB, OTHER_TENANT_ALICE]), st.integers(0, 30), st.booleans()),
        max_size=60,
    )
)
def test_a_search_never_returns_another_scopes_memory(operations) -> None:
    index = LexicalIndex()
    owner: dict[str, Scope] = {}
    for scope, n, remove in operations:
        memory_id = f"{scope.tenant}-{scope.user}-{n}"
        if remove:
            index.remove(scope, [memory_id])
        else:
            index.add(scope, memory_id, f"shared words token{n % 5}")
            owner[memory_id] = scope
    for scope in (ALICE, BOB, OTHER_TENANT_ALICE):
        for memory_id, _ in index.search(scope, "shared words token1 token2", 100):
            assert owner[memory_id] == scope


WORDS = ["tea", "rain", "dog", "walk", "kyoto", "cello", "bread", "train"]


def brute_force_bm25(docs: dict[str, str], query: str, k1: float, b: float) -> dict[str, float]:
    """BM25 written out term by term over the live documents, as the reference for the index's vectorised search."""
    tokens = {memory_id: tokenize(text) for memory_id, text in docs.items()}
    average = max(sum(len(t) for t in tokens.values()) / max(len(tokens), 1), 1.0)
    scores: dict[str, float] = {}
    for term in set(tokenize(query)):
        df = sum(term in t for t in tokens.values())
        if df == 0:
            continue
        idf = math.log(1.0 + (len(tokens) - df + 0.5) / (df + 0.5))
        for memory_id, t in tokens.items():
            tf = t.count(term)
            if tf:
                norm = k1 * (1.0 - b + b * len(t) / average)
                scores[memory_id] = scores.get(memory_id, 0.0) + idf * tf * (k1 + 1.0) / (tf + norm)
    return scores


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.lists(st.sampled_from(WORDS), min_size=1, max_size=6), st.booleans()), max_size=80),
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=3),
    st.integers(1, 12),
)
def test_search_returns_the_exact_bm25_top_k(documents, query_words, k) -> None:
    # Many ties (few words), removed documents (masked out), k below and above the number of hits.
    index = LexicalIndex()
    live: dict[str, str] = {}
    for n, (words, remove) in enumerate(documents):
        index.add(ALICE, f"m{n}", " ".join(words))
        live[f"m{n}"] = " ".join(words)
        if remove:
            index.remove(ALICE, [f"m{n}"])
            del live[f"m{n}"]
    query = " ".join(query_words)
    expected = brute_force_bm25(live, query, index.k1, index.b)
    hits = index.search(ALICE, query, k)
    assert len(hits) == min(k, sum(score > 0 for score in expected.values()))
    assert all(memory_id in live for memory_id, _ in hits)
    assert [score for _, score in hits] == sorted((score for _, score in hits), reverse=True)
    for memory_id, score in hits:
        assert score == pytest.approx(expected[memory_id], rel=1e-4)
    if hits:  # nothing left out scores above the last one returned
        assert all(score <= hits[-1][1] * (1 + 1e-4) for m, score in expected.items() if m not in dict(hits))


def test_mmr_pushes_near_duplicates_down() -> None:
    a = rankers.Candidate("a", score=1.0, tokens=frozenset({"dog", "pochi", "sapporo"}))
    a2 = rankers.Candidate("a2", score=0.99, tokens=frozenset({"dog", "pochi", "sapporo"}))
    b = rankers.Candidate("b", score=0.8, tokens=frozenset({"cat", "tama"}))
    assert [c.memory_id for c in rankers.mmr([a, a2, b], 2, 0.5)] == ["a", "b"]
    assert [c.memory_id for c in rankers.mmr([a, a2, b], 2, 1.0)] == ["a", "a2"]


def test_budget_recency_and_scaling() -> None:
    cands = [rankers.Candidate(str(i), length=400) for i in range(5)]
    assert len(rankers.within_budget(cands, 1000)) == 2
    assert len(rankers.within_budget(cands, 0)) == 5
    assert rankers.within_budget([rankers.Candidate("big", length=5000)], 100)[0].memory_id == "big"
    day = rankers.SECONDS_PER_DAY
    assert rankers.recency(0.0, 30 * day, 30) == pytest.approx(0.5)
    assert rankers.recency(None, 0, 30) == 0.0
    assert rankers.use_signal(0) == 0.0 and rankers.use_signal(100) == 1.0
    assert rankers.estimate_tokens("札幌に住んでいます") == 9


def test_presets_are_data() -> None:
    assert get_preset(None).name == "balanced"
    assert set(PRESETS) >= {"balanced", "precise", "broad", "fast"}
    assert get_preset("fast").with_overrides(top_k=3).top_k == 3
    with pytest.raises(ValueError, match="unknown recall preset"):
        get_preset("nope")
