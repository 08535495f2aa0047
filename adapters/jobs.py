"""Training jobs: build a user's training set from their memories, train, validate, and publish atomically.

Publishing: the trainer writes into a hidden temp folder next to the versions; its files and the folder are
fsync'd, the folder is renamed to ``<name>-v<version>``, the parent folder fsync'd, and only then the registry row
flips to ``ready`` (retiring the previous version) in one transaction. A crash before the flip leaves at most a
stray temp folder and a ``training`` row, which :func:`recover_interrupted` marks ``failed`` when the proxy starts.
A run holds an ``flock`` on ``.<name>-v<version>.training.lock`` while it trains, which the kernel drops when its
process dies: a ``training`` row whose lock is free was interrupted, one whose lock is held is still training (in
this process or another, such as the trainer's command).

    jobs = AdapterJobs(config, registry, engine)
    job = jobs.start(Scope("acme", "alice"))     # an asyncio task; training runs in a worker thread
    jobs.status(job.id)                          # state, step / total, ETA, the version, the error

Stopping (when the user is erased): :meth:`AdapterJobs.stopped` refuses new jobs of the user, cancels a queued one
and asks a running one to stop. The worker thread cannot be killed, so the progress callback raises
:class:`TrainingCancelled` at the next training step (and a run past its last step publishes nothing); the
block is entered once every job of the user has ended.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from adapters.config import AdaptersConfig, TrainingConfig
from adapters.dataset import build_training_set, load_memories
from adapters.registry import AdapterRegistry, AdapterStatus, AdapterVersion
from adapters.trainer import Progress, train_lora
from memory import MemoryReader, Scope
from memory.atomic_file import fsync_dir

logger = logging.getLogger(__name__)


class NothingToTrain(Exception):
    """The user has no memories an adapter could teach."""


class TrainingInProgress(Exception):
    """The user already has a queued or running job (or is being erased): one job per user at a time."""


class TrainingCancelled(Exception):
    """The job was stopped (its user is being erased); nothing was published."""


@dataclass(slots=True)
class TrainingJob:
    id: str
    scope: Scope
    state: str = "queued"
    """queued → running → ready / failed (published or not) / error (an exception) / cancelled."""
    step: int = 0
    total: int = 0
    started_at: float = field(default_factory=time.time)
    version: AdapterVersion | None = None
    error: str | None = None
    task: asyncio.Task[AdapterVersion] | None = field(default=None, repr=False)
    cancel_requested: bool = False
    """Read by the training thread at each step (a plain bool: written once, from the event loop)."""

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running") and (self.task is None or not self.task.done())

    @property
    def eta_s(self) -> float | None:
        if not self.step or not self.total or self.state != "running":
            return None
        return (time.time() - self.started_at) / self.step * (self.total - self.step)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id, "tenant": self.scope.tenant, "user": self.scope.user, "state": self.state,
            "step": self.step, "total": self.total, "eta_s": self.eta_s, "error": self.error,
            "adapter": self.version.to_dict() if self.version else None,
        }


async def train_and_publish(
    config: AdaptersConfig, registry: AdapterRegistry, memories_of: MemoryReader, scope: Scope,
    progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
) -> AdapterVersion:
    """One training run for ``scope``. Returns the version row: ``ready`` if published, ``failed`` if validation
    kept it back (the reason and metrics are on the row). Raises :class:`NothingToTrain`; any other error marks the
    row failed and is re-raised. ``should_stop`` is asked once training returns: true raises
    :class:`TrainingCancelled` and publishes nothing."""
    memories = await load_memories(memories_of, scope)
    data = build_training_set(memories, max_examples=config.training.max_examples)
    if not data.train:
        raise NothingToTrain(f"no memories of {scope.tenant}/{scope.user} can be taught")
    version = await registry.begin_version(scope, config.base_model, config.adapters_dir)
    temp = config.adapters_dir / f".{version.versioned_name}.{uuid.uuid4().hex[:8]}.tmp"
    training = _hold_training_lock(config.adapters_dir, version)
    try:
        report = await asyncio.to_thread(
            train_lora, config.base_model_path, data, temp, config.training, progress
        )
        metrics = {**report.metrics(), "facts": len(data.facts), "data_fingerprint": data.fingerprint}
        if should_stop is not None and should_stop():
            raise TrainingCancelled(f"training of {version.versioned_name} was stopped")
        passed, reason = report.passes(config.training)
        if not passed:
            logger.warning("adapter %s v%d not published: %s", version.name, version.version, reason)
            return await registry.fail(version, reason, metrics)
        await asyncio.to_thread(_move_into_place, temp, version.path)
        try:
            published = await registry.publish(version, metrics)
        except LookupError:  # the row went meanwhile (the user was erased from another process): drop the folder
            await asyncio.to_thread(shutil.rmtree, version.path, True)
            raise
        logger.info("adapter %s v%d published (ppl -%.0f%%)", version.name, version.version, 100 * report.ppl_reduction)
        return published
    except BaseException as exc:
        await asyncio.shield(registry.fail(version, f"error: {type(exc).__name__}: {exc}"[:500]))
        raise
    finally:
        await asyncio.to_thread(shutil.rmtree, temp, True)
        _training_lock(config.adapters_dir, version).unlink(missing_ok=True)
        training.close()


def _training_lock(adapters_dir: Path, version: AdapterVersion) -> Path:
    return adapters_dir / f".{version.versioned_name}.training.lock"


def _hold_training_lock(adapters_dir: Path, version: AdapterVersion) -> BinaryIO:
    """The lock that says this version is being trained, held until the returned file is closed (or the process
    dies)."""
    handle = _training_lock(adapters_dir, version).open("ab")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new version: nobody else holds it
    return handle


async def recover_interrupted(registry: AdapterRegistry, adapters_dir: Path) -> int:
    """Mark ``training`` rows whose run died (its lock is free) as failed, and remove their temp folders and lock
    files. Returns how many were marked."""
    stale = 0
    for version in await registry.list_current():
        if version.status != AdapterStatus.TRAINING:
            continue
        lock = _training_lock(adapters_dir, version)
        try:
            handle = lock.open("ab")
        except OSError:  # no adapters folder: nothing to recover
            continue
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # still training
            await registry.fail(version, "interrupted")
            for temp in adapters_dir.glob(f".{version.versioned_name}.*.tmp"):
                await asyncio.to_thread(shutil.rmtree, temp, True)
            lock.unlink(missing_ok=True)
            stale += 1
    return stale


def _move_into_place(temp: Path, final: Path) -> None:
    for path in temp.iterdir():
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    fsync_dir(temp)
    if final.exists():  # a leftover of a crashed run with the same number (numbers are not reused otherwise)
        shutil.rmtree(final)
    os.rename(temp, final)
    fsync_dir(final.parent)


class AdapterJobs:
    """Runs training jobs in this process, one at a time (training uses every core it is given)."""

    def __init__(self, config: AdaptersConfig, registry: AdapterRegistry, memories_of: MemoryReader) -> None:
        """``memories_of``: where the users' memories are read (the proxy's engine)."""
        self.config = config
        self.registry = registry
        self.memories_of = memories_of
        self._jobs: dict[str, TrainingJob] = {}
        self._one_at_a_time = asyncio.Lock()
        self._stopped: Counter[Scope] = Counter()

    def start(self, scope: Scope, training: TrainingConfig | None = None) -> TrainingJob:
        """Queue a job (``training`` overrides the configured training settings). Raises
        :class:`TrainingInProgress` while the user has a queued or running job, or is being erased."""
        if self._stopped[scope] or self.active(scope) is not None:
            raise TrainingInProgress(f"{scope.tenant}/{scope.user} already has a training job")
        job = TrainingJob(uuid.uuid4().hex, scope)
        config = self.config if training is None else self.config.model_copy(update={"training": training})
        job.task = asyncio.create_task(self._run(job, config), name=f"adapter-train-{job.id[:8]}")
        job.task.add_done_callback(_retrieve)
        self._jobs[job.id] = job
        return job

    def active(self, scope: Scope) -> TrainingJob | None:
        return next((job for job in self._jobs.values() if job.scope == scope and job.active), None)

    @asynccontextmanager
    async def stopped(self, scope: Scope) -> AsyncIterator[int]:
        """No job of ``scope`` runs inside this block: new ones are refused, a queued one is cancelled, a running
        one stops at its next training step (waited for). Yields how many were stopped."""
        self._stopped[scope] += 1
        try:
            yield await self._stop(lambda job: job.scope == scope)
        finally:
            self._stopped[scope] -= 1
            if not self._stopped[scope]:
                del self._stopped[scope]

    async def close(self) -> None:
        """At shutdown: every job is stopped as :meth:`stopped` stops a user's (nothing is published after)."""
        await self._stop(lambda job: True)

    async def _stop(self, which: Callable[[TrainingJob], bool]) -> int:
        """Stop the unfinished jobs ``which`` picks (a queued one is cancelled, a running one asked to stop at its
        next step) and wait for them; returns how many."""
        pending = [(job, job.task) for job in self._jobs.values() if which(job) and job.task and not job.task.done()]
        for job, task in pending:
            job.cancel_requested = True
            if job.state == "queued":
                task.cancel()
        if pending:
            await asyncio.wait([task for _, task in pending])
        for job, _ in pending:
            if job.state == "queued":  # cancelled before its coroutine ever ran
                job.state, job.error = "cancelled", "cancelled before it started"
        return len(pending)

    def status(self, job_id: str) -> TrainingJob | None:
        return self._jobs.get(job_id)

    def jobs(self) -> list[TrainingJob]:
        return list(self._jobs.values())

    async def _run(self, job: TrainingJob, config: AdaptersConfig) -> AdapterVersion:
        loop = asyncio.get_running_loop()

        def progress(step: int, total: int) -> None:  # in the training thread
            if job.cancel_requested:
                raise TrainingCancelled("stopped")
            loop.call_soon_threadsafe(_set_progress, job, step, total)

        try:
            await self._one_at_a_time.acquire()
        except asyncio.CancelledError:
            job.state, job.error = "cancelled", "cancelled before it started"
            raise
        try:
            job.state, job.started_at = "running", time.time()
            version = await train_and_publish(
                config, self.registry, self.memories_of, job.scope, progress, lambda: job.cancel_requested
            )
        except (TrainingCancelled, asyncio.CancelledError):
            job.state, job.error = "cancelled", "cancelled: the user's data was erased"
            raise
        except Exception as exc:
            job.state, job.error = "error", f"{type(exc).__name__}: {exc}"
            raise
        else:
            job.version = version
            job.state = "ready" if version.status == AdapterStatus.READY else "failed"
            job.error = version.reason or None
            return version
        finally:
            self._one_at_a_time.release()


def _set_progress(job: TrainingJob, step: int, total: int) -> None:
    job.step, job.total = step, total


def _retrieve(task: asyncio.Task[AdapterVersion]) -> None:
    """The outcome is on the job; reading the exception keeps asyncio from logging it as never retrieved."""
    if not task.cancelled():
        task.exception()
