"""``DurableQueue``: the on-disk job queue in front of the write pipeline (SQLite, WAL, ``synchronous=FULL``).

Guarantees:

- **Durable put.** :meth:`DurableQueue.put` returns only after the job is in a committed, fsync'd transaction, so it
  survives kill -9 and power loss. Concurrent puts share one transaction (group commit): while one commit is on its
  way to disk, the puts that arrive meanwhile are gathered and committed together next; each put still returns
  only once its own job is durable. A put that is cancelled may or may not have reached the disk.
- **Idempotent put.** A second put of a job id that is queued or dead-lettered is a no-op. (After the ack the id is
  forgotten; a replay is then harmless because the graph store refuses a job id it has applied.)
- **At-least-once delivery.** :meth:`DurableQueue.claim` leases jobs for ``lease_s``; a job not acked or failed
  within its lease (its worker died or hung) is handed out again. Each hand-out counts as an attempt; a job that
  fails, or whose lease runs out, ``max_attempts`` times moves to the dead-letter table, from which it can be
  listed and requeued. :meth:`DurableQueue.release` gives a job back uncounted (an outage of the graph store is
  not the job's fault, and must not dead-letter it however long it lasts).
- **Exactly-once application is not the queue's job**: the graph store commits each job's batch together with its
  job id and refuses a replay (:meth:`memory.graph.base.GraphStore.commit`); the worker acks only after that commit.
  Ack and fail carry no lease token: a worker whose lease expired may still ack (harmless, see above).

Jobs are handed out by visibility time, then in put order. Every SQLite call runs on one worker thread that owns
the connection; the event loop never blocks on the disk. Several processes may share one queue file.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from memory.atomic_file import fsync_dir
from memory.models import Scope
from memory.threads import background
from memory.writes.jobs import WriteJob, dumps_json
from memory.writes.queue_schema import (
    JOB_COLUMNS,
    SCHEMA,
    DeadLetter,
    QueueClosed,
    QueueError,
    QueueStats,
    Row,
)

T = TypeVar("T")
_GROUP_COMMIT_MAX = 512

CLOCK_SLACK_S = 60.0
"""How far past its longest lease or backoff a job's due time may be before it counts as set by a clock that has
since jumped backwards."""


class DurableQueue:
    def __init__(
        self,
        path: Path,
        *,
        max_attempts: int = 8,
        max_backoff_s: float = 300.0,
        busy_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``max_attempts``: hand-outs before a job is dead-lettered. ``fail(…, retry_after_s)`` backs off
        exponentially from ``retry_after_s`` (doubling per attempt) up to ``max_backoff_s``. ``clock`` gives wall
        time in UNIX seconds (leases and backoff survive restarts, so not a monotonic clock)."""
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.path = Path(path)
        self.max_attempts = max_attempts
        self.max_backoff_s = max_backoff_s
        self.stats = QueueStats()
        self._busy_timeout_s = busy_timeout_s
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="durable-queue", initializer=background())
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._pending: list[tuple[Row, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    # --- lifecycle -------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the file and schema if missing. Optional: every operation opens the queue on first use."""
        await self._call(lambda conn: None)

    async def close(self) -> None:
        """Wait for puts in flight, then close the connection. Idempotent."""
        if self._closed:
            return
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=False)

    async def __aenter__(self) -> DurableQueue:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- producer --------------------------------------------------------------------------------------------

    async def put(self, job: WriteJob) -> None:
        """Return once the job is durably on disk (a no-op for a job id already queued or dead-lettered)."""
        self._check_open()
        row = _row(job)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_puts(), name="durable-queue-put")
        await future

    async def _flush_puts(self) -> None:
        """Group commit: everything pending goes into one transaction; puts arriving meanwhile form the next."""
        while self._pending:
            batch, self._pending = self._pending[:_GROUP_COMMIT_MAX], self._pending[_GROUP_COMMIT_MAX:]
            try:
                await self._call(self._insert, [row for row, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.stats.puts += len(batch)
            self.stats.put_transactions += 1
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
        self._flusher = None

    # --- consumer --------------------------------------------------------------------------------------------

    async def reclaim_leases(self) -> int:
        """Make jobs leased by a process that is gone visible now (instead of when their lease runs out): called by
        the engine at start, holding the data dir's lock (see :mod:`memory.data_dir_lock`), so no lease is alive.
        Each keeps its attempt count: a job that kills its process every time is still dead-lettered."""
        self._check_open()
        return await self._call(self._reclaim)

    def _reclaim(self, conn: sqlite3.Connection) -> int:
        now = self._clock()
        with _transaction(conn):
            return conn.execute("UPDATE jobs SET visible_at = ? WHERE leased = 1 AND visible_at > ?", (now, now)).rowcount

    async def claim(self, limit: int = 64, lease_s: float = 60.0) -> list[WriteJob]:
        """Lease up to ``limit`` visible jobs for ``lease_s`` seconds; each comes with its attempt count."""
        if limit < 1:
            return []
        return await self._call(self._claim, limit, lease_s)

    async def ack(self, job_id: str) -> bool:
        """Remove the job durably (the worker calls this after the graph store commit). False if it was not queued."""
        return await self._call(self._ack, job_id)

    async def ack_many(self, job_ids: Sequence[str]) -> int:
        """Ack several jobs in one durable transaction (one fsync). Returns how many were queued."""
        return await self._call(self._ack_many, list(job_ids)) if job_ids else 0

    async def fail(self, job_id: str, error: str, retry_after_s: float) -> bool:
        """Give the job back to be retried after a backoff; after ``max_attempts`` it moves to the dead letters.
        True if it will be retried; False if it was dead-lettered or is not queued."""
        return await self._call(self._fail, job_id, error, retry_after_s)

    async def release(self, job_id: str, retry_after_s: float) -> bool:
        """Give the job back *without* counting the hand-out as an attempt (the failure was not the job's: the graph
        store is down). Visible again after ``retry_after_s`` (capped at ``max_backoff_s``); never dead-lettered,
        however often it is released. False if it is not queued."""
        return await self._call(self._release, job_id, retry_after_s)

    # --- administration --------------------------------------------------------------------------------------

    async def depth(self) -> int:
        """Jobs not yet acked (waiting, leased or backing off); dead letters not included."""
        return await self._call(lambda conn: conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])

    async def oldest_age_s(self) -> float:
        """Seconds since the oldest unacked job was queued (the write path's lag); 0.0 when empty."""
        row = await self._call(lambda c: c.execute("SELECT enqueued_at FROM jobs ORDER BY seq LIMIT 1").fetchone())
        return 0.0 if row is None else max(0.0, self._clock() - row[0])

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Oldest failure first."""
        return await self._call(self._dead_letters, limit)

    async def dead_letter_count(self) -> int:
        return await self._call(lambda conn: conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])

    async def requeue(self, job_id: str) -> bool:
        """Move a dead letter back into the queue with its attempts reset. False if there is no such dead letter."""
        return await self._call(self._requeue, job_id)

    async def delete_scope(self, scope: Scope) -> int:
        """Remove every queued and dead-lettered job of the scope (a user's deletion). Returns how many."""
        self._check_open()
        key = (scope.tenant, scope.user)
        purged = [(row, future) for row, future in self._pending if (row[1], row[2]) == key]
        self._pending = [(row, future) for row, future in self._pending if (row[1], row[2]) != key]
        removed = await self._call(self._delete_scope, key)
        for _, future in purged:  # as if put and then deleted: nothing of the scope reaches the disk
            if not future.done():
                future.set_result(None)
        return removed + len(purged)

    # --- on the worker thread --------------------------------------------------------------------------------

    async def _call(self, operation: Callable[..., T], *args: Any) -> T:
        self._check_open()
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, operation, args)

    def _run(self, operation: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            return operation(self._connection(), *args)
        except sqlite3.Error as exc:
            raise QueueError(f"write queue {self.path.name}: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise QueueError(f"write queue {self.path.name}: WAL mode unavailable (got {mode})")
            conn.execute("PRAGMA synchronous=FULL")  # fsync the WAL at every commit: survives power loss
            with _transaction(conn):
                for statement in filter(str.strip, SCHEMA.split(";")):
                    conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        if created:
            fsync_dir(self.path.parent)  # the new file's directory entry must survive a crash too
        self._conn = conn
        return conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _insert(self, conn: sqlite3.Connection, rows: list[Row]) -> None:
        now = self._clock()
        with _transaction(conn):
            conn.executemany(
                f"INSERT OR IGNORE INTO jobs ({JOB_COLUMNS}, enqueued_at, visible_at) "
                "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM dead_letters WHERE job_id = ?)",
                [(*row, now, now, row[0]) for row in rows],
            )

    def _claim(self, conn: sqlite3.Connection, limit: int, lease_s: float) -> list[WriteJob]:
        now = self._clock()
        with _transaction(conn):
            # A time further ahead than any lease or backoff sets it was set before the clock jumped backwards:
            # due now, not hours from now (writes must not stall behind a clock correction).
            horizon = now + max(lease_s, self.max_backoff_s) + CLOCK_SLACK_S
            rows = conn.execute(
                f"SELECT seq, leased, {JOB_COLUMNS} FROM jobs WHERE visible_at <= ? OR visible_at > ? "
                "ORDER BY visible_at, seq LIMIT ?",
                (now, horizon, limit),
            ).fetchall()
            jobs: list[WriteJob] = []
            for seq, leased, *row in rows:
                attempts = row[-1]
                if leased and attempts >= self.max_attempts:
                    error = f"lease expired {attempts} times without ack or fail (the worker died or hung)"
                    self._bury(conn, seq, error, now)
                    continue
                conn.execute(
                    "UPDATE jobs SET leased = 1, attempts = ?, visible_at = ? WHERE seq = ?",
                    (attempts + 1, now + lease_s, seq),
                )
                jobs.append(_job(row, attempts=attempts + 1))
        return jobs

    def _ack(self, conn: sqlite3.Connection, job_id: str) -> bool:
        with _transaction(conn):
            return conn.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,)).rowcount > 0

    def _ack_many(self, conn: sqlite3.Connection, job_ids: list[str]) -> int:
        with _transaction(conn):
            return sum(conn.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,)).rowcount for job_id in job_ids)

    def _fail(self, conn: sqlite3.Connection, job_id: str, error: str, retry_after_s: float) -> bool:
        now = self._clock()
        with _transaction(conn):
            found = conn.execute("SELECT seq, attempts FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if found is None:
                return False
            seq, attempts = found
            if attempts >= self.max_attempts:
                self._bury(conn, seq, error, now)
                return False
            delay = min(retry_after_s * 2 ** max(attempts - 1, 0), self.max_backoff_s)
            conn.execute(
                "UPDATE jobs SET leased = 0, visible_at = ?, last_error = ? WHERE seq = ?", (now + delay, error, seq)
            )
            return True

    def _release(self, conn: sqlite3.Connection, job_id: str, retry_after_s: float) -> bool:
        visible_at = self._clock() + min(max(retry_after_s, 0.0), self.max_backoff_s)
        with _transaction(conn):
            return (
                conn.execute(
                    "UPDATE jobs SET leased = 0, attempts = max(attempts - leased, 0), visible_at = ? WHERE job_id = ?",
                    (visible_at, job_id),
                ).rowcount
                > 0
            )

    @staticmethod
    def _bury(conn: sqlite3.Connection, seq: int, error: str, now: float) -> None:
        conn.execute(
            f"INSERT OR REPLACE INTO dead_letters ({JOB_COLUMNS}, error, failed_at) "
            f"SELECT {JOB_COLUMNS}, ?, ? FROM jobs WHERE seq = ?",
            (error, now, seq),
        )
        conn.execute("DELETE FROM jobs WHERE seq = ?", (seq,))

    def _dead_letters(self, conn: sqlite3.Connection, limit: int) -> list[DeadLetter]:
        rows = conn.execute(
            f"SELECT {JOB_COLUMNS}, error, failed_at FROM dead_letters ORDER BY failed_at, job_id LIMIT ?", (limit,)
        ).fetchall()
        return [DeadLetter(_job(row[:7]), row[7], row[8]) for row in rows]

    def _requeue(self, conn: sqlite3.Connection, job_id: str) -> bool:
        now = self._clock()
        with _transaction(conn):
            moved = conn.execute(
                f"INSERT OR IGNORE INTO jobs ({JOB_COLUMNS}, enqueued_at, visible_at) "
                "SELECT job_id, tenant, user, kind, payload, created_at, 0, ?, ? FROM dead_letters WHERE job_id = ?",
                (now, now, job_id),
            ).rowcount
            conn.execute("DELETE FROM dead_letters WHERE job_id = ?", (job_id,))
            return moved > 0

    def _delete_scope(self, conn: sqlite3.Connection, key: tuple[str, str]) -> int:
        with _transaction(conn):
            removed = conn.execute("DELETE FROM jobs WHERE tenant = ? AND user = ?", key).rowcount
            return removed + conn.execute("DELETE FROM dead_letters WHERE tenant = ? AND user = ?", key).rowcount

    def _check_open(self) -> None:
        if self._closed:
            raise QueueClosed(f"write queue {self.path.name} is closed")


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _row(job: WriteJob) -> Row:
    """Serialise on the caller's side, so a bad job fails its own put and never the group commit it would join."""
    row = (job.job_id, job.scope.tenant, job.scope.user, job.kind, dumps_json(job.payload))
    for text in row:
        text.encode("utf-8")  # UnicodeEncodeError (a ValueError) for lone surrogates, which SQLite cannot store
    return (*row, float(job.created_at), int(job.attempts))


def _job(row: Sequence[Any], attempts: int | None = None) -> WriteJob:
    job_id, tenant, user, kind, payload, created_at, stored_attempts = row
    return WriteJob(
        job_id=job_id,
        scope=Scope(tenant, user),
        kind=kind,
        payload=json.loads(payload),
        created_at=created_at,
        attempts=stored_attempts if attempts is None else attempts,
    )
