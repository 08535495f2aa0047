"""The memory scheduler: importance decay, the expiry sweep, and promotion into core memory.

:class:`MemoryScheduler` runs :meth:`~MemoryScheduler.run_once` every ``SchedulerConfig.interval_s`` (started and
stopped by the engine); tests call ``run_once(at)`` directly. Each run, for every scope:

**Decay.** Importance falls exponentially towards a floor unless the memory is used::

    importance(t) = floor + (base - floor) * 2 ** (-(t - anchor) / half_life)      (only when base > floor)
    anchor = max(created_at, last_used_at, since)

``base`` is the importance last *set* (by the writer, :meth:`MemoryEngine.prioritize`, a merge), ``since`` when it
was set. Using a memory (recall bumps ``last_used_at``) moves the anchor, so the next run restores ``base``. The
value is recomputed from ``base`` each run, never compounded, so the result does not depend on how often the
scheduler runs. Bookkeeping lives in ``metadata["decay"] = {"base", "since", "value"}``: when the stored importance
differs from ``value``, someone else set it, and it becomes the new base from that run on. Changes smaller than
``decay_step`` are not written; decay leaves no change-log entry (nothing derived depends on importance). Core
memories do not decay.

**Expiry.** ``expires_at`` is set per memory by ``prioritize(retention_period=…)``. Recall already skips expired
memories; the run ends with :meth:`GraphStore.log_expired`, which appends an UPSERT change for each memory that ran
out since the last sweep, and then ``follow()``: the index sync reads the memory as it is now (inactive) and drops
it from FAISS and BM25.

**Core memory.** A memory is core while ``metadata["core_since"]`` (:data:`~memory.graph.base.CORE_SINCE`, indexed
by both stores) holds the time it joined; ``metadata["core"]`` says how: ``"pinned"`` (the user, via
:meth:`MemoryEngine.pin`; never demoted by the scheduler, never decays), ``"promoted"`` (the scheduler), or
``"unpinned"`` (the user took it out: never promoted again unless pinned). The proxy renders core memories after the
system prompt in ``(core_since, id)`` order, so the prefix changes only when membership does, and slowly:

- a candidate has ``use_count >= core_min_uses`` and ``importance >= core_min_importance``; rank =
  ``importance * ln(1 + use_count)``, ties by id;
- at most ``core_promotions_per_run`` promotions per user per run;
- at most ``core_max`` members: into a full core a candidate enters only by outranking the weakest *promoted*
  member by ``core_swap_margin`` (which is then demoted); over the limit (pins, a lowered limit) the weakest promoted
  members leave, pinned ones never;
- a demoted memory may not come back for ``core_cooldown_s`` (``metadata["core_left_at"]``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Literal

from memory.config import SchedulerConfig
from memory.graph.base import CORE_SINCE, UNCHANGED, FieldUpdate, GraphStore, MemoryUsage, core_since
from memory.models import Memory, Scope

logger = logging.getLogger(__name__)

CORE = "core"
PINNED, PROMOTED, UNPINNED = "pinned", "promoted", "unpinned"
CORE_LEFT_AT = "core_left_at"
DECAY = "decay"
SCAN_PAGE = 1000

RetentionPeriod = float | timedelta | Literal["short_term", "long_term"] | None
"""Seconds or a timedelta from now, a named term of the scheduler's config, or None: keep forever."""


@dataclass(frozen=True, slots=True)
class RunReport:
    decayed: int = 0
    promoted: int = 0
    demoted: int = 0
    expired: int = 0


def expiry(period: RetentionPeriod, at: float, config: SchedulerConfig) -> float | None:
    """When a memory kept for ``period`` from ``at`` expires (None: never). ValueError for a period that is not
    positive or not one of the named terms."""
    if period is None or (period == "long_term" and config.long_term_s is None):
        return None
    if isinstance(period, str):
        seconds = {"short_term": config.short_term_s, "long_term": config.long_term_s}.get(period)
        if seconds is None:
            raise ValueError(f"retention_period must be 'short_term', 'long_term', seconds or None, not {period!r}")
    else:
        seconds = period.total_seconds() if isinstance(period, timedelta) else float(period)
    if seconds <= 0:
        raise ValueError("retention_period must be positive")
    return at + seconds


class MemoryScheduler:
    """Maintenance of one store. ``follow`` brings the derived indexes up to the store's change log."""

    def __init__(
        self,
        store: GraphStore,
        config: SchedulerConfig,
        *,
        follow: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._follow = follow
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None and self._config.enabled:
            self._task = asyncio.create_task(self._run_periodically(), name="memory-scheduler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def run_once(self, at: float | None = None) -> RunReport:
        """One maintenance run over every scope as of ``at`` (now by default); runs never overlap."""
        at = time.time() if at is None else at
        async with self._lock:
            decayed = promoted = demoted = 0
            for scope in await self._store.scopes():
                try:
                    changed = await self._maintain(scope, at)
                except Exception:
                    logger.exception("memory maintenance failed for one scope; the next run tries again")
                    continue
                decayed, promoted, demoted = decayed + changed[0], promoted + changed[1], demoted + changed[2]
            expired = await self._store.log_expired(at)
            if self._follow is not None:
                await self._follow()
        return RunReport(decayed, promoted, demoted, expired)

    async def evict_over_cap(self, scope: Scope) -> int:
        """Past ``max_memories_per_user`` active memories, delete the least important (the oldest among equals; core
        memories never) down to the cap. Returns how many went. One count when under the cap."""
        cap = self._config.max_memories_per_user
        if cap <= 0 or await self._store.count_memories(scope) <= cap:
            return 0
        rows: list[MemoryUsage] = []
        after = ""
        while page := await self._store.usage(scope, after=after, limit=SCAN_PAGE):
            after = page[-1].id
            rows += page
        excess = len(rows) - cap
        weakest = sorted((r for r in rows if not is_core(r.metadata)), key=lambda r: (r.importance, r.created_at, r.id))
        evicted = 0
        for row in weakest[:excess]:
            evicted += await self._store.delete_memory(scope, row.id)
        if evicted:
            logger.info("%s over its cap of %d memories: %d least important deleted", scope, cap, evicted)
            if self._follow is not None:
                await self._follow()
        return evicted

    async def _run_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._config.interval_s)
            try:
                report = await self.run_once()
                logger.debug("memory maintenance: %s", report)
            except Exception:
                logger.exception("memory maintenance failed; the next run tries again")

    async def _maintain(self, scope: Scope, at: float) -> tuple[int, int, int]:
        """Decay page by page while collecting core members and candidates; then promote and demote."""
        members: list[MemoryUsage] = []
        candidates: list[MemoryUsage] = []
        decayed = 0
        after = ""
        while page := await self._store.usage(scope, after=after, limit=SCAN_PAGE):
            after = page[-1].id
            updates = [update for row in page if (update := decay_update(row, at, self._config))]
            if updates:
                await self._store.update_memories(scope, updates, log_changes=False)
                lowered = {u.memory_id: u.importance for u in updates if u.importance is not UNCHANGED}
                decayed += len(lowered)
                page = [replace(row, importance=lowered[row.id]) if row.id in lowered else row for row in page]
            for row in page:  # ranked on today's importance
                if is_core(row.metadata):
                    members.append(row)
                elif is_candidate(row, at, self._config):
                    candidates.append(row)
        promote, demote = plan_core(members, candidates, self._config)
        changes = [FieldUpdate(memory_id, metadata=promotion_patch(at)) for memory_id in promote]
        changes += [FieldUpdate(memory_id, metadata=demotion_patch(at)) for memory_id in demote]
        if changes:
            await self._store.update_memories(scope, changes)
        await self.evict_over_cap(scope)
        return decayed, len(promote), len(demote)


# --- policy: pure functions --------------------------------------------------------------------------------------


def decayed_importance(base: float, elapsed_s: float, config: SchedulerConfig) -> float:
    floor = config.decay_floor
    if base <= floor:
        return base
    return floor + (base - floor) * 0.5 ** (max(0.0, elapsed_s) / config.decay_half_life_s)


def decay_update(row: MemoryUsage, at: float, config: SchedulerConfig) -> FieldUpdate | None:
    """What decay changes of one memory at ``at`` (None: nothing worth writing)."""
    if is_core(row.metadata):
        return None
    state = row.metadata.get(DECAY)
    known = isinstance(state, Mapping) and _same(state.get("value"), row.importance)
    if known:
        base, since = float(state["base"]), float(state["since"])  # type: ignore[index]
    else:  # first sight (decay from creation), or set by someone else since the last run (decay from now)
        base, since = row.importance, (at if isinstance(state, Mapping) else row.created_at)
    anchor = max(row.created_at, row.last_used_at or 0.0, since)
    value = decayed_importance(base, at - anchor, config)
    if abs(value - row.importance) < config.decay_step:
        if known:
            return None
        value = row.importance  # record the base, change nothing yet
    bookkeeping = {DECAY: {"base": base, "since": since, "value": value}}
    importance = UNCHANGED if value == row.importance else value
    return FieldUpdate(row.id, importance=importance, metadata=bookkeeping)


def is_core(metadata: Mapping[str, Any]) -> bool:
    return core_since(metadata) is not None


PROFILE_SLOTS = frozenset(
    {"name", "residence", "occupation", "employer", "age", "partner", "pet", "family", "diet", "allergy", "language",
     "birthday", "condition"}
)  # fmt: skip
"""Slots (their first part) that say who the user is: such a fact is a core candidate without waiting to be
recalled ``core_min_uses`` times, so it is in every chat."""


def is_profile(metadata: Mapping[str, Any]) -> bool:
    slot = metadata.get("slot")
    return isinstance(slot, str) and slot.split(":", 1)[0] in PROFILE_SLOTS


def is_candidate(row: MemoryUsage, at: float, config: SchedulerConfig) -> bool:
    if row.metadata.get(CORE) == UNPINNED:
        return False
    left = row.metadata.get(CORE_LEFT_AT)
    if isinstance(left, int | float) and at - left < config.core_cooldown_s:
        return False
    used = row.use_count >= config.core_min_uses or is_profile(row.metadata)
    return used and row.importance >= config.core_min_importance


def rank(row: MemoryUsage, config: SchedulerConfig) -> float:
    """How strongly a memory belongs in core memory: importance, and use (a profile fact counts as used enough)."""
    uses = max(row.use_count, config.core_min_uses) if is_profile(row.metadata) else row.use_count
    return row.importance * math.log1p(uses)


def plan_core(
    members: list[MemoryUsage], candidates: list[MemoryUsage], config: SchedulerConfig
) -> tuple[list[str], list[str]]:
    """(ids to promote, ids to demote) for one user."""
    weakest_first = sorted(
        (m for m in members if m.metadata.get(CORE) != PINNED), key=lambda m: (rank(m, config), m.id)
    )
    size = len(members)
    demote: list[str] = []
    while size > config.core_max and weakest_first:
        demote.append(weakest_first.pop(0).id)
        size -= 1
    promote: list[str] = []
    for candidate in sorted(candidates, key=lambda c: (-rank(c, config), c.id)):
        if len(promote) >= config.core_promotions_per_run:
            break
        if size < config.core_max:
            size += 1
        elif weakest_first and rank(candidate, config) > rank(weakest_first[0], config) * (
            1 + config.core_swap_margin
        ):
            demote.append(weakest_first.pop(0).id)
        else:
            break  # candidates come strongest first: none of the rest gets in either
        promote.append(candidate.id)
    return promote, demote


def promotion_patch(at: float) -> dict[str, Any]:
    return {CORE: PROMOTED, CORE_SINCE: at, CORE_LEFT_AT: None}


def demotion_patch(at: float) -> dict[str, Any]:
    """Out of core; decay resumes from now (time spent in core does not count)."""
    return {CORE: None, CORE_SINCE: None, CORE_LEFT_AT: at, DECAY: {"since": at}}


def pin_patch(memory: Memory, at: float) -> dict[str, Any]:
    """Pinned by the user; a memory already in core keeps its place in the order."""
    joined = core_since(memory.metadata)
    return {CORE: PINNED, CORE_SINCE: at if joined is None else joined, CORE_LEFT_AT: None}


def importance_set_patch(importance: float, at: float) -> dict[str, Any]:
    """Importance set explicitly (:meth:`MemoryEngine.prioritize`): the new base, decaying from now."""
    return {DECAY: {"base": importance, "since": at, "value": importance}}


def unpin_patch(at: float) -> dict[str, Any]:
    return {CORE: UNPINNED, CORE_SINCE: None, CORE_LEFT_AT: at, DECAY: {"since": at}}


def _same(stored: object, importance: float) -> bool:
    return isinstance(stored, int | float) and abs(stored - importance) <= 1e-9
