"""The adapter registry: which LoRA adapter versions each user has, and which one is current.

One SQLite database next to the adapter folders (``<adapters_dir>/registry.sqlite3``, WAL, ``synchronous=FULL``).
Rows are scoped like memories, by (tenant, user). A user's adapter keeps one vLLM name (``lora_name``) across
versions, so a new version replaces the old one in vLLM in place; each version has its own folder, written
elsewhere and renamed into place before :meth:`AdapterRegistry.publish` flips the row in one transaction (the
previous ready version becomes ``retired`` in the same transaction). So readers see the old version or the new
one, never a half-written folder.

Statuses: ``training`` → ``ready`` (published) or ``failed`` (training error or validation below the margin);
``ready`` → ``retired`` (replaced, or retired by hand). The current adapter of a user = their newest ``ready`` row.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sqlite3
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from memory import Scope


class AdapterStatus(StrEnum):
    TRAINING = "training"
    READY = "ready"
    FAILED = "failed"
    RETIRED = "retired"


def lora_name(scope: Scope) -> str:
    """The user's adapter name in vLLM: stable across versions, opaque (no user id leaks into vLLM's logs)."""
    return "mp-" + hashlib.sha256(scope.key.encode()).hexdigest()[:20]


_ADAPTER_MODEL = re.compile(r"mp-([0-9a-f]{20})(?:-v[0-9]+)?")


def is_foreign_adapter(model: str, scope: Scope) -> bool:
    """``model`` names an adapter (runtime name or resolver folder name) that is not ``scope``'s own. Such a request
    must never reach vLLM: the adapter was trained on another user's memories."""
    match = _ADAPTER_MODEL.fullmatch(model.strip())
    return match is not None and "mp-" + match.group(1) != lora_name(scope)


@dataclass(frozen=True, slots=True)
class AdapterVersion:
    scope: Scope
    name: str
    version: int
    base_model: str
    path: Path
    status: AdapterStatus
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def versioned_name(self) -> str:
        """The folder name, and the model name under vLLM's filesystem resolver (one name per version)."""
        return f"{self.name}-v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.scope.tenant, "user": self.scope.user, "name": self.name, "version": self.version,
            "base_model": self.base_model, "path": str(self.path), "status": self.status.value,
            "metrics": self.metrics, "reason": self.reason, "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


_SCHEMA = """
CREATE TABLE IF NOT EXISTS adapters (
    tenant TEXT NOT NULL, user TEXT NOT NULL, version INTEGER NOT NULL,
    name TEXT NOT NULL, base_model TEXT NOT NULL, path TEXT NOT NULL, status TEXT NOT NULL,
    metrics TEXT NOT NULL DEFAULT '{}', reason TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (tenant, user, version)
);
CREATE INDEX IF NOT EXISTS adapters_status ON adapters (tenant, user, status, version);
"""
_COLUMNS = "tenant, user, version, name, base_model, path, status, metrics, reason, created_at, updated_at"


class AdapterRegistry:
    """Async facade over the SQLite registry; each call runs in a worker thread on a short-lived connection
    (safe to share between the proxy, a training job and the CLI, in one process or several)."""

    def __init__(self, path: Path) -> None:
        """Cheap: the database and its schema are created by the first call that needs them."""
        self.path = path
        self._ready = False

    async def open(self) -> AdapterRegistry:
        await asyncio.to_thread(lambda: self._connect().close())
        return self

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA synchronous=FULL")
        if not self._ready:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            self._ready = True
        return db

    async def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            db = self._connect()
            try:
                return db.execute(sql, args).fetchall()
            finally:
                db.close()

        return await asyncio.to_thread(run)

    # --- writes ------------------------------------------------------------------------------------------------

    async def begin_version(self, scope: Scope, base_model: str, adapters_dir: Path) -> AdapterVersion:
        """A new ``training`` row with the next version number (numbers are never reused)."""

        def begin() -> AdapterVersion:
            db = self._connect()
            try:
                db.execute("BEGIN IMMEDIATE")
                (last,) = db.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM adapters WHERE tenant=? AND user=?", (scope.tenant, scope.user)
                ).fetchone()
                name, at = lora_name(scope), time.time()
                version = AdapterVersion(
                    scope, name, last + 1, base_model, adapters_dir / f"{name}-v{last + 1}", AdapterStatus.TRAINING,
                    created_at=at, updated_at=at,
                )
                db.execute(f"INSERT INTO adapters ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", _row(version))
                db.execute("COMMIT")
                return version
            except BaseException:
                db.rollback()
                raise
            finally:
                db.close()

        return await asyncio.to_thread(begin)

    async def publish(self, version: AdapterVersion, metrics: dict[str, Any]) -> AdapterVersion:
        """Make ``version`` the user's current adapter (its folder must already be in place); the previous ready
        version is retired in the same transaction."""
        at = time.time()

        def flip() -> None:
            db = self._connect()
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute(
                    "UPDATE adapters SET status=?, reason='replaced', updated_at=? "
                    "WHERE tenant=? AND user=? AND status=? AND version<>?",
                    (AdapterStatus.RETIRED, at, version.scope.tenant, version.scope.user, AdapterStatus.READY,
                     version.version),
                )
                db.execute(
                    "UPDATE adapters SET status=?, metrics=?, reason='', updated_at=? WHERE tenant=? AND user=? AND version=?",
                    (AdapterStatus.READY, json.dumps(metrics), at, version.scope.tenant, version.scope.user,
                     version.version),
                )
                db.execute("COMMIT")
            except BaseException:
                db.rollback()
                raise
            finally:
                db.close()

        await asyncio.to_thread(flip)
        return await self._require(version.scope, version.version)

    async def fail(self, version: AdapterVersion, reason: str, metrics: dict[str, Any] | None = None) -> AdapterVersion:
        await self._set_status(version.scope, version.version, AdapterStatus.FAILED, reason, metrics)
        return await self._require(version.scope, version.version)

    async def retire(self, scope: Scope, version: int | None = None, reason: str = "retired by hand") -> list[int]:
        """Retire one version, or every ready version when ``version`` is None. Returns the versions retired."""
        rows = await self._run(
            "UPDATE adapters SET status=?, reason=?, updated_at=? WHERE tenant=? AND user=? AND status IN (?,?) "
            + ("AND version=? " if version is not None else "") + "RETURNING version",
            (AdapterStatus.RETIRED, reason, time.time(), scope.tenant, scope.user, AdapterStatus.READY,
             AdapterStatus.TRAINING) + ((version,) if version is not None else ()),
        )
        return sorted(row[0] for row in rows)

    async def delete_user(self, scope: Scope) -> int:
        rows = await self._run("DELETE FROM adapters WHERE tenant=? AND user=? RETURNING version", (scope.tenant, scope.user))
        return len(rows)

    async def _set_status(
        self, scope: Scope, version: int, status: AdapterStatus, reason: str, metrics: dict[str, Any] | None
    ) -> None:
        await self._run(
            "UPDATE adapters SET status=?, reason=?, metrics=COALESCE(?, metrics), updated_at=? "
            "WHERE tenant=? AND user=? AND version=?",
            (status, reason, json.dumps(metrics) if metrics is not None else None, time.time(), scope.tenant,
             scope.user, version),
        )

    # --- reads -------------------------------------------------------------------------------------------------

    async def current(self, scope: Scope) -> AdapterVersion | None:
        """The user's newest ready version, or None."""
        rows = await self._run(
            f"SELECT {_COLUMNS} FROM adapters WHERE tenant=? AND user=? AND status=? ORDER BY version DESC LIMIT 1",
            (scope.tenant, scope.user, AdapterStatus.READY),
        )
        return _version(rows[0]) if rows else None

    async def get(self, scope: Scope, version: int) -> AdapterVersion | None:
        rows = await self._run(
            f"SELECT {_COLUMNS} FROM adapters WHERE tenant=? AND user=? AND version=?", (scope.tenant, scope.user, version)
        )
        return _version(rows[0]) if rows else None

    async def versions(self, scope: Scope) -> list[AdapterVersion]:
        rows = await self._run(
            f"SELECT {_COLUMNS} FROM adapters WHERE tenant=? AND user=? ORDER BY version DESC", (scope.tenant, scope.user)
        )
        return [_version(row) for row in rows]

    async def list_current(self, tenant: str | None = None) -> list[AdapterVersion]:
        """Every user's newest version (any status), optionally within one tenant."""
        rows = await self._run(
            f"SELECT {_COLUMNS} FROM adapters a WHERE (? IS NULL OR tenant=?) AND version = "
            "(SELECT MAX(version) FROM adapters b WHERE b.tenant=a.tenant AND b.user=a.user) ORDER BY tenant, user",
            (tenant, tenant),
        )
        return [_version(row) for row in rows]

    async def folders(self) -> dict[str, AdapterStatus]:
        """Every version's folder name (``<name>-v<version>``) and status: a version folder not here is an orphan."""
        rows = await self._run("SELECT name, version, status FROM adapters")
        return {f"{name}-v{version}": AdapterStatus(status) for name, version, status in rows}

    async def _require(self, scope: Scope, version: int) -> AdapterVersion:
        found = await self.get(scope, version)
        if found is None:
            raise LookupError(f"adapter version {version} of {scope} is not in the registry")
        return found


def _row(v: AdapterVersion) -> tuple[Any, ...]:
    return (v.scope.tenant, v.scope.user, v.version, v.name, v.base_model, str(v.path), v.status.value,
            json.dumps(v.metrics), v.reason, v.created_at, v.updated_at)


def _version(row: tuple[Any, ...]) -> AdapterVersion:
    tenant, user, version, name, base_model, path, status, metrics, reason, created, updated = row
    return AdapterVersion(Scope(tenant, user), name, version, base_model, Path(path), AdapterStatus(status),
                          json.loads(metrics), reason, created, updated)
