"""Argument checks and the reading of traversal filters, as every backend does them (memory/graph/validation.py,
memory/graph/operations/traversal.py): pure functions, no store."""

from __future__ import annotations

from typing import cast

import numpy as np
import pytest

from memory.graph.base import SHARED_ENTITY, FieldUpdate, WriteBatch
from memory.graph.operations.traversal import EdgeFilter
from memory.graph.validation import check_batch, check_edge_type, check_relationships, embedding_vector
from memory.models import Entity, Memory, RelationType, Relationship, Scope

SCOPE, OTHER = Scope("acme", "alice"), Scope("acme", "bob")


def test_a_consistent_batch_passes() -> None:
    a, b = Memory(SCOPE, "a"), Memory(SCOPE, "b")
    check_batch(
        WriteBatch(
            "job",
            SCOPE,
            [a, b],
            embeddings=[np.ones(4, np.float32), None],
            entities=[Entity(SCOPE, "tea")],
            relationships=[Relationship(SCOPE, a.id, b.id, RelationType.LEADS_TO)],
        )
    )
    check_batch(WriteBatch("job", SCOPE, [a, b]))  # no embeddings at all: keep the stored ones


def test_one_embedding_per_memory_or_none() -> None:
    batch = WriteBatch("job", SCOPE, [Memory(SCOPE, "a"), Memory(SCOPE, "b")], embeddings=[None])
    with pytest.raises(ValueError, match="1 embeddings for 2 memories"):
        check_batch(batch)


@pytest.mark.parametrize(
    "batch",
    [
        WriteBatch("job-1", SCOPE, [Memory(OTHER, "a")]),
        WriteBatch("job-1", SCOPE, entities=[Entity(OTHER, "tea")]),
        WriteBatch("job-1", SCOPE, relationships=[Relationship(OTHER, "a", "b", RelationType.RELATED_TO)]),
    ],
    ids=["memory", "entity", "relationship"],
)
def test_every_object_of_a_batch_is_in_its_scope(batch: WriteBatch) -> None:
    with pytest.raises(ValueError, match="batch job-1 for .* holds an object of"):
        check_batch(batch)


def test_shared_entity_is_never_a_stored_edge() -> None:
    check_edge_type(RelationType.SUPERSEDES)
    check_edge_type("FRIENDS_WITH")  # a custom type is the backend's business
    with pytest.raises(ValueError, match="not a memory-to-memory relationship type"):
        check_edge_type(SHARED_ENTITY)
    shared = Relationship(SCOPE, "a", "b", cast(RelationType, SHARED_ENTITY))  # what a caller may send all the same
    with pytest.raises(ValueError, match=SHARED_ENTITY):
        check_relationships([Relationship(SCOPE, "a", "b", RelationType.RELATED_TO), shared])
    with pytest.raises(ValueError, match=SHARED_ENTITY):
        check_batch(WriteBatch("job", SCOPE, relationships=[shared]))


def test_an_embedding_is_a_non_empty_float32_vector() -> None:
    vector = embedding_vector(np.arange(3, dtype=np.float64))
    assert vector.dtype == np.float32 and vector.tolist() == [0.0, 1.0, 2.0]
    for wrong in (np.ones((2, 2)), np.ones(0), np.float32(1.0)):
        with pytest.raises(ValueError, match="non-empty vector"):
            embedding_vector(wrong)


def test_importance_is_within_zero_and_one() -> None:
    FieldUpdate("m", importance=0.0)
    FieldUpdate("m", importance=1.0)
    for importance in (-0.1, 1.5):
        with pytest.raises(ValueError, match="importance must be within 0..1"):
            FieldUpdate("m", importance=importance)


def test_traversal_filters_read_types_the_same_way() -> None:
    assert EdgeFilter.of(None) == EdgeFilter(None, True)
    assert EdgeFilter.of([RelationType.LEADS_TO, "RELATED_TO"]) == EdgeFilter(("LEADS_TO", "RELATED_TO"), False)
    assert EdgeFilter.of([SHARED_ENTITY]) == EdgeFilter((), True)
    assert EdgeFilter.of(["FRIENDS_WITH", SHARED_ENTITY]) == EdgeFilter(("FRIENDS_WITH",), True)
    assert EdgeFilter.of([]).follows_nothing and not EdgeFilter.of([SHARED_ENTITY]).follows_nothing
    assert not EdgeFilter.of(None).follows_nothing
