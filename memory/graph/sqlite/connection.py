"""One SQLite connection owned by one worker thread: the embedded store holds two (a writer and a reader).

Every call runs in the connection's thread, one at a time, inside one transaction. SQLite's failures surface as the
interface's errors, with ``raise … from``: busy, locked, read-only, full, I/O and the like → ``StoreUnavailable``
(retry later); anything else → ``GraphStoreError``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from memory.graph.base import GraphStoreError, StoreUnavailable
from memory.threads import background

R = TypeVar("R")

_CACHE_KIB = 32 * 1024
_WAL_KEEP_BYTES = 64 * 1024 * 1024
"""After a checkpoint the WAL file is cut back to this (a big delete_user would otherwise leave it huge)."""
_REOPEN = {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR}
"""Errors after which the connection is opened again before its next call: a connection that opened the file
read-only (a read-only mount, wrong permissions after a restore) stays read-only after the file is writable again,
and one whose file handle went bad keeps failing."""
_UNAVAILABLE = {
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL,
    sqlite3.SQLITE_NOMEM,
}


class Connection:
    """One SQLite connection owned by one worker thread; every call runs there, one at a time."""

    def __init__(
        self, path: Path, name: str, *, synchronous_full: bool, busy_timeout_s: float, in_background: bool = False
    ) -> None:
        """``in_background``: the thread runs at a lower CPU priority than the chat path (see memory.threads)."""
        self._path = path
        self._synchronous = "FULL" if synchronous_full else "NORMAL"
        self._busy_timeout_s = busy_timeout_s
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=name, initializer=background() if in_background else None
        )
        self._conn: sqlite3.Connection | None = None
        self._reopen = False
        self._closed = False

    async def open(self) -> None:
        await self._call(self._connect)

    async def close(self) -> None:
        self._closed = True
        await self._call(self._disconnect)
        self._executor.shutdown(wait=False)

    async def read(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(conn, *args)`` in one read transaction (one consistent snapshot)."""
        return await self._call(self._transaction, "BEGIN", fn, args)

    async def write(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(conn, *args)`` in one write transaction: all of it is durable when this returns, or none of it."""
        return await self._call(self._transaction, "BEGIN IMMEDIATE", fn, args)

    async def _call(self, fn: Callable[..., R], *args: Any) -> R:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
            self._reopen = self._reopen or code in _REOPEN
            if code in _UNAVAILABLE:
                raise StoreUnavailable(f"SQLite graph store: {exc}") from exc
            raise GraphStoreError(f"SQLite graph store: {exc}") from exc

    def _connect(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=self._busy_timeout_s, cached_statements=512)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute(f"PRAGMA journal_size_limit = {_WAL_KEEP_BYTES}")
            # Never ANALYZE / PRAGMA optimize here: see memory.graph.sqlite.schema.
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _transaction(self, begin: str, fn: Callable[..., R], args: tuple[Any, ...]) -> R:
        if self._reopen and not self._closed:
            self._disconnect()
            self._connect()  # if this fails too, the flag stays and the next call tries again
            self._reopen = False
        conn = self._conn
        if conn is None:
            raise StoreUnavailable("the SQLite graph store is closed")
        conn.execute(begin)
        try:
            result = fn(conn, *args)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the original error says more; SQLite rolls back a failed transaction itself
            raise
        return result
