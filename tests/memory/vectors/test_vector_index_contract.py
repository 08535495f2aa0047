"""The VectorIndex contract (memory/vectors/base.py), run against every implementation in CASES.

Real FAISS throughout, four ways: in memory; on disk; on disk with a one-byte memory budget, so that every partition
but the one last used is written out and read back on its next use; and with IVF from 100 vectors up (its lowest
setting) on top of that budget, so that a large scope is searched approximately once its build is in (``settle``).
Vectors are random unit vectors: these are checks of bookkeeping (recall on real MiniLM vectors is measured by the
benchmarks), and a vector searched for itself comes back first from any index type.

What only FAISS does (its files, crash safety, its I/O thread, IVF builds) is tested in test_faiss_index.py and
test_partition_files.py. A new implementation, or a new way to run one, is one line in CASES.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from memory.models import Scope
from memory.vectors.base import EXACT_SEARCH_MAX, VectorIndex
from memory.vectors.faiss_index import FaissVectorIndex

DIM = 16
IVF_FROM = 100
LARGE = 3 * IVF_FROM
ALICE, BOB = Scope("acme", "alice"), Scope("acme", "bob")


@dataclass(frozen=True)
class IndexCase:
    name: str
    open: Callable[[Path], VectorIndex]
    """The index kept in a folder (one without storage ignores it); opened again on a folder saved to, it holds
    what was saved."""
    persistent: bool


CASES = [
    IndexCase("faiss-in-memory", lambda folder: FaissVectorIndex(DIM), persistent=False),
    IndexCase("faiss-on-disk", lambda folder: FaissVectorIndex(DIM, folder), persistent=True),
    IndexCase("faiss-evicting", lambda folder: FaissVectorIndex(DIM, folder, resident_bytes=1), persistent=True),
    IndexCase(
        "faiss-ivf",
        lambda folder: FaissVectorIndex(DIM, folder, exact_max=IVF_FROM, resident_bytes=1),
        persistent=True,
    ),
]


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(params=CASES, ids=lambda case: case.name)
def case(request: pytest.FixtureRequest) -> IndexCase:
    return request.param


@pytest.fixture
async def index(case: IndexCase, tmp_path: Path) -> AsyncIterator[VectorIndex]:
    opened = case.open(tmp_path / "vectors")
    yield opened
    await opened.close()


@pytest.mark.parametrize("size", [40, LARGE], ids=["small", "large"])
async def test_add_replace_remove(index: VectorIndex, size: int) -> None:
    vectors = unit_vectors(size)
    ids = [f"m{i}" for i in range(size)]
    await index.add(ALICE, ids, vectors)
    assert (await index.search(ALICE, vectors[7], 1))[0][0] == "m7"  # answered while a build may be under way
    await index.settle()
    assert index.count(ALICE) == size

    for row in (0, size // 2, size - 1):
        best_id, best_score = (await index.search(ALICE, vectors[row], 3))[0]
        assert best_id == ids[row] and best_score == pytest.approx(1.0, abs=0.02)

    replacement = unit_vectors(1, seed=99)[0]
    await index.add(ALICE, ["m0"], replacement[None])
    assert index.count(ALICE) == size
    assert (await index.search(ALICE, replacement, 1))[0][0] == "m0"
    assert "m0" not in [hit_id for hit_id, score in await index.search(ALICE, vectors[0], 5) if score > 0.98]

    await index.remove(ALICE, ["m1", "m2", "not-there"])
    assert index.count(ALICE) == size - 2
    found = {hit_id for hit_id, _ in await index.search(ALICE, vectors[1], size)}
    assert not found & {"m1", "m2"}

    await index.remove(ALICE, ids)
    assert index.count(ALICE) == 0
    assert await index.search(ALICE, vectors[3], 5) == []


async def test_search_results_are_ordered_bounded_and_scoped(index: VectorIndex) -> None:
    vectors = unit_vectors(30)
    await index.add(ALICE, [f"a{i}" for i in range(30)], vectors)
    await index.add(BOB, ["b0"], vectors[:1])

    hits = await index.search(ALICE, vectors[0], 10)
    scores = [score for _, score in hits]
    assert len(hits) == 10 and scores == sorted(scores, reverse=True)
    assert [hit_id for hit_id, _ in await index.search(BOB, vectors[0], 50)] == ["b0"]
    assert await index.search(Scope("acme", "nobody"), vectors[0], 5) == []
    assert await index.search(ALICE, vectors[0], 0) == []
    with pytest.raises(ValueError, match="dimension"):
        await index.search(ALICE, np.ones(DIM + 1, dtype=np.float32), 3)
    with pytest.raises(ValueError, match="dimension"):
        await index.add(ALICE, ["x", "y"], vectors[:1])


async def test_the_last_of_repeated_ids_in_one_add_wins(index: VectorIndex) -> None:
    vectors = unit_vectors(3)
    await index.add(ALICE, ["same", "other", "same"], vectors)
    assert index.count(ALICE) == 2
    assert (await index.search(ALICE, vectors[2], 1))[0][0] == "same"
    assert (await index.search(ALICE, vectors[0], 1))[0][0] != "same"


async def test_dropping_a_scope_leaves_the_others(index: VectorIndex) -> None:
    vectors = unit_vectors(5)
    await index.add(ALICE, [f"a{i}" for i in range(5)], vectors)
    await index.add(BOB, ["b0", "b1"], vectors[:2])

    await index.drop_scope(ALICE)
    await index.drop_scope(Scope("acme", "nobody"))

    assert (index.count(ALICE), index.count(BOB)) == (0, 2)
    assert await index.search(ALICE, vectors[0], 5) == []
    assert [hit for hit, _ in await index.search(BOB, vectors[1], 5)] == ["b1", "b0"]
    await index.add(ALICE, ["again"], vectors[3:4])  # a dropped scope can be filled again
    assert [hit for hit, _ in await index.search(ALICE, vectors[3], 5)] == ["again"]


async def test_clear_drops_every_scope_and_resets_applied_seq(index: VectorIndex) -> None:
    assert index.applied_seq == 0
    vectors = unit_vectors(4)
    await index.add(ALICE, ["a0", "a1"], vectors[:2])
    await index.add(BOB, ["b0", "b1"], vectors[2:])
    index.applied_seq = 12

    await index.clear()

    assert (index.applied_seq, index.count(ALICE), index.count(BOB)) == (0, 0, 0)
    assert await index.search(BOB, vectors[2], 3) == []
    await index.add(BOB, ["b2"], vectors[:1])
    assert index.count(BOB) == 1


async def test_a_scope_just_used_is_resident(index: VectorIndex) -> None:
    vectors = unit_vectors(3)
    assert not index.is_resident(ALICE)  # no vectors
    await index.add(ALICE, ["a0", "a1"], vectors[:2])
    assert index.is_resident(ALICE)
    await index.add(BOB, ["b0"], vectors[2:])
    assert index.is_resident(BOB)
    await index.search(ALICE, vectors[0], 1)
    assert index.is_resident(ALICE)
    await index.drop_scope(ALICE)
    assert not index.is_resident(ALICE)


async def _state(index: VectorIndex, vectors: np.ndarray) -> tuple[int, int, int, list[str], list[str]]:
    """applied_seq, the counts, and what searching some of the stored vectors finds first (scores and the order
    further down may differ: an approximate structure may be rebuilt in the background whenever a partition
    comes back into RAM)."""
    alice = [(await index.search(ALICE, vectors[row], 3))[0][0] for row in (0, 5, LARGE // 2, LARGE - 1)]
    bob = [(await index.search(BOB, vectors[row], 3))[0][0] for row in (1, 3, 9)]
    return index.applied_seq, index.count(ALICE), index.count(BOB), alice, bob


async def test_what_is_saved_comes_back(case: IndexCase, index: VectorIndex, tmp_path: Path) -> None:
    vectors = unit_vectors(LARGE)
    await index.add(ALICE, [f"a{i}" for i in range(LARGE)], vectors)
    await index.add(BOB, [f"b{i}" for i in range(10)], vectors[:10])
    await index.settle()
    index.applied_seq = 42
    before = await _state(index, vectors)
    assert before == (42, LARGE, 10, ["a0", "a5", f"a{LARGE // 2}", f"a{LARGE - 1}"], ["b1", "b3", "b9"])

    await index.save()

    assert await _state(index, vectors) == before  # saving changes nothing in the open index
    if not case.persistent:
        return
    await index.close()
    reopened = case.open(tmp_path / "vectors")
    try:
        assert await _state(reopened, vectors) == before
        await reopened.remove(BOB, ["b0"])
        await reopened.drop_scope(ALICE)
        reopened.applied_seq = 50
        await reopened.save()
    finally:
        await reopened.close()
    again = case.open(tmp_path / "vectors")
    try:
        assert (again.applied_seq, again.count(ALICE), again.count(BOB)) == (50, 0, 9)
        assert (await again.search(BOB, vectors[3], 1))[0][0] == "b3"
    finally:
        await again.close()


async def test_close_is_safe_twice(index: VectorIndex) -> None:
    await index.add(ALICE, ["a0"], unit_vectors(1))
    await index.close()
    await index.close()


# --- scope isolation ---------------------------------------------------------------------------------------------

SCOPES = [Scope("acme", "alice"), Scope("globex", "alice"), Scope("acme", "bob"), Scope("x", "a/b"),
          Scope("x/a", "b")]  # fmt: skip
POOL = unit_vectors(12, seed=7)
operation = st.one_of(
    st.tuples(st.just("add"), st.integers(0, len(SCOPES) - 1), st.lists(st.integers(0, 11), min_size=1, max_size=8)),
    st.tuples(st.just("bulk"), st.integers(0, len(SCOPES) - 1), st.integers(IVF_FROM // 2, IVF_FROM + 20)),
    st.tuples(st.just("remove"), st.integers(0, len(SCOPES) - 1), st.lists(st.integers(0, 11), max_size=6)),
    st.tuples(st.just("drop"), st.integers(0, len(SCOPES) - 1)),
)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=25), st.integers(0, 11))
@example([("bulk", 0, IVF_FROM + 20), ("add", 0, [0, 1]), ("bulk", 1, IVF_FROM + 20), ("remove", 0, [0]),
          ("drop", 1)], 0)  # fmt: skip
def test_no_search_ever_returns_another_scopes_id(case: IndexCase, operations: list[tuple], probe: int) -> None:
    """Every scope uses the same ids and the same vectors; each search must return exactly its own scope's ids."""
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(_isolation_scenario(case.open(Path(folder)), operations, probe))


async def _isolation_scenario(index: VectorIndex, operations: list[tuple], probe: int) -> None:
    model: dict[Scope, set[str]] = {scope: set() for scope in SCOPES}
    try:
        for op, which, *args in operations:
            scope = SCOPES[which]
            if op == "add":
                rows = args[0]
                await index.add(scope, [f"m{r}" for r in rows], POOL[rows])
                model[scope] |= {f"m{r}" for r in rows}
            elif op == "bulk":  # crosses into IVF when the partition gets big enough
                bulk = unit_vectors(args[0], seed=len(model[scope]))
                await index.add(scope, [f"bulk{i}" for i in range(args[0])], bulk)
                model[scope] |= {f"bulk{i}" for i in range(args[0])}
            elif op == "remove":
                await index.remove(scope, [f"m{r}" for r in args[0]])
                model[scope] -= {f"m{r}" for r in args[0]}
            else:
                await index.drop_scope(scope)
                model[scope] = set()
            for other in SCOPES:
                assert index.count(other) == len(model[other])
                hits = {hit_id for hit_id, _ in await index.search(other, POOL[probe], 200)}
                assert hits <= model[other]
                if len(model[other]) <= EXACT_SEARCH_MAX:
                    assert hits == model[other]
    finally:
        await index.close()
