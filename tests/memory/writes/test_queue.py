"""DurableQueue on a real SQLite file: put / claim / ack / fail, leases, dead letters, idempotency, deletion,
group commit, and a kill -9 of a writer process part-way through 1000 jobs."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from memory.models import Scope
from memory.writes.jobs import WriteJob
from memory.writes.queue import DurableQueue, QueueClosed

ROOT = Path(__file__).resolve().parents[3]
ALICE = Scope("acme", "alice")
BOB = Scope("acme", "bob")


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def memory_job(job_id: str, scope: Scope = ALICE, text: str = "I live in Sapporo") -> WriteJob:
    return WriteJob.for_memory(scope, text, job_id=job_id, importance=0.7, metadata={"category": "home"})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def queue(tmp_path: Path, clock: FakeClock) -> AsyncIterator[DurableQueue]:
    queue = DurableQueue(tmp_path / "queue.sqlite3", max_attempts=3, max_backoff_s=60.0, clock=clock)
    try:
        yield queue
    finally:
        await queue.close()


async def test_put_claim_ack_round_trip(queue: DurableQueue) -> None:
    job = WriteJob.for_exchange(
        ALICE,
        [{"role": "system", "content": "Be brief."}, {"id": "u1", "role": "user", "content": "私の犬はポチです"}],
        {"id": "a1", "content": "ポチ、いい名前ですね。"},
        conversation_id="c1",
        timestamp=1_700_000_123.5,
        job_id="job-1",
    )
    await queue.put(job)
    assert await queue.depth() == 1
    [claimed] = await queue.claim(limit=10, lease_s=30)
    assert claimed.attempts == 1
    assert claimed.to_dict() | {"attempts": 0} == job.to_dict()
    assert await queue.claim(limit=10, lease_s=30) == []  # leased: not handed out twice
    assert await queue.ack("job-1")
    assert not await queue.ack("job-1")
    assert await queue.depth() == 0


async def test_ack_many_acks_in_one_transaction(queue: DurableQueue) -> None:
    for i in range(4):
        await queue.put(memory_job(f"job-{i}"))
    jobs = await queue.claim(limit=3)
    assert await queue.ack_many([j.job_id for j in jobs] + ["unknown"]) == 3
    assert await queue.ack_many([]) == 0
    assert [j.job_id for j in await queue.claim()] == ["job-3"]


async def test_jobs_come_out_in_put_order_up_to_the_limit(queue: DurableQueue) -> None:
    for i in range(5):
        await queue.put(memory_job(f"job-{i}"))
    first = await queue.claim(limit=3)
    second = await queue.claim(limit=3)
    assert [j.job_id for j in first] == ["job-0", "job-1", "job-2"]
    assert [j.job_id for j in second] == ["job-3", "job-4"]


async def test_put_is_idempotent_by_job_id(queue: DurableQueue) -> None:
    await queue.put(memory_job("job-1", text="first"))
    await queue.put(memory_job("job-1", text="second"))
    await asyncio.gather(*(queue.put(memory_job("job-1", text="third")) for _ in range(5)))
    [claimed] = await queue.claim()
    assert claimed.payload["text"] == "first"
    await queue.put(memory_job("job-1", text="while leased"))
    assert await queue.depth() == 1 and await queue.claim() == []


async def test_a_job_whose_lease_ran_out_is_handed_out_again(queue: DurableQueue, clock: FakeClock) -> None:
    await queue.put(memory_job("job-1"))
    assert [j.attempts for j in await queue.claim(lease_s=10)] == [1]
    clock.now += 9.9
    assert await queue.claim(lease_s=10) == []
    clock.now += 0.2  # the worker died: its lease expires
    assert [(j.job_id, j.attempts) for j in await queue.claim(lease_s=10)] == [("job-1", 2)]


async def test_fail_backs_off_exponentially_then_dead_letters(queue: DurableQueue, clock: FakeClock) -> None:
    await queue.put(memory_job("job-1"))
    await queue.claim()
    assert await queue.fail("job-1", "store down", retry_after_s=5)  # attempt 1: back in 5 s
    clock.now += 4.9
    assert await queue.claim() == []
    clock.now += 0.2
    [job] = await queue.claim()
    assert job.attempts == 2
    assert await queue.fail("job-1", "store down", retry_after_s=5)  # attempt 2: back in 10 s
    clock.now += 9.9
    assert await queue.claim() == []
    clock.now += 0.2
    [job] = await queue.claim()
    assert job.attempts == 3
    assert not await queue.fail("job-1", "ValueError: bad payload", retry_after_s=5)  # max_attempts = 3
    assert await queue.depth() == 0 and await queue.dead_letter_count() == 1
    [dead] = await queue.dead_letters()
    assert (dead.job.job_id, dead.job.attempts, dead.error, dead.failed_at) == (
        "job-1", 3, "ValueError: bad payload", clock.now
    )
    assert dead.job.payload["text"] == "I live in Sapporo"

    await queue.put(memory_job("job-1"))  # a dead letter's id is still known: put stays a no-op
    assert await queue.depth() == 0
    assert await queue.requeue("job-1")
    assert not await queue.requeue("job-1")
    assert [(j.job_id, j.attempts) for j in await queue.claim()] == [("job-1", 1)]
    assert await queue.dead_letter_count() == 0


async def test_backoff_is_capped(queue: DurableQueue, clock: FakeClock) -> None:
    await queue.put(memory_job("job-1"))
    await queue.claim()
    await queue.claim()  # nothing; the job is leased
    clock.now += 61  # lease ran out once
    await queue.claim()
    assert await queue.fail("job-1", "slow", retry_after_s=1000)  # 1000 * 2 > max_backoff_s = 60
    clock.now += 60
    assert [j.job_id for j in await queue.claim()] == ["job-1"]


async def test_a_job_that_keeps_killing_its_worker_is_dead_lettered(queue: DurableQueue, clock: FakeClock) -> None:
    await queue.put(memory_job("poison"))
    for _ in range(3):
        assert [j.job_id for j in await queue.claim(lease_s=10)] == ["poison"]
        clock.now += 11
    assert await queue.claim(lease_s=10) == []
    [dead] = await queue.dead_letters()
    assert dead.job.job_id == "poison" and "lease expired" in dead.error


async def test_release_gives_a_job_back_without_counting_an_attempt(queue: DurableQueue, clock: FakeClock) -> None:
    await queue.put(memory_job("j1"))
    for _ in range(queue.max_attempts * 4):  # far more hand-outs than max_attempts: a long store outage
        (job,) = await queue.claim()
        assert job.attempts == 1
        assert await queue.release("j1", retry_after_s=5.0)
        assert await queue.claim() == []  # not visible before retry_after_s
        clock.now += 5.0
    assert await queue.dead_letter_count() == 0
    (job,) = await queue.claim()
    assert await queue.release("j1", 1.0) and await queue.release("j1", 1.0)  # a second release counts nothing more
    clock.now += 1.0
    assert [j.attempts for j in await queue.claim()] == [1]
    assert not await queue.release("unknown", 1.0)


async def test_fail_and_ack_of_unknown_jobs_are_harmless(queue: DurableQueue) -> None:
    assert not await queue.fail("nope", "x", retry_after_s=1)
    assert not await queue.ack("nope")
    assert not await queue.requeue("nope")


async def test_delete_scope_removes_queued_and_dead_jobs_of_that_user_only(queue: DurableQueue) -> None:
    for i in range(3):
        await queue.put(memory_job(f"alice-{i}", ALICE))
    await queue.put(memory_job("bob-0", BOB))
    await queue.put(memory_job("other-tenant", Scope("other", "alice")))
    await queue.claim(limit=1)
    for _ in range(3):
        await queue.fail("alice-0", "boom", retry_after_s=0)
        await queue.claim(limit=1)
    assert await queue.dead_letter_count() == 1
    assert await queue.delete_scope(ALICE) == 3
    assert await queue.dead_letter_count() == 0
    assert sorted(j.job_id for j in await queue.claim(limit=10)) == ["bob-0", "other-tenant"]


async def test_delete_scope_also_drops_puts_still_waiting_for_their_commit(queue: DurableQueue) -> None:
    puts = [asyncio.create_task(queue.put(memory_job(f"alice-{i}", ALICE))) for i in range(50)]
    puts.append(asyncio.create_task(queue.put(memory_job("bob-0", BOB))))
    await asyncio.sleep(0)  # the puts are queued for a group commit, not all on disk yet
    await queue.delete_scope(ALICE)
    await asyncio.gather(*puts)
    assert [j.job_id for j in await queue.claim(limit=100)] == ["bob-0"]


async def test_oldest_age_is_the_lag_of_the_write_path(queue: DurableQueue, clock: FakeClock) -> None:
    assert await queue.oldest_age_s() == 0.0
    await queue.put(memory_job("job-1"))
    clock.now += 5
    await queue.put(memory_job("job-2"))
    clock.now += 2
    assert await queue.oldest_age_s() == pytest.approx(7.0)
    await queue.ack("job-1")
    assert await queue.oldest_age_s() == pytest.approx(2.0)


async def test_jobs_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "queue.sqlite3"
    async with DurableQueue(path) as queue:
        await queue.put(memory_job("job-1"))
        await queue.put(memory_job("job-2"))
        await queue.ack("job-1")
    async with DurableQueue(path) as queue:
        assert [j.job_id for j in await queue.claim()] == ["job-2"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_concurrent_puts_share_commits_and_each_is_durable_when_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite3"
    queue = DurableQueue(path)
    await queue.open()
    observer = sqlite3.connect(path)  # a second connection, as another process would see the file

    async def put_then_look(i: int) -> bool:
        await queue.put(memory_job(f"job-{i}", text=f"note {i}"))
        return observer.execute("SELECT 1 FROM jobs WHERE job_id = ?", (f"job-{i}",)).fetchone() is not None

    try:
        seen = await asyncio.gather(*(put_then_look(i) for i in range(500)))
        assert all(seen)
        assert queue.stats.puts == 500
        assert 1 <= queue.stats.put_transactions < 50  # group commit: far fewer transactions than puts
    finally:
        observer.close()
        await queue.close()
    async with DurableQueue(path) as reopened:
        assert await reopened.depth() == 500


async def test_two_workers_on_one_file_never_claim_the_same_job(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite3"
    async with DurableQueue(path) as producer, DurableQueue(path) as first, DurableQueue(path) as second:
        await asyncio.gather(*(producer.put(memory_job(f"job-{i}")) for i in range(200)))
        claimed: list[str] = []
        for _ in range(20):
            batches = await asyncio.gather(first.claim(limit=7), second.claim(limit=7))
            claimed += [j.job_id for batch in batches for j in batch]
        assert sorted(claimed) == sorted(f"job-{i}" for i in range(200))


async def test_a_bad_payload_fails_its_own_put_only(queue: DurableQueue) -> None:
    bad = WriteJob(job_id="bad", scope=ALICE, kind="memory", payload={"text": "x", "when": object()})
    nan = WriteJob(job_id="nan", scope=ALICE, kind="memory", payload={"importance": float("nan")})
    surrogate = WriteJob(job_id="surrogate", scope=ALICE, kind="memory", payload={"text": "\ud800"})
    results = await asyncio.gather(
        queue.put(memory_job("good-1")),
        queue.put(bad),
        queue.put(nan),
        queue.put(surrogate),
        queue.put(memory_job("good-2")),
        return_exceptions=True,
    )
    assert results[0] is None and results[4] is None
    assert isinstance(results[1], TypeError) and isinstance(results[2], ValueError)
    assert isinstance(results[3], UnicodeEncodeError)
    assert [j.job_id for j in await queue.claim()] == ["good-1", "good-2"]


async def test_closed_queue_refuses_work(tmp_path: Path) -> None:
    queue = DurableQueue(tmp_path / "queue.sqlite3")
    await queue.put(memory_job("job-1"))
    await queue.close()
    await queue.close()  # idempotent
    with pytest.raises(QueueClosed):
        await queue.put(memory_job("job-2"))
    with pytest.raises(QueueClosed):
        await queue.claim()


def test_write_job_is_json_and_validated() -> None:
    job = WriteJob.for_exchange(
        ALICE,
        [
            {"role": "system", "content": "You are helpful."},
            {"id": "u0", "role": "user", "content": "old question"},
            {"id": "a0", "role": "assistant", "content": "old answer"},
            {"role": "developer", "content": "Rules."},
            {"id": "u1", "role": "user", "content": "new question", "name": "Hanako"},
        ],
        {"id": "a1", "content": "new answer"},
        timestamp=123.0,
        job_id="j",
    )
    # Only the new turns are kept, and never a system / developer prompt.
    assert job.payload["messages"] == [{"id": "u1", "role": "user", "content": "new question", "name": "Hanako"}]
    assert WriteJob.from_json(job.to_json()) == job
    assert job.created_at == 123.0
    with pytest.raises(ValueError):
        WriteJob(job_id="j", scope=ALICE, kind="chat", payload={})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        WriteJob(job_id="", scope=ALICE, kind="memory", payload={})


# --- crash test ----------------------------------------------------------------------------------------------


def _run_and_kill(path: Path, seed: int) -> list[str] | None:
    """Start the writer; SIGKILL it after a random number of printed lines. None if it finished first."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.memory.writes.queue_crash_child", str(path), "1000", str(seed)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdout is not None
    kill_after = random.Random(seed).randint(150, 700)
    lines: list[str] = []
    while len(lines) < kill_after and (line := child.stdout.readline()):
        lines.append(line.strip())
    os.kill(child.pid, signal.SIGKILL)
    lines += child.stdout.read().splitlines()  # what it printed before the kill landed
    child.stdout.close()
    child.wait()
    if "done" in lines or child.returncode != -signal.SIGKILL:
        return None
    return lines


@pytest.mark.parametrize("seed", [1, 2])
def test_kill_9_mid_way_loses_no_put_and_resurrects_no_ack(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "queue.sqlite3"
    for attempt in range(3):
        lines = _run_and_kill(path, seed * 10 + attempt)
        if lines is not None:
            break
        path.unlink()
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        pytest.fail("the writer finished before it could be killed, three times")
    put = [line.split()[1] for line in lines if line.startswith("put ")]
    acked = {line.split()[1] for line in lines if line.startswith("ack ")}
    # An ack under way when the kill landed may or may not have committed: that one job may be either way.
    in_flight = {line.split()[1] for line in lines if line.startswith("acking ")} - acked
    assert 0 < len(put) < 1000 and len(in_flight) <= 1

    async def reopen() -> list[str]:
        later = time.time() + 3600  # every lease the dead writer held has run out
        async with DurableQueue(path, clock=lambda: later) as queue:
            return [job.job_id for job in await queue.claim(limit=5000, lease_s=60)]

    present = Counter(asyncio.run(reopen()))
    assert set(present.values()) <= {1}  # nothing twice
    assert set(put) - acked - in_flight <= set(present)  # every durable put that was not acked is there
    assert not acked & set(present)  # no acked job came back
    assert set(present) <= {f"job-{i:04d}" for i in range(1000)}
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_a_clock_that_jumps_backwards_does_not_stall_the_queue(queue: DurableQueue, clock: FakeClock) -> None:
    """Jobs queued, leased or backing off before the clock was set back an hour are due at once, not an hour
    later; a backoff set after the jump is still kept."""
    for job_id in ("failed", "leased", "queued"):
        await queue.put(memory_job(job_id))
    assert {j.job_id for j in await queue.claim(limit=2, lease_s=60)} == {"failed", "leased"}
    await queue.fail("failed", "boom", retry_after_s=30)  # backing off for 30 s from now
    clock.now -= 3600  # NTP sets the clock back an hour
    assert {j.job_id for j in await queue.claim(limit=10, lease_s=60)} == {"failed", "leased", "queued"}
    await queue.fail("failed", "boom again", retry_after_s=30)  # a backoff in the new time is honoured
    assert await queue.claim(limit=10, lease_s=60) == []
    clock.now += 61
    assert {j.job_id for j in await queue.claim(limit=10, lease_s=60)} >= {"failed"}
