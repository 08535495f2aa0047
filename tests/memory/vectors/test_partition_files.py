"""Partition files are read and written in the index's I/O thread, not its worker: a scope whose partition is being
read back or written out never holds up another scope's search, and nothing is lost or resurrected on the way.

Real FAISS and real files; file reads and writes are slowed (a sleep around the real call) so that "meanwhile" is
long enough to observe.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from memory.models import Scope
from memory.vectors.faiss_index import FaissVectorIndex
from memory.vectors.partition import Partition
from tests.memory.vectors.test_faiss_index import ALICE, BOB, DIM, SMALL, unit_vectors

SLOW = 0.4


async def _two_scopes(path: Path) -> tuple[FaissVectorIndex, np.ndarray]:
    """ALICE (IVF) and BOB (flat), saved; a budget of one byte keeps only the last one used in RAM."""
    index = FaissVectorIndex(DIM, path, exact_max=SMALL, resident_bytes=1)
    vectors = unit_vectors(3 * SMALL)
    await index.add(ALICE, [f"a{i}" for i in range(3 * SMALL)], vectors)
    await index.settle()
    await index.add(BOB, [f"b{i}" for i in range(10)], vectors[:10])
    await index.save()
    return index, vectors


def _slow(monkeypatch: pytest.MonkeyPatch, index: FaissVectorIndex, name: str, log: list[Scope]) -> None:
    folder = index._folder
    real = getattr(folder, name)

    def slowed(scope: Scope, *args: object) -> object:
        time.sleep(SLOW)
        result = real(scope, *args)
        log.append(scope)
        return result

    monkeypatch.setattr(folder, name, slowed)


async def test_other_scopes_are_searched_while_a_partition_is_read_back(tmp_path: Path, monkeypatch) -> None:
    index, vectors = await _two_scopes(tmp_path / "vectors")
    read: list[Scope] = []
    _slow(monkeypatch, index, "read_partition", read)
    try:
        assert (await index.stats())["resident_partitions"] == 1  # BOB; ALICE lives on disk
        alice = asyncio.ensure_future(index.search(ALICE, vectors[7], 1))
        await asyncio.sleep(0.05)  # ALICE's read is under way
        started = time.perf_counter()
        assert (await index.search(BOB, vectors[3], 1))[0][0] == "b3"
        assert time.perf_counter() - started < SLOW / 2 and not alice.done()  # not queued behind the read
        twice = asyncio.ensure_future(index.search(ALICE, vectors[8], 1))  # shares the read under way
        assert (await alice)[0][0] == "a7" and (await twice)[0][0] == "a8"
        assert read == [ALICE]
    finally:
        await index.close()


async def test_a_read_overtaken_by_a_change_is_not_adopted(tmp_path: Path, monkeypatch) -> None:
    """A write to a scope whose partition is being read back for a search reads it itself and changes it; the
    search's copy, now stale, must not replace it."""
    index, vectors = await _two_scopes(tmp_path / "vectors")
    read: list[Scope] = []
    _slow(monkeypatch, index, "read_partition", read)
    new = unit_vectors(1, seed=9)
    try:
        search = asyncio.ensure_future(index.search(ALICE, new[0], 1))
        await asyncio.sleep(0.05)
        await index.add(ALICE, ["new"], new)  # reads ALICE in the worker (its own read), then adds
        await search
        assert (await index.search(ALICE, new[0], 1))[0][0] == "new"
        assert index.count(ALICE) == 3 * SMALL + 1
        assert read == [ALICE, ALICE]  # both reads happened; the later-finishing stale one was dropped
    finally:
        await index.close()


async def test_a_copy_read_before_the_scope_came_and_went_is_not_adopted(tmp_path: Path) -> None:
    """The same race, step by step (white box: the steps' timing cannot be forced from outside): the scope is read
    into RAM, changed and written out again while a search's read of the older file is on its way."""
    index, vectors = await _two_scopes(tmp_path / "vectors")
    new = unit_vectors(1, seed=9)
    try:
        ticket = await index._run(index._table.load_ticket, ALICE)
        assert ticket is not None
        stale = await index._files.read_beside(ALICE)
        await index.add(ALICE, ["new"], new)
        await index.search(BOB, vectors[3], 1)  # ALICE evicted: written out
        await index._run(index._table.leaving.wait_all)
        await index.search(BOB, vectors[4], 1)  # ... and let go of
        assert ALICE not in index._table.leaving and not index.is_resident(ALICE)

        await index._run(index._table.adopt, ALICE, stale, ticket)

        assert (await index.search(ALICE, new[0], 1))[0][0] == "new"
    finally:
        await index.close()


async def test_an_evicted_partition_is_written_while_searches_go_on(tmp_path: Path, monkeypatch) -> None:
    index, vectors = await _two_scopes(tmp_path / "vectors")
    written: list[Scope] = []
    _slow(monkeypatch, index, "write_partition", written)
    try:
        await index.add(BOB, ["b-new"], unit_vectors(1, seed=3))  # BOB changed: written when evicted
        started = time.perf_counter()
        assert (await index.search(ALICE, vectors[5], 1))[0][0] == "a5"  # evicts BOB
        assert time.perf_counter() - started < SLOW and written == []  # answered before BOB's file was written
        assert (await index.search(BOB, unit_vectors(1, seed=3)[0], 1))[0][0] == "b-new"  # taken back as it was
        await index.save()
    finally:
        await index.close()
    reopened = FaissVectorIndex(DIM, tmp_path / "vectors", exact_max=SMALL)
    try:
        assert (reopened.count(ALICE), reopened.count(BOB)) == (3 * SMALL, 11)
        assert (await reopened.search(BOB, unit_vectors(1, seed=3)[0], 1))[0][0] == "b-new"
    finally:
        await reopened.close()


async def test_a_scope_dropped_while_its_file_is_written_stays_dropped(tmp_path: Path, monkeypatch) -> None:
    index, vectors = await _two_scopes(tmp_path / "vectors")
    written: list[Scope] = []
    _slow(monkeypatch, index, "write_partition", written)
    try:
        await index.add(BOB, ["b-new"], unit_vectors(1, seed=3))
        await index.search(ALICE, vectors[5], 1)  # BOB is being written out
        await index.drop_scope(BOB)  # waits for that write, so the save below removes the file for good
        await index.save()
    finally:
        await index.close()
    assert written == [BOB]
    reopened = FaissVectorIndex(DIM, tmp_path / "vectors", exact_max=SMALL)
    try:
        assert (reopened.count(ALICE), reopened.count(BOB)) == (3 * SMALL, 0)
        assert len(list((tmp_path / "vectors" / "partitions").iterdir())) == 1
    finally:
        await reopened.close()


async def test_a_failed_eviction_write_loses_nothing(tmp_path: Path, monkeypatch) -> None:
    index, vectors = await _two_scopes(tmp_path / "vectors")
    folder = index._folder
    real = folder.write_partition
    disk = {"full": True}
    failures: list[Scope] = []

    def write(scope: Scope, partition: Partition) -> None:
        if disk["full"]:
            failures.append(scope)
            raise OSError("disk full")
        real(scope, partition)

    monkeypatch.setattr(folder, "write_partition", write)
    try:
        await index.add(BOB, ["b-new"], unit_vectors(1, seed=3))
        await index.search(ALICE, vectors[5], 1)  # evicts BOB; its write fails (and is tried again)
        with pytest.raises(OSError):
            await index.save()  # no manifest over a partition file older than its vectors
        assert failures and set(failures) == {BOB}
        assert (await index.search(BOB, unit_vectors(1, seed=3)[0], 1))[0][0] == "b-new"  # still there
        disk["full"] = False
        index.applied_seq = 5
        await index.save()
    finally:
        await index.close()
    reopened = FaissVectorIndex(DIM, tmp_path / "vectors", exact_max=SMALL)
    try:
        assert (reopened.applied_seq, reopened.count(BOB)) == (5, 11)
        assert (await reopened.search(BOB, unit_vectors(1, seed=3)[0], 1))[0][0] == "b-new"
    finally:
        await reopened.close()


@pytest.mark.parametrize("ids", [["a0", "a1", "a2", "a3"], ["a0", "café-1", "日本-2", "a3"]], ids=["ascii", "utf-8"])
def test_a_partition_file_gives_back_its_ids_removed_labels_included(tmp_path: Path, ids: list[str]) -> None:
    from memory.vectors.index_folder import IndexFolder
    from memory.vectors.partition import PartitionPolicy

    partition = Partition(DIM)
    partition.add(ids, unit_vectors(len(ids)))
    partition.remove([ids[1]], PartitionPolicy(exact_max=SMALL))
    folder = IndexFolder(tmp_path)
    folder.open(dim=DIM, embedder="", fresh=True)
    folder.write_partition(ALICE, partition)

    back = folder.read_partition(ALICE, DIM)

    assert back.ids == [ids[0], None, ids[2], ids[3]]
    assert back.labels == {ids[0]: 0, ids[2]: 2, ids[3]: 3}
    assert back.search(unit_vectors(len(ids))[3][None], 1, PartitionPolicy())[0][0] == ids[3]


async def test_partitions_waiting_to_be_written_are_bounded(tmp_path: Path, monkeypatch) -> None:
    """Evicted partitions still being written hold RAM; past the bound (here 0 bytes) eviction waits for them."""
    from memory.vectors import partition_table

    monkeypatch.setattr(partition_table, "LEAVING_FLOOR", 0)
    index, vectors = await _two_scopes(tmp_path / "vectors")
    written: list[Scope] = []
    _slow(monkeypatch, index, "write_partition", written)
    try:
        await index.add(BOB, ["b-new"], unit_vectors(1, seed=3))
        started = time.perf_counter()
        await index.search(ALICE, vectors[5], 1)  # evicts BOB, and with nothing allowed in flight, waits
        assert written == [BOB] and time.perf_counter() - started >= SLOW * 0.9
        assert not index._table.leaving
    finally:
        await index.close()
