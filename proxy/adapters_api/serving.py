"""The adapters API's logic over :mod:`adapters`: start a training job and read its status; list, show and retire
a user's versions; and erase a user's adapters when their memories are deleted (``DELETE /v1/memories``).

Training runs as an :class:`~adapters.jobs.AdapterJobs` task whose CPU-bound part is in a worker thread, so the
event loop keeps serving chats (slower: training uses the cores it is given, ``MEMPROXY_ADAPTERS_TRAIN_THREADS``).
A job or version of a scope the key may not access gets the same 404 as one that does not exist.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime

from adapters.config import AdaptersConfig
from adapters.erasure import erase_user, sweep_orphans
from adapters.jobs import AdapterJobs, TrainingInProgress, TrainingJob, recover_interrupted
from adapters.loader import AdapterLoadError
from adapters.registry import AdapterRegistry, AdapterStatus, AdapterVersion
from adapters.routing import AdapterRouter
from memory import Scope
from proxy.adapters_api.protocol import AdapterList, AdapterObject, TrainingJobObject, TrainRequest
from proxy.auth import KeyRecord
from proxy.errors import (
    ClientError,
    ConflictError,
    InvalidRequestError,
    MemoryUnavailable,
    NotFoundError,
    ServiceUnavailableError,
    UpstreamError,
)
from proxy.identity import IdentityRules
from proxy.memories.access import resolve_memory_scope
from proxy.memory_access import MemoryAccess

logger = logging.getLogger(__name__)


class AdaptersService:
    def __init__(
        self, config: AdaptersConfig, memory: MemoryAccess, rules: IdentityRules, router: AdapterRouter | None
    ) -> None:
        """``router`` is the chat path's adapter router (None: adapters are off; erasure still works)."""
        self._config = config
        self._memory = memory
        self._rules = rules
        self._router = router
        self._registry = router.registry if router is not None else AdapterRegistry(config.registry_path)
        self._jobs: AdapterJobs | None = None

    def scope(
        self, key: KeyRecord, headers: Mapping[str, str], *, user: str | None = None, body_user: str | None = None,
        tenant: str | None = None,
    ) -> Scope:
        """The memory API's rules (403 / 400 otherwise); naming two different users is refused."""
        if user is not None and body_user is not None and user != body_user:
            raise InvalidRequestError("The query and the body name different users.", param="user")
        chosen = body_user if body_user is not None else user
        return resolve_memory_scope(key, user=chosen, tenant=tenant, headers=headers, rules=self._rules)

    async def start(self) -> None:
        """At proxy start: mark versions whose training a crash interrupted as failed, and remove adapter folders a
        crash left without a registry row (never creates the registry)."""
        if self._registry.path.exists():
            try:
                await recover_interrupted(self._registry, self._config.adapters_dir)
                await sweep_orphans(self._config.adapters_dir, self._registry)
            except Exception:
                logger.exception("could not sweep orphan adapter folders in %s", self._config.adapters_dir)

    async def close(self) -> None:
        """At shutdown: training jobs are stopped (nothing is published after)."""
        if self._jobs is not None:
            await self._jobs.close()

    def require_enabled(self) -> None:
        """Adapters off is how this deployment is set up, not an outage: 404 (a 5xx would invite retries and
        alerts)."""
        if self._router is None:
            raise NotFoundError(
                "Per-user adapters are off (MEMPROXY_ADAPTERS_ENABLED).", code="adapters_unavailable"
            )

    # --- training --------------------------------------------------------------------------------------------

    async def train(self, scope: Scope, request: TrainRequest) -> TrainingJobObject:
        jobs = self._training_jobs()
        if not self._config.base_model_path.is_dir():
            logger.warning("adapter training refused: no base model folder at %s", self._config.base_model_path)
            raise ServiceUnavailableError(
                "Adapter training is not configured: the base model folder is missing "
                "(MEMPROXY_ADAPTERS_BASE_MODEL_PATH).",
                code="adapters_unavailable",
            )
        overrides = {name: getattr(request, name) for name in ("epochs", "max_examples") if getattr(request, name)}
        training = self._config.training.model_copy(update=overrides) if overrides else None
        try:
            job = jobs.start(scope, training)
        except TrainingInProgress:
            raise ConflictError(
                "This user already has a training job queued or running; wait for it to finish.",
                code="training_in_progress",
            ) from None
        return job_object(job)

    def job(self, key: KeyRecord, job_id: str) -> TrainingJobObject:
        job = self._jobs.status(job_id) if self._jobs is not None else None
        if job is None or not self._may_access(key, job.scope):
            raise NotFoundError(f"No training job '{job_id[:80]}'.", param="job_id")
        return job_object(job)

    def _training_jobs(self) -> AdapterJobs:
        try:
            engine = self._memory.engine()
        except MemoryUnavailable:
            raise ServiceUnavailableError(
                "Adapter training reads the user's memories, and memory is unavailable.", code="adapters_unavailable"
            ) from None
        if self._jobs is None:
            self._jobs = AdapterJobs(self._config, self._registry, engine)
        return self._jobs

    def _may_access(self, key: KeyRecord, scope: Scope) -> bool:
        try:
            named = resolve_memory_scope(key, user=scope.user, tenant=scope.tenant, headers={}, rules=self._rules)
        except ClientError:
            return False
        return named == scope

    # --- versions --------------------------------------------------------------------------------------------

    async def list(self, scope: Scope) -> AdapterList:
        return AdapterList(data=[adapter_object(v) for v in await self._registry.versions(scope)])

    async def current(self, scope: Scope) -> AdapterObject:
        version = await self._registry.current(scope)
        if version is None:
            raise NotFoundError("This user has no ready adapter.", code="no_adapter")
        return adapter_object(version)

    async def get(self, scope: Scope, version: int) -> AdapterObject:
        return adapter_object(await self._existing(scope, version))

    async def retire(self, scope: Scope, version: int) -> AdapterObject:
        found = await self._existing(scope, version)
        if found.status != AdapterStatus.READY:
            raise ConflictError(
                f"Only a ready version can be retired; version {version} is {found.status.value}.",
                param="version", code="adapter_not_ready",
            )
        await self._registry.retire(scope, version)
        if self._router is not None:
            self._router.invalidate(scope)
        return adapter_object(await self._existing(scope, version))

    async def _existing(self, scope: Scope, version: int) -> AdapterVersion:
        found = await self._registry.get(scope, version)
        if found is None:
            raise NotFoundError(f"No adapter version {version}.", param="version")
        return found

    # --- erasure ---------------------------------------------------------------------------------------------

    async def erase_user(self, scope: Scope) -> int:
        """Every adapter version of ``scope``: training stopped, rows and folders deleted, unloaded from vLLM.
        Runs whether adapters are on or off (a registry left from when they were on is erased too)."""
        if not self._registry.path.exists():
            return 0
        loader = self._router.loader if self._router is not None else None
        try:
            return await erase_user(scope, self._registry, jobs=self._jobs, loader=loader, router=self._router)
        except AdapterLoadError as exc:
            logger.warning("erasing the adapters of a user: vLLM did not unload it (%s): %s", exc.reason, exc)
            raise UpstreamError(
                "The user's memories and adapter files were deleted, but the model server did not unload their "
                "adapter; retry the DELETE.",
                code="adapter_unload_failed",
            ) from exc


def adapter_object(version: AdapterVersion) -> AdapterObject:
    return AdapterObject(
        user=version.scope.user, version=version.version, name=version.name, base_model=version.base_model,
        status=version.status.value, metrics=version.metrics, reason=version.reason,
        created_at=_time(version.created_at), updated_at=_time(version.updated_at),
    )


def job_object(job: TrainingJob) -> TrainingJobObject:
    return TrainingJobObject(
        id=job.id, user=job.scope.user, state=job.state, step=job.step, total=job.total,  # type: ignore[arg-type]
        eta_s=round(job.eta_s, 1) if job.eta_s is not None else None, error=job.error,
        started_at=_time(job.started_at), adapter=adapter_object(job.version) if job.version else None,
    )


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
