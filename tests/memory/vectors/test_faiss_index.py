"""FaissVectorIndex beyond the VectorIndex contract (test_vector_index_contract.py): partition types and IVF builds,
its files (crash safety, damage, what a save removes), and the memory budget.

Real FAISS throughout. ``exact_max=100`` makes partitions above 100 vectors switch from the exact scan to IVF with
8-bit codes, so both types run in a few milliseconds. Vectors are random unit vectors: these tests are about
bookkeeping (ANN recall on real MiniLM vectors is measured in the benchmarks), and a vector searched for itself
comes back first from either type.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from memory import atomic_file
from memory.models import Scope
from memory.vectors.faiss_index import FaissVectorIndex, IndexLoadError
from memory.vectors.partition import FLAT, IVF_SQ8, Partition, PartitionPolicy, build_ivf, build_ivf_from

DIM = 16
SMALL = 100
ALICE, BOB = Scope("acme", "alice"), Scope("acme", "bob")


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
async def index() -> AsyncIterator[FaissVectorIndex]:
    vectors = FaissVectorIndex(DIM, exact_max=SMALL)
    yield vectors
    await vectors.close()


def test_partitions_switch_type_with_their_size() -> None:
    policy = PartitionPolicy(exact_max=SMALL, retrain_growth=2.0)
    partition = Partition(DIM)
    vectors = unit_vectors(5 * SMALL)
    ids = [f"m{i}" for i in range(5 * SMALL)]

    partition.add(ids[:SMALL], vectors[:SMALL])
    assert partition.kind == FLAT and not partition.build_due(policy)
    partition.add(ids[SMALL : SMALL + 1], vectors[SMALL : SMALL + 1])
    assert partition.build_due(policy)
    snapshot, source = partition.begin_build()
    assert partition.finish_build(snapshot, build_ivf(DIM, source.vectors(), policy))
    assert partition.kind == IVF_SQ8 and partition.trained_on == SMALL + 1

    partition.add(ids[SMALL + 1 :], vectors[SMALL + 1 :])  # past 2x: time to retrain, on everything
    assert partition.build_due(policy)
    snapshot, source = partition.begin_build()
    assert partition.finish_build(snapshot, build_ivf(DIM, source.vectors(), policy))
    assert partition.kind == IVF_SQ8 and partition.trained_on == 5 * SMALL
    assert partition.search(vectors[250][None], 1, policy)[0][0] == "m250"

    partition.remove(ids[: 5 * SMALL - SMALL // 2], policy)  # down to half of exact_max: exact again, at once
    assert partition.kind == FLAT and partition.count == SMALL // 2
    assert partition.search(vectors[-1][None], 1, policy)[0][0] == ids[-1]
    assert len(partition.ids) == partition.count  # labels compacted


def test_changes_made_during_a_build_carry_over_to_the_new_index() -> None:
    policy = PartitionPolicy(exact_max=SMALL)
    partition = Partition(DIM)
    vectors = unit_vectors(2 * SMALL + 3)
    partition.add([f"m{i}" for i in range(2 * SMALL)], vectors[: 2 * SMALL])
    snapshot, source = partition.begin_build()
    # Meanwhile, the partition keeps changing; the build reads its own copy (decoded only now) all the same:
    partition.add(["new"], vectors[-1:])
    partition.add(["m3"], vectors[-2:-1])  # replaced
    partition.remove(["m4", "m5"], policy)
    partition.add(["m5"], vectors[-3:-2])  # removed, then back with another vector
    built = build_ivf_from(DIM, source, policy)
    np.testing.assert_allclose(source.vectors(), vectors[: 2 * SMALL], atol=1e-6)  # the vectors as the build began

    assert partition.finish_build(snapshot, built)
    assert partition.kind == IVF_SQ8 and partition.count == 2 * SMALL
    for memory_id, vector in [("new", vectors[-1]), ("m3", vectors[-2]), ("m5", vectors[-3]), ("m9", vectors[9])]:
        assert partition.search(vector[None], 1, policy)[0][0] == memory_id
    assert "m4" not in {hit for hit, _ in partition.search(vectors[4][None], 2 * SMALL, policy)}
    assert "m3" not in {hit for hit, score in partition.search(vectors[3][None], 5, policy) if score > 0.98}
    assert not partition.finish_build(snapshot, built)  # used up


async def test_ivf_builds_run_in_the_background_and_are_swapped_in(index: FaissVectorIndex) -> None:
    vectors = unit_vectors(3 * SMALL)
    await index.add(ALICE, [f"m{i}" for i in range(3 * SMALL)], vectors)
    assert (await index.stats())["builds_under_way"] == 1
    assert (await index.search(ALICE, vectors[7], 1))[0][0] == "m7"  # served meanwhile (exactly)
    await index.add(ALICE, ["late"], unit_vectors(1, seed=5))

    await index.settle()

    stats = await index.stats()
    assert stats["resident_ivf_partitions"] == 1 and stats["builds_under_way"] == 0
    assert index.count(ALICE) == 3 * SMALL + 1
    assert (await index.search(ALICE, unit_vectors(1, seed=5)[0], 1))[0][0] == "late"


# --- persistence -------------------------------------------------------------------------------------------------


async def _filled(path: Path, **options: object) -> tuple[FaissVectorIndex, np.ndarray]:
    index = FaissVectorIndex(DIM, path, embedder_name="test-model", exact_max=SMALL, **options)
    vectors = unit_vectors(3 * SMALL)
    await index.add(ALICE, [f"a{i}" for i in range(3 * SMALL)], vectors)  # IVF
    await index.add(BOB, [f"b{i}" for i in range(10)], vectors[:10])  # flat
    return index, vectors


async def test_an_ivf_partition_is_saved_as_it_is(tmp_path: Path) -> None:
    """Reopened, ALICE answers from the same IVF index, not from a flat one to train again: the same hits, scores
    included."""
    index, vectors = await _filled(tmp_path / "vectors")
    await index.settle()
    before = [await index.search(scope, vectors[5], 10) for scope in (ALICE, BOB)]
    await index.save()
    await index.close()
    reopened = FaissVectorIndex(DIM, tmp_path / "vectors", embedder_name="test-model", exact_max=SMALL)
    try:
        assert [await reopened.search(scope, vectors[5], 10) for scope in (ALICE, BOB)] == before
        stats = await reopened.stats()
        assert (stats["resident_ivf_partitions"], stats["builds_under_way"]) == (1, 0)
    finally:
        await reopened.close()


async def test_a_dropped_scopes_file_goes_at_the_next_save(tmp_path: Path) -> None:
    index, _ = await _filled(tmp_path / "vectors")
    files = tmp_path / "vectors" / "partitions"
    try:
        await index.save()
        assert len(list(files.iterdir())) == 2
        await index.drop_scope(ALICE)
        assert len(list(files.iterdir())) == 2  # the saved manifest still lists it
        await index.save()
        assert len(list(files.iterdir())) == 1
    finally:
        await index.close()


async def test_a_crash_before_the_rename_leaves_the_saved_index_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, vectors = await _filled(tmp_path / "vectors")
    index.applied_seq = 7
    await index.save()
    await index.remove(BOB, [f"b{i}" for i in range(5)])
    await index.add(ALICE, ["new"], vectors[:1])
    index.applied_seq = 9

    def crash(*args: object) -> None:
        raise OSError("power cut between the temp file and the rename")

    monkeypatch.setattr(atomic_file.os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        await index.save()
    monkeypatch.undo()
    await index.close()
    (tmp_path / "vectors" / "partitions" / ".leftover.part.tmp").write_bytes(b"half a file")

    reopened = FaissVectorIndex(DIM, tmp_path / "vectors", exact_max=SMALL)
    try:
        assert (reopened.applied_seq, reopened.count(ALICE), reopened.count(BOB)) == (7, 3 * SMALL, 10)
        assert (await reopened.search(BOB, vectors[0], 1))[0][0] == "b0"
        assert not list((tmp_path / "vectors").rglob("*.tmp"))
    finally:
        await reopened.close()


async def test_damaged_or_mismatched_files_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "vectors"
    index, vectors = await _filled(path)
    await index.save()
    await index.close()

    with pytest.raises(IndexLoadError, match="dimension"):
        FaissVectorIndex(DIM * 2, path)
    with pytest.raises(IndexLoadError, match="embedder"):
        FaissVectorIndex(DIM, path, embedder_name="another-model")

    files = sorted((path / "partitions").iterdir(), key=lambda f: f.stat().st_size)
    flipped = bytearray(files[1].read_bytes())  # ALICE's, the larger one
    flipped[-100] ^= 0xFF
    files[1].write_bytes(bytes(flipped))
    damaged = FaissVectorIndex(DIM, path, exact_max=SMALL)  # whole files pass the open; the checksum fails on use
    try:
        with pytest.raises(IndexLoadError, match="checksum"):
            await damaged.search(ALICE, vectors[0], 3)
        assert (await damaged.search(BOB, vectors[0], 1))[0][0] == "b0"
    finally:
        await damaged.close()

    files[0].write_bytes(files[0].read_bytes()[:-10])
    with pytest.raises(IndexLoadError, match="truncated"):
        FaissVectorIndex(DIM, path)
    fresh = FaissVectorIndex.open(path, dim=DIM, exact_max=SMALL)
    try:
        assert fresh.load_error and "truncated" in fresh.load_error
        assert (fresh.applied_seq, fresh.count(ALICE), fresh.count(BOB)) == (0, 0, 0)
    finally:
        await fresh.close()


async def test_partitions_beyond_the_memory_budget_live_on_disk(tmp_path: Path) -> None:
    index, vectors = await _filled(tmp_path / "vectors", resident_bytes=1)
    carol = Scope("acme", "carol")
    try:
        await index.add(carol, ["c0"], vectors[:1])
        stats = await index.stats()
        assert stats["resident_partitions"] == 1 and stats["partitions"] == 3 and stats["vectors"] == 3 * SMALL + 11
        assert (await index.search(ALICE, vectors[7], 1))[0][0] == "a7"  # read back from its file
        assert (await index.search(BOB, vectors[3], 1))[0][0] == "b3"
        await index.remove(ALICE, ["a7"])
        assert (await index.search(ALICE, vectors[7], 1))[0][0] != "a7"
        assert index.count(ALICE) == 3 * SMALL - 1
        await index.save()
    finally:
        await index.close()
    reopened = FaissVectorIndex(DIM, tmp_path / "vectors", exact_max=SMALL)
    try:
        assert [reopened.count(s) for s in (ALICE, BOB, carol)] == [3 * SMALL - 1, 10, 1]
    finally:
        await reopened.close()


async def test_a_partition_evicted_before_any_save_is_discarded_on_open(tmp_path: Path) -> None:
    """Its changes are newer than the (absent) manifest's applied_seq, so the change log will bring them back."""
    index, _ = await _filled(tmp_path / "vectors", resident_bytes=1)
    await index.close()
    assert list((tmp_path / "vectors" / "partitions").iterdir())  # evicted partitions were written
    reopened = FaissVectorIndex(DIM, tmp_path / "vectors")
    try:
        assert (reopened.applied_seq, reopened.count(ALICE)) == (0, 0)
        assert not list((tmp_path / "vectors" / "partitions").iterdir())
    finally:
        await reopened.close()


async def test_searches_run_between_the_partitions_a_save_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A save writes copies of the partitions in the I/O thread: a search waits for none of the writes; a scope
    # dropped while the save is under way is not brought back by it.
    index, vectors = await _filled(tmp_path / "vectors")
    carol = Scope("acme", "carol")
    await index.add(carol, ["c0"], vectors[:1])
    folder = index._folder
    assert folder is not None
    write = folder.write_partition
    written: list[Scope] = []

    def slow_write(scope: Scope, partition: Partition) -> None:
        time.sleep(0.3)
        write(scope, partition)
        written.append(scope)

    monkeypatch.setattr(folder, "write_partition", slow_write)
    try:
        index.applied_seq = 7
        save = asyncio.ensure_future(index.save())
        await asyncio.sleep(0.05)  # the first partition's write is under way
        assert await index.search(BOB, vectors[3], 1) == [("b3", pytest.approx(1.0, abs=1e-4))]
        assert written == [] and not save.done()  # answered while the first partition is being written
        await index.drop_scope(carol)  # between two partition writes
        await save
        assert carol not in written and len(written) == 2
    finally:
        await index.close()
    reopened = FaissVectorIndex(DIM, tmp_path / "vectors", exact_max=SMALL)
    try:
        counts = (reopened.count(ALICE), reopened.count(BOB), reopened.count(carol))
        assert (reopened.applied_seq, counts) == (7, (3 * SMALL, 10, 0))
    finally:
        await reopened.close()
