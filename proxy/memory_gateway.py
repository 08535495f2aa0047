"""The proxy's side of memory: recall into a chat's prompt before it goes upstream, remember the exchange after.

Memory never fails or slows a chat beyond its budget: recall that errors or runs past ``recall_timeout_ms`` is
dropped and the response says ``degraded``; writes go to the durable queue in the background once the answer is
complete, so a store outage only delays them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from memory.engine import MemoryEngine
from memory.recall.rankers import estimate_tokens
from memory.writes.jobs import WriteJob
from proxy.chat import prompt_layout
from proxy.chat.injections import CORE_SLOT, InjectionLog, turn_digests
from proxy.chat.memory_controls import MemoryControls
from proxy.identity import Identity

logger = logging.getLogger(__name__)

MemoryStatus = Literal["ok", "off", "skipped", "degraded"]


@dataclass(frozen=True, slots=True)
class RecallSettings:
    top_k: int = 6
    preset: str = "balanced"
    token_budget: int = 300
    timeout_s: float = 0.25
    core_limit: int = 20
    side_request_markers: tuple[str, ...] = ("### Task:",)
    layout: Literal["cache-aware", "naive"] = "cache-aware"
    """``naive`` (memories at the top of the system prompt, nothing repeated) exists as the benchmark baseline."""


@dataclass(slots=True)
class PreparedChat:
    """The messages to send upstream and what to tell the client about memory."""

    messages: list[dict[str, Any]]
    status: MemoryStatus
    recalled: int = 0
    core: int = 0
    remember: bool = False
    """Whether the exchange is to be remembered once the answer is complete."""
    reason: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        headers = {
            "x-memproxy-memory": self.status,
            "x-memproxy-recalled": str(self.recalled),
            "x-memproxy-core": str(self.core),
        }
        if self.reason:
            headers["x-memproxy-degraded-reason"] = self.reason
        if self.timings_ms:
            headers["server-timing"] = ", ".join(f"{name};dur={ms:.1f}" for name, ms in self.timings_ms.items())
        return headers


@dataclass(slots=True)
class GatewayStats:
    recalls: int = 0
    degraded: int = 0
    skipped_side_requests: int = 0
    queued_writes: int = 0
    failed_writes: int = 0


class MemoryGateway:
    def __init__(
        self,
        engine: MemoryEngine | None,
        settings: RecallSettings,
        *,
        log: InjectionLog | None = None,
        unavailable: str | None = None,
    ) -> None:
        """``engine`` None: memory is off (``unavailable`` None) or could not start (``unavailable`` says why);
        chats pass through either way."""
        self.engine = engine
        self.unavailable = unavailable
        self.settings = settings
        self.log = log or InjectionLog()
        self.stats = GatewayStats()
        self._writes: set[asyncio.Task[None]] = set()

    async def prepare(self, identity: Identity, messages: list[dict[str, Any]], controls: MemoryControls) -> PreparedChat:
        if prompt_layout.is_side_request(messages, self.settings.side_request_markers):
            self.stats.skipped_side_requests += 1
            return PreparedChat(messages, "skipped", reason="side-request")
        if self.engine is None:
            if self.unavailable is None:
                return PreparedChat(messages, "off")
            self.stats.degraded += 1
            return PreparedChat(messages, "degraded", reason=self.unavailable)
        if not controls.recall:
            return PreparedChat(messages, "off", remember=controls.write)
        started = time.perf_counter()
        prepared = PreparedChat(messages, "ok", remember=controls.write)
        try:
            await asyncio.wait_for(self._recall_into(identity, messages, controls, prepared), self.settings.timeout_s)
        except TimeoutError:
            self._degrade(prepared, messages, "recall-timeout")
        except Exception as exc:  # memory trouble never fails a chat
            logger.warning("recall failed for %s: %s", identity.key.key_id, exc, exc_info=logger.isEnabledFor(10))
            self._degrade(prepared, messages, f"recall-error:{type(exc).__name__}")
        prepared.timings_ms["memory"] = (time.perf_counter() - started) * 1000
        self.stats.recalls += 1
        return prepared

    def _degrade(self, prepared: PreparedChat, messages: list[dict[str, Any]], reason: str) -> None:
        self.stats.degraded += 1
        prepared.messages, prepared.status, prepared.reason = messages, "degraded", reason
        prepared.recalled = prepared.core = 0

    async def _recall_into(
        self, identity: Identity, messages: list[dict[str, Any]], controls: MemoryControls, prepared: PreparedChat
    ) -> None:
        assert self.engine is not None
        if self.settings.layout == "naive":
            await self._recall_naive(identity, messages, controls, prepared)
            return
        digests = turn_digests(identity.scope, messages)
        newest = prompt_layout.newest_user_index(messages)
        blocks: dict[int, str] = {}
        for index, message in enumerate(messages):
            if message.get("role") == "user" and index != newest:
                if (block := self.log.get(digests[index])) is not None:
                    blocks[index] = block
        first_user = next((i for i, m in enumerate(messages) if m.get("role") == "user"), None)
        core_block = self.log.get(digests[first_user], CORE_SLOT) if first_user is not None else None
        # The core lookup (a store read) runs while recall embeds the query and scores BM25.
        core_lookup = asyncio.ensure_future(self._core_facts(identity)) if core_block is None else None
        try:
            top_k = self.settings.top_k if controls.top_k is None else controls.top_k
            query = prompt_layout.recall_query(messages)
            if newest is not None and top_k > 0 and query.strip():
                hits = await self.engine.recall(
                    query, identity.user, top_k, preset=controls.preset or self.settings.preset, tenant=identity.tenant
                )
                hits = _within_budget(hits, self.settings.token_budget)
                block = prompt_layout.render_recalled([(h.memory.text, h.memory.event_time) for h in hits])
                prepared.recalled = len(hits)
                if block:
                    blocks[newest] = block
                    self.log.put(digests[newest], block)
            if core_lookup is not None:
                core_facts = await core_lookup
                core_block = prompt_layout.render_core(core_facts)
                prepared.core = len(core_facts)
                if first_user is not None:
                    self.log.put(digests[first_user], core_block, CORE_SLOT)
            else:
                prepared.core = (core_block or "").count("\n- ")
        finally:
            if core_lookup is not None:
                if not core_lookup.done():
                    core_lookup.cancel()  # recall failed or ran out of time: nothing may outlive the request
                elif not core_lookup.cancelled():
                    core_lookup.exception()  # retrieved: a failure here is already the request's degradation
        prepared.messages = prompt_layout.apply_layout(messages, core_block or "", blocks)

    async def _recall_naive(
        self, identity: Identity, messages: list[dict[str, Any]], controls: MemoryControls, prepared: PreparedChat
    ) -> None:
        assert self.engine is not None
        core_facts = await self._core_facts(identity)
        top_k = self.settings.top_k if controls.top_k is None else controls.top_k
        query = prompt_layout.recall_query(messages)
        hits = []
        if top_k > 0 and query.strip():
            hits = await self.engine.recall(
                query, identity.user, top_k, preset=controls.preset or self.settings.preset, tenant=identity.tenant
            )
            hits = _within_budget(hits, self.settings.token_budget)
        recalled = prompt_layout.render_recalled([(h.memory.text, h.memory.event_time) for h in hits])
        prepared.core, prepared.recalled = len(core_facts), len(hits)
        prepared.messages = prompt_layout.apply_naive_layout(messages, [recalled, prompt_layout.render_core(core_facts)])

    async def _core_facts(self, identity: Identity) -> list[tuple[str, float | None]]:
        assert self.engine is not None
        core = getattr(self.engine, "core_memories", None)
        if core is None or self.settings.core_limit <= 0:
            return []
        memories = await core(identity.user, tenant=identity.tenant)
        return [(m.text, m.event_time) for m in memories[: self.settings.core_limit]]

    # --- after the response ----------------------------------------------------------------------------------

    def remember_exchange(
        self, identity: Identity, messages: Sequence[Mapping[str, Any]], answer: str, answer_id: str | None
    ) -> None:
        """Queue the finished exchange durably, in the background: the response is never delayed by it."""
        if self.engine is None or not answer.strip():
            return
        task = asyncio.get_running_loop().create_task(self._queue_exchange(identity, messages, answer, answer_id))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _queue_exchange(
        self, identity: Identity, messages: Sequence[Mapping[str, Any]], answer: str, answer_id: str | None
    ) -> None:
        assert self.engine is not None
        digests = turn_digests(identity.scope, messages)
        with_ids = [
            {"id": "msg-" + digests[i].hex()[:24], "role": m.get("role"), "content": prompt_layout.message_text(m)}
            | ({"name": m["name"]} if isinstance(m.get("name"), str) else {})
            for i, m in enumerate(messages)
        ]
        # The job id names this exchange (conversation so far + this answer): queued once however often the
        # background task or the queue retries, while two exchanges never share one (even if an upstream reuses ids).
        exchange = hashlib.sha256(digests[-1] + (answer_id or "").encode() + b"\x1e" + answer.encode()).hexdigest()
        answer_key = answer_id or "answer-" + exchange[:24]
        job_id = "chat-" + exchange[:32]
        job = WriteJob.for_exchange(
            identity.scope,
            with_ids,
            {"id": answer_key, "content": answer},
            conversation_id=identity.conversation_id,
            job_id=job_id,
        )
        try:
            await self.engine.pipeline.submit(job, wait=False)
            self.stats.queued_writes += 1
        except Exception:
            self.stats.failed_writes += 1
            logger.exception("could not queue the exchange for memory (job %s)", job_id)

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait for background queue writes (shutdown, tests)."""
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=timeout_s)


def _within_budget(hits: list[Any], budget: int) -> list[Any]:
    if budget <= 0:
        return hits
    kept, used = [], 0
    for hit in hits:
        cost = estimate_tokens(prompt_layout.clip(hit.memory.text)) + 8  # + quoting, date, list marker
        if used + cost > budget and kept:
            break
        kept.append(hit)
        used += cost
    return kept
