"""Training jobs: build a user's training set from their memories, train, validate, and publish atomically.

Publishing: the trainer writes into a hidden temp folder next to the versions; its files and the folder are
fsync'd, the folder is renamed to ``<name>-v<version>``, the parent folder fsync'd, and only then the registry row
flips to ``ready`` (retiring the previous version) in one transaction. A crash before the flip leaves at most a
stray temp folder and a ``training`` row, which :meth:`AdapterJobs.recover` marks ``failed``.

    jobs = AdapterJobs(config, registry, store)
    job = jobs.start(Scope("acme", "alice"))     # an asyncio task; training runs in a worker thread
    jobs.status(job.id)                          # state, step / total, ETA, the version, the error
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from adapters.config import AdaptersConfig
from adapters.dataset import build_training_set, load_memories
from adapters.registry import AdapterRegistry, AdapterStatus, AdapterVersion
from adapters.trainer import Progress, train_lora
from memory.atomic_file import fsync_dir
from memory.graph.base import GraphStore
from memory.models import Scope

logger = logging.getLogger(__name__)


class NothingToTrain(Exception):
    """The user has no memories an adapter could teach."""


@dataclass(slots=True)
class TrainingJob:
    id: str
    scope: Scope
    state: str = "queued"
    """queued → running → ready / failed (published or not) / error (an exception)."""
    step: int = 0
    total: int = 0
    started_at: float = field(default_factory=time.time)
    version: AdapterVersion | None = None
    error: str | None = None
    task: asyncio.Task[AdapterVersion] | None = field(default=None, repr=False)

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
    config: AdaptersConfig, registry: AdapterRegistry, store: GraphStore, scope: Scope,
    progress: Progress | None = None,
) -> AdapterVersion:
    """One training run for ``scope``. Returns the version row: ``ready`` if published, ``failed`` if validation
    kept it back (the reason and metrics are on the row). Raises :class:`NothingToTrain`; any other error marks the
    row failed and is re-raised."""
    memories = await load_memories(store, scope)
    data = build_training_set(memories, max_examples=config.training.max_examples)
    if not data.train:
        raise NothingToTrain(f"no memories of {scope.tenant}/{scope.user} can be taught")
    version = await registry.begin_version(scope, config.base_model, config.adapters_dir)
    temp = config.adapters_dir / f".{version.versioned_name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        report = await asyncio.to_thread(
            train_lora, config.base_model_path, data, temp, config.training, progress
        )
        metrics = {**report.metrics(), "facts": len(data.facts), "data_fingerprint": data.fingerprint}
        passed, reason = report.passes(config.training)
        if not passed:
            logger.warning("adapter %s v%d not published: %s", version.name, version.version, reason)
            return await registry.fail(version, reason, metrics)
        await asyncio.to_thread(_move_into_place, temp, version.path)
        published = await registry.publish(version, metrics)
        logger.info("adapter %s v%d published (ppl -%.0f%%)", version.name, version.version, 100 * report.ppl_reduction)
        return published
    except BaseException as exc:
        await asyncio.shield(registry.fail(version, f"error: {type(exc).__name__}: {exc}"[:500]))
        raise
    finally:
        await asyncio.to_thread(shutil.rmtree, temp, True)


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

    def __init__(self, config: AdaptersConfig, registry: AdapterRegistry, store: GraphStore) -> None:
        self.config = config
        self.registry = registry
        self.store = store
        self._jobs: dict[str, TrainingJob] = {}
        self._one_at_a_time = asyncio.Lock()

    def start(self, scope: Scope) -> TrainingJob:
        job = TrainingJob(uuid.uuid4().hex, scope)
        job.task = asyncio.create_task(self._run(job), name=f"adapter-train-{job.id[:8]}")
        self._jobs[job.id] = job
        return job

    def status(self, job_id: str) -> TrainingJob | None:
        return self._jobs.get(job_id)

    def jobs(self) -> list[TrainingJob]:
        return list(self._jobs.values())

    async def recover(self) -> int:
        """Mark rows left ``training`` by a crashed process as failed; remove stray temp folders."""
        stale = 0
        for version in await self.registry.list_current():
            if version.status == AdapterStatus.TRAINING and not any(
                j.scope == version.scope and j.state in ("queued", "running") for j in self._jobs.values()
            ):
                await self.registry.fail(version, "interrupted")
                stale += 1
        for temp in self.config.adapters_dir.glob(".*.tmp"):
            shutil.rmtree(temp, ignore_errors=True)
        return stale

    async def _run(self, job: TrainingJob) -> AdapterVersion:
        loop = asyncio.get_running_loop()

        def progress(step: int, total: int) -> None:
            loop.call_soon_threadsafe(_set_progress, job, step, total)

        async with self._one_at_a_time:
            job.state, job.started_at = "running", time.time()
            try:
                version = await train_and_publish(self.config, self.registry, self.store, job.scope, progress)
            except Exception as exc:
                job.state, job.error = "error", f"{type(exc).__name__}: {exc}"
                raise
            job.version = version
            job.state = "ready" if version.status == AdapterStatus.READY else "failed"
            job.error = version.reason or None
            return version


def _set_progress(job: TrainingJob, step: int, total: int) -> None:
    job.step, job.total = step, total
