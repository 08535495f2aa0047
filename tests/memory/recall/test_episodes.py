"""The episode signal: candidates of one sitting of conversation share its best score. The pure function on plain
lists, the times the lexical index keeps for it, and recall end to end on the real engine (ONNX MiniLM, SQLite)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from memory.engine import MemoryEngine
from memory.models import Scope
from memory.recall import rankers
from memory.recall.lexical import LexicalIndex
from memory.recall.presets import get_preset

ALICE = Scope("acme", "alice")
HOUR = 3600.0
DAY = 86_400.0


def test_episode_best_shares_the_best_score_within_chained_times() -> None:
    # Two episodes: 0, 1800, 3000 chain within an hour; 2 days later is another one. NaN stands alone.
    scores = [0.2, 1.0, 0.4, 0.5, 0.3]
    times = [0.0, 1800.0, 3000.0, 2 * DAY, math.nan]
    best = rankers.episode_best(scores, times, HOUR)
    assert best.tolist() == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.3])


def test_episode_best_chains_but_does_not_jump_gaps() -> None:
    times = [0.0, 0.9 * HOUR, 1.8 * HOUR, 3.0 * HOUR]  # the last one is 1.2 h after the one before it
    best = rankers.episode_best([0.1, 0.2, 0.8, 0.4], times, HOUR)
    assert best.tolist() == pytest.approx([1.0, 1.0, 1.0, 0.5])


def test_episode_best_edge_cases() -> None:
    assert rankers.episode_best([], [], HOUR).tolist() == []
    assert rankers.episode_best([0.0, 0.0], [0.0, 1.0], HOUR).tolist() == [0.0, 0.0]
    assert rankers.episode_best([0.5, 0.25], [math.nan, math.nan], HOUR).tolist() == [1.0, 0.5]
    assert rankers.episode_best([0.5], [7.0], HOUR).tolist() == [1.0]


def test_lexical_index_keeps_times_through_replace_and_compaction() -> None:
    index = LexicalIndex()
    index.add(ALICE, "a", "first note", 100.0)
    index.add(ALICE, "b", "second note")
    index.add(ALICE, "a", "first note edited", 200.0)
    times = index.times(ALICE, ["a", "b", "missing"])
    assert times[0] == 200.0 and np.isnan(times[1]) and np.isnan(times[2])
    assert np.isnan(index.times(Scope("acme", "bob"), ["a"])).all()
    for i in range(2000):
        index.add(ALICE, f"m{i}", f"note {i}", float(i))
    index.remove(ALICE, [f"m{i}" for i in range(0, 2000, 2)])  # > 30% dead → compacted
    assert index.times(ALICE, ["m1", "m1999", "a"]).tolist() == [1.0, 1999.0, 200.0]


def test_times_and_kinds_are_read_in_one_pass() -> None:
    index = LexicalIndex()
    index.add(ALICE, "u", "I live in Osaka", 10.0)
    index.add(ALICE, "r", "Osaka is lovely", 11.0, kind=1)
    index.add(ALICE, "q", "Where do I live?", kind=2)
    ids = ["q", "missing", "r", "u"]
    times, kinds = index.times_and_kinds(ALICE, ids)
    assert np.array_equal(times, index.times(ALICE, ids), equal_nan=True)
    assert kinds.tolist() == [2, 0, 1, 0]
    nobody_times, nobody_kinds = index.times_and_kinds(Scope("acme", "bob"), ids)
    assert np.isnan(nobody_times).all() and nobody_kinds.tolist() == [0, 0, 0, 0]


async def test_turns_of_the_matching_conversation_share_its_score(engine: MemoryEngine) -> None:
    # The times go store → change log → lexical index → recall: the turn said a minute after the hike gets the
    # hike's score as its episode signal; the lookalike said a month later does not.
    start = 1_700_000_000.0
    for text, at in (
        ("Alice: We went hiking on Mount Moiwa with the dog on Saturday", start),
        ("Alice: The view from the top was amazing", start + 60),
        ("Alice: The view from my office window is nice", start + 30 * DAY),
        ("Alice: I bought new running shoes", start + 60 * DAY),
    ):
        await engine.remember(text, user_id="alice", kind="episode", event_time=at)
    query = "Where did Alice go hiking, and the view?"
    preset = get_preset(None).with_overrides(mmr_lambda=1.0)
    scope = engine.scope("alice")
    with_episodes = {hit.memory.text: hit for hit in await engine.recaller.recall(scope, query, preset)}
    without = {
        hit.memory.text: hit
        for hit in await engine.recaller.recall(scope, query, preset.with_overrides(episode_gap_s=0.0))
    }
    mate, stray = "Alice: The view from the top was amazing", "Alice: The view from my office window is nice"
    assert with_episodes[mate].signals["episode"] == pytest.approx(1.0)
    assert 0.0 < with_episodes[stray].signals["episode"] < 1.0
    assert all(hit.signals["episode"] == 0.0 for hit in without.values())
    margin = with_episodes[mate].score - with_episodes[stray].score
    assert margin > without[mate].score - without[stray].score + 0.2
