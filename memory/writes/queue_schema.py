"""The durable write queue's SQLite schema and the small types it hands out (see :mod:`memory.writes.queue`)."""

from __future__ import annotations

from dataclasses import dataclass

from memory.writes.jobs import WriteJob

__all__ = ["DeadLetter", "QueueClosed", "QueueError", "QueueStats"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    user TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    visible_at REAL NOT NULL,
    leased INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_visibility ON jobs (visible_at, seq);
CREATE INDEX IF NOT EXISTS jobs_by_scope ON jobs (tenant, user);
CREATE TABLE IF NOT EXISTS dead_letters (
    job_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    user TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    failed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_scope ON dead_letters (tenant, user);
"""
JOB_COLUMNS = "job_id, tenant, user, kind, payload, created_at, attempts"
Row = tuple[str, str, str, str, str, float, int]


class QueueError(Exception):
    """The queue's storage failed (disk full, I/O error, locked too long); the SQLite error is the ``__cause__``."""


class QueueClosed(QueueError):
    """The queue was used after :meth:`DurableQueue.close`."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    job: WriteJob
    error: str
    failed_at: float


@dataclass(slots=True)
class QueueStats:
    """Counters of this process since the queue was opened (for metrics and the group-commit test)."""

    puts: int = 0
    put_transactions: int = 0
