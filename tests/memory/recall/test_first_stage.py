"""The first stage's columns: signals scaled as documented, graph relevance inherited from the best seed, episodes
on top, and the best rows in order."""

from __future__ import annotations

import numpy as np
import pytest

from memory.recall.first_stage import FirstStage
from memory.recall.presets import Weights

W = Weights(dense=1.0, lexical=1.0, graph=0.5, episode=1.0)


def test_signals_are_scaled_and_merged_by_id() -> None:
    first = FirstStage([("a", 0.9), ("b", 0.1), ("c", 0.55)], [("c", 4.0), ("d", 2.0)], dense_floor=0.1, weights=W)
    assert first.ids == ["a", "b", "c", "d"]
    assert first.dense.tolist() == pytest.approx([8 / 9, 0.0, 0.5, 0.0])
    assert first.lexical.tolist() == pytest.approx([0.0, 0.0, 1.0, 0.5])
    assert first.score.tolist() == pytest.approx([8 / 9, 0.0, 1.5, 0.5])
    assert [first.ids[row] for row in first.best(3)] == ["c", "a", "d"]
    assert first.best(0) == [] and len(first.best(10)) == 4


def test_graph_neighbours_inherit_from_the_best_seed_and_new_ones_join() -> None:
    first = FirstStage([("a", 0.9)], [("b", 1.0)], dense_floor=0.0, weights=W)
    first.add_graph({"b": 0.5, "z": 2.0}, seed_score=0.8)
    assert first.ids == ["a", "b", "z"]
    assert first.graph.tolist() == pytest.approx([0.0, 0.4, 0.8])  # strength capped at 1, times the seed score
    assert first.score.tolist() == pytest.approx([0.9, 1.0 + 0.5 * 0.4, 0.5 * 0.8])
    first.add_graph({"b": 0.1}, seed_score=0.8)  # a weaker path never lowers the signal
    assert first.graph[1] == pytest.approx(0.4)
    candidate = first.candidate(2)
    assert (candidate.memory_id, candidate.graph, candidate.dense) == ("z", pytest.approx(0.8), 0.0)


def test_episodes_add_the_best_score_of_each_sitting() -> None:
    times = {"a": 0.0, "b": 60.0, "c": 100_000.0}
    first = FirstStage(
        [("a", 1.0), ("b", 0.5), ("c", 0.4)], [], dense_floor=0.0, weights=W,
        known=lambda ids: (np.array([times[i] for i in ids]), np.ones(len(ids))),
    )  # fmt: skip
    first.add_episodes(gap_s=3600)
    assert first.episode.tolist() == pytest.approx([1.0, 1.0, 0.4])
    assert first.score.tolist() == pytest.approx([2.0, 1.5, 0.8])
    empty = FirstStage([], [], dense_floor=0.1, weights=W)
    assert len(empty) == 0 and empty.best(5) == []
