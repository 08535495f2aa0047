"""One process at a time on a data dir: an exclusive advisory lock (``flock``) on ``<data dir>/memproxy.lock``,
held from the engine's open to its close and let go by the kernel when the process dies (kill -9 included).

Two processes writing one data dir would each keep vector indexes the other overwrites, and a restarted engine
could not tell a write-queue lease of a dead process from a live one's. With the lock held, every lease in the queue
belongs to a process that is gone (see :meth:`memory.writes.queue.DurableQueue.reclaim_leases`)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "memproxy.lock"


class DataDirInUse(RuntimeError):
    """Another process has the data dir open."""


class DataDirLock:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """The lock, or ``DataDirInUse`` naming the process that holds it (without waiting)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirInUse(
                f"the data dir {data_dir} is in use by another memproxy process (pid {holder}); stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
