"""What a chat asks of memory: recall into its prompt before it goes upstream (laid out for the prefix cache, see
:mod:`proxy.chat.prompt_layout`), the block anticipated for the next turn (sent ahead by :mod:`proxy.chat.prefill`),
and remembering the exchange once the answer is complete.

Memory never fails or slows a chat beyond its budget: recall that errors or runs past its timeout is dropped and
the response says ``degraded``; the exchange goes to the durable queue in the background, so a store outage only
delays it. Every recall of a chat — its own, late recall under a prefilled block, the next turn's — is one call to
:meth:`MemoryEngine.recall` with the chat's :class:`RecallPlan`: one top k, one preset, one token budget.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from memory import Memory, MemoryEngine, QueueError, RecalledMemory
from proxy.chat import prompt_layout
from proxy.chat.in_prompt import InPrompt, is_shown, message_id, shown_in
from proxy.chat.injections import CORE_SLOT, NEXT_SLOT, InjectionLog, turn_digests
from proxy.chat.memory_controls import MemoryControls
from proxy.identity import Identity
from proxy.memory_access import MemoryAccess, MemoryUnavailable
from proxy.settings import ChatMemorySettings

logger = logging.getLogger(__name__)

MemoryStatus = Literal["ok", "off", "skipped", "degraded"]


@dataclass(frozen=True, slots=True)
class RecallPlan:
    """How a chat recalls, resolved once from the settings and the request's controls."""

    top_k: int
    preset: str | None
    """None: the engine's default preset."""
    token_budget: int
    at: float | None = None
    """When the chat happens (a past exchange being imported: its time); None = now."""


@dataclass(slots=True)
class PreparedChat:
    """The messages to send upstream and what to tell the client about memory."""

    messages: list[dict[str, Any]]
    status: MemoryStatus
    plan: RecallPlan
    """How this chat recalls (and the next turn's block is recalled)."""
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


@dataclass(frozen=True, slots=True)
class NextTurn:
    """A block anticipated for the next user message of a conversation that just got its answer."""

    messages: list[dict[str, Any]]
    """The prompt as sent, the answer, and the block as the start of the next user message (what a prefill sends)."""
    digest: bytes
    """The conversation up to the answer: where the block is logged for the next turn to find."""


RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
RETRY_LIMIT = 10_000
"""Most exchanges held in memory while the write queue cannot take them (a full disk)."""


@dataclass(slots=True)
class ChatMemoryStats:
    recalls: int = 0
    degraded: int = 0
    skipped_side_requests: int = 0
    queued_writes: int = 0
    failed_writes: int = 0
    late_writes: int = 0
    """Exchanges whose answer went before they were on disk (the queue was slower than ``queue_timeout_ms``)."""
    waiting_writes: int = 0
    """Exchanges held in this process because the queue could not take them (a full disk): retried until it can."""


class ChatMemory:
    def __init__(self, memory: MemoryAccess, settings: ChatMemorySettings, *, log: InjectionLog | None = None) -> None:
        self._memory = memory
        self.settings = settings
        self.log = log or InjectionLog()
        self.stats = ChatMemoryStats()
        self._writes: set[asyncio.Task[None]] = set()

    def plan(self, controls: MemoryControls) -> RecallPlan:
        top_k = self.settings.top_k if controls.top_k is None else controls.top_k
        return RecallPlan(top_k, controls.preset, self.settings.token_budget, controls.timestamp)

    @property
    def anticipates(self) -> bool:
        """Whether the next turn's block is recalled and prefilled after each answer."""
        return self._memory.enabled and self.settings.anticipate and self.settings.layout == "cache-aware"

    async def prepare(self, identity: Identity, messages: list[dict[str, Any]], controls: MemoryControls) -> PreparedChat:
        plan = self.plan(controls)
        if prompt_layout.is_side_request(messages, self.settings.side_request_markers):
            self.stats.skipped_side_requests += 1
            return PreparedChat(messages, "skipped", plan, reason="side-request")
        try:
            engine = self._memory.engine()
        except MemoryUnavailable as exc:
            if exc.reason is None:
                return PreparedChat(messages, "off", plan)
            self.stats.degraded += 1
            return PreparedChat(messages, "degraded", plan, reason=exc.reason)
        if not controls.recall:
            return PreparedChat(messages, "off", plan, remember=controls.write)
        started = time.perf_counter()
        prepared = PreparedChat(messages, "ok", plan, remember=controls.write)
        self.stats.recalls += 1  # counted as it starts: a next-turn prefill waits for a quiet spell (see prefill)
        recall_into = self._recall_naive if self.settings.layout == "naive" else self._recall_into
        try:
            await asyncio.wait_for(recall_into(engine, identity, prepared), self.settings.timeout_ms / 1000)
        except TimeoutError:
            self._degrade(prepared, messages, "recall-timeout")
        except Exception as exc:  # memory trouble never fails a chat
            logger.warning("recall failed for %s: %s", identity.key.key_id, exc, exc_info=logger.isEnabledFor(10))
            self._degrade(prepared, messages, f"recall-error:{type(exc).__name__}")
        prepared.timings_ms["memory"] = (time.perf_counter() - started) * 1000
        return prepared

    def withdraw(self, identity: Identity, prepared: PreparedChat, messages: list[dict[str, Any]], reason: str) -> None:
        """Take back what :meth:`prepare` added (the upstream refused the prompt it made, e.g. as longer than the
        model's context): the chat goes on as the client sent it, degraded. What was logged for this turn is
        forgotten, so later turns do not repeat a block the upstream never saw."""
        self._degrade(prepared, messages, reason)
        newest = prompt_layout.newest_user_index(messages)
        if newest is None:
            return
        digest = turn_digests(identity.scope, messages[: newest + 1])[newest]
        self.log.discard(digest)
        if all(message.get("role") != "user" for message in messages[:newest]):
            self.log.discard(digest, CORE_SLOT)  # the conversation's opening: its core block was not sent either

    def _degrade(self, prepared: PreparedChat, messages: list[dict[str, Any]], reason: str) -> None:
        """The chat goes on as the client sent it."""
        self.stats.degraded += 1
        prepared.messages, prepared.status, prepared.reason = messages, "degraded", reason
        prepared.recalled = prepared.core = 0

    async def _recall(
        self,
        engine: MemoryEngine,
        identity: Identity,
        query: str,
        plan: RecallPlan,
        *,
        top_k: int | None = None,
        skip: Callable[[Memory], bool] | None = None,
    ) -> list[RecalledMemory]:
        """The one recall of the chat path: the plan's preset and token budget, its top k unless narrowed."""
        top_k = plan.top_k if top_k is None else top_k
        if top_k <= 0 or not query.strip():
            return []
        return await engine.recall(
            query, identity.user, top_k, preset=plan.preset, token_budget=plan.token_budget, tenant=identity.tenant,
            skip=skip, at=plan.at,
        )  # fmt: skip

    async def _recall_into(self, engine: MemoryEngine, identity: Identity, prepared: PreparedChat) -> None:
        """The cache-aware layout: earlier turns keep their blocks, the core block follows the system prompt, and
        the newest message gets what recall finds that the prompt lacks."""
        messages, plan = prepared.messages, prepared.plan
        digests = turn_digests(identity.scope, messages)
        newest = prompt_layout.newest_user_index(messages)
        blocks: dict[int, str] = {}
        for index, message in enumerate(messages):
            if message.get("role") == "user" and index != newest:
                if (block := self.log.get(digests[index])) is not None:
                    blocks[index] = block
        first_user = next((i for i, m in enumerate(messages) if m.get("role") == "user"), None)
        core_block = self.log.get(digests[first_user], CORE_SLOT) if first_user is not None else None
        anticipated = ""
        if newest is not None and newest > 0 and messages[newest - 1].get("role") == "assistant":
            anticipated = self.log.get(digests[newest - 1], NEXT_SLOT) or ""
        # The core lookup (a store read) runs while recall embeds the query and scores BM25.
        core_lookup = asyncio.ensure_future(self._core_facts(engine, identity)) if core_block is None else None
        in_prompt = InPrompt(
            shown_in(core_block or "", *blocks.values(), anticipated), digests, core_pending=core_lookup is not None
        )
        try:
            hits: list[RecalledMemory] = []
            if newest is not None:
                query = prompt_layout.recall_query(messages, context=not anticipated)
                if anticipated:
                    # The block prefilled for this turn is in place, recalled from the last exchange: only what it
                    # and the earlier blocks lack among the late_top_k memories most relevant to the newest message
                    # itself is added (each added token is prefilled while the user waits). Shown memories take
                    # their places in that top k, so on a topic the prompt already covers nothing is added.
                    late_k = min(plan.top_k, self.settings.late_top_k)
                    hits = await self._recall(engine, identity, query, plan, top_k=late_k, skip=in_prompt.own)
                    hits = [hit for hit in hits if not in_prompt.shown(hit.memory)]
                else:
                    hits = await self._recall(engine, identity, query, plan, skip=in_prompt)
            if core_lookup is not None:
                core_facts = await core_lookup
                core_block = prompt_layout.render_core(core_facts)
                prepared.core = len(core_facts)
                if first_user is not None:
                    self.log.put(digests[first_user], core_block, CORE_SLOT)
                core_texts = prompt_layout.quoted_texts(core_block)
                hits = [hit for hit in hits if not is_shown(hit.memory.text, core_texts)]
            else:
                prepared.core = (core_block or "").count("\n- ")
            if newest is not None and (hits or anticipated):
                late = prompt_layout.render_recalled(
                    [(h.memory.text, h.memory.event_time) for h in hits], continued=bool(anticipated)
                )
                block = prompt_layout.join_blocks(anticipated, late)
                prepared.recalled = len(hits) + len(prompt_layout.quoted_texts(anticipated))
                if block:
                    blocks[newest] = block
                    self.log.put(digests[newest], block)
        finally:
            if core_lookup is not None:
                if not core_lookup.done():
                    core_lookup.cancel()  # recall failed or ran out of time: nothing may outlive the request
                elif not core_lookup.cancelled():
                    core_lookup.exception()  # retrieved: a failure here is already the request's degradation
        prepared.messages = prompt_layout.apply_layout(messages, core_block or "", blocks)

    async def _recall_naive(self, engine: MemoryEngine, identity: Identity, prepared: PreparedChat) -> None:
        """The benchmark baseline: core and recalled memories at the top of the system prompt, nothing repeated."""
        core_facts = await self._core_facts(engine, identity)
        hits = await self._recall(engine, identity, prompt_layout.recall_query(prepared.messages), prepared.plan)
        recalled = prompt_layout.render_recalled([(h.memory.text, h.memory.event_time) for h in hits])
        prepared.core, prepared.recalled = len(core_facts), len(hits)
        prepared.messages = prompt_layout.apply_naive_layout(
            prepared.messages, [recalled, prompt_layout.render_core(core_facts)]
        )

    async def _core_facts(self, engine: MemoryEngine, identity: Identity) -> list[tuple[str, float | None]]:
        if self.settings.core_limit <= 0:
            return []
        memories = await engine.core_memories(identity.user, tenant=identity.tenant)
        return [(m.text, m.event_time) for m in memories[: self.settings.core_limit]]

    # --- after the response ----------------------------------------------------------------------------------

    async def anticipate(
        self,
        identity: Identity,
        messages: Sequence[Mapping[str, Any]],
        laid_out: Sequence[Mapping[str, Any]],
        answer: str,
        plan: RecallPlan,
    ) -> NextTurn | None:
        """After a complete answer: recall what the next turn will likely need (from this exchange). None: nothing
        the prompt as sent (``laid_out``) does not hold already. The caller logs the block it sends with
        :meth:`expect`."""
        engine = self._memory.engine()
        query = prompt_layout.anticipation_query(messages, answer)
        answered = {"role": "assistant", "content": answer}
        digests = turn_digests(identity.scope, [*messages, answered])
        in_prompt = InPrompt(shown_in(*(prompt_layout.message_text(message) for message in laid_out)), digests)
        hits = await asyncio.wait_for(
            self._recall(engine, identity, query, plan, skip=in_prompt), self.settings.timeout_ms / 1000
        )
        block = prompt_layout.render_recalled([(h.memory.text, h.memory.event_time) for h in hits])
        if not block:
            return None
        prefill = [*(dict(message) for message in laid_out), answered, {"role": "user", "content": block}]
        return NextTurn(prefill, digests[-1])

    def expect(self, next_turn: NextTurn, block: str) -> None:
        """The next user message of that conversation carries ``block`` (as prefilled upstream)."""
        self.log.put(next_turn.digest, block, NEXT_SLOT)

    async def remember_exchange(
        self,
        identity: Identity,
        messages: Sequence[Mapping[str, Any]],
        answer: str,
        answer_id: str | None,
        at: float | None = None,
    ) -> None:
        """Queue the finished exchange durably, and return once it is on disk: the caller holds the end of the answer
        until then, so a client that saw a whole answer can count on it being remembered, even across kill -9. The
        wait is bounded by ``queue_timeout_ms``: past it the write goes on in the background (``late_writes``) and
        the answer goes. A failed queue write is logged and counted, never raised. ``at``: when it happened
        (None: now). An answer to no message (a Responses call with only ``previous_response_id``) is not one."""
        if not self._memory.enabled or not answer.strip() or not messages:
            return
        work = self._queue_exchange(identity, messages, answer, answer_id, at)
        task = asyncio.get_running_loop().create_task(work)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        try:
            # Shielded: a client that leaves (cancelling this wait) does not cancel the write.
            await asyncio.wait_for(asyncio.shield(task), self.settings.queue_timeout_ms / 1000)
        except TimeoutError:
            self.stats.late_writes += 1
            logger.warning("the exchange was not queued within %.0f ms; the answer goes first",
                           self.settings.queue_timeout_ms)  # fmt: skip

    async def _queue_exchange(
        self,
        identity: Identity,
        messages: Sequence[Mapping[str, Any]],
        answer: str,
        answer_id: str | None,
        at: float | None,
    ) -> None:
        digests = turn_digests(identity.scope, messages)
        with_ids = [
            {"id": message_id(digests[i]), "role": m.get("role"), "content": prompt_layout.message_text(m)}
            | ({"name": m["name"]} if isinstance(m.get("name"), str) else {})
            for i, m in enumerate(messages)
        ]
        # The job id names this exchange (conversation so far + this answer): queued once however often the
        # background task or the queue retries, while two exchanges never share one (even if an upstream reuses ids).
        exchange = hashlib.sha256(digests[-1] + (answer_id or "").encode() + b"\x1e" + answer.encode()).hexdigest()
        # The answer's id is the one it has as a message of the conversation the client sends next, so that
        # recall there knows a memory written from it is in the prompt already (see InPrompt).
        answered = turn_digests(identity.scope, [*messages, {"role": "assistant", "content": answer}])[-1]
        job_id = "chat-" + exchange[:32]
        answer_message = {"id": message_id(answered), "content": prompt_layout.without_echoed_blocks(answer)}
        await self._queue_until_taken(job_id, lambda: self._memory.engine().remember_exchange(
            with_ids, answer_message, user_id=identity.user, tenant=identity.tenant,
            conversation_id=identity.conversation_id, timestamp=at, job_id=job_id,
        ))  # fmt: skip

    async def _queue_until_taken(self, job_id: str, queue: Callable[[], Awaitable[object]]) -> None:
        """``queue()`` until the write queue takes it. While the queue cannot (a full disk, an unwritable file)
        the exchange waits here and is retried, backing off; past ``RETRY_LIMIT`` waiting exchanges a new one is
        dropped (``failed_writes``), as is one that fails for any other reason."""
        delay, waiting = RETRY_FIRST_S, False
        try:
            while True:
                try:
                    await queue()
                    self.stats.queued_writes += 1
                    return
                except (QueueError, OSError) as exc:
                    if not waiting:
                        if self.stats.waiting_writes >= RETRY_LIMIT:
                            self.stats.failed_writes += 1
                            logger.error("write queue unavailable and %d exchanges wait already; job %s dropped: %s",
                                         RETRY_LIMIT, job_id, exc)  # fmt: skip
                            return
                        waiting = True
                        self.stats.waiting_writes += 1
                        logger.warning("write queue unavailable; job %s waits and is retried: %s", job_id, exc)
                except Exception:
                    self.stats.failed_writes += 1
                    logger.exception("could not queue the exchange for memory (job %s)", job_id)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        finally:
            if waiting:
                self.stats.waiting_writes -= 1

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait for background queue writes (shutdown, tests)."""
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=timeout_s)
