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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from memory.engine import MemoryEngine
from memory.models import Memory
from memory.recall.rankers import estimate_tokens
from memory.writes.jobs import WriteJob
from proxy.chat import prompt_layout
from proxy.chat.injections import CORE_SLOT, NEXT_SLOT, InjectionLog, turn_digests
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
    anticipate: bool = True
    """After each answer, recall for the next turn and prefill that block into the upstream's cache (cache-aware)."""
    late_top_k: int = 2
    """With an anticipated block in place: of this many memories most relevant to the newest message, those the
    prompt lacks are added (each is prefilled while the user waits: the anticipated block was prefilled beforehand)."""


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
        self.stats.recalls += 1  # counted as it starts: a next-turn prefill waits for a quiet spell (see prefill)
        try:
            await asyncio.wait_for(self._recall_into(identity, messages, controls, prepared), self.settings.timeout_s)
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
        anticipated = ""
        if newest is not None and newest > 0 and messages[newest - 1].get("role") == "assistant":
            anticipated = self.log.get(digests[newest - 1], NEXT_SLOT) or ""
        # The core lookup (a store read) runs while recall embeds the query and scores BM25.
        core_lookup = asyncio.ensure_future(self._core_facts(identity)) if core_block is None else None
        in_prompt = InPrompt(
            _shown(core_block or "", *blocks.values(), anticipated), digests, core_pending=core_lookup is not None
        )
        try:
            top_k = self.settings.top_k if controls.top_k is None else controls.top_k
            if anticipated:
                # The block prefilled for this turn is in place, recalled from the last exchange: only what it and
                # the earlier blocks lack among the late_top_k memories most relevant to the newest message itself
                # is added (each added token is prefilled while the user waits). Shown memories take their places
                # in that top k, so on a topic the prompt already covers nothing is added.
                top_k = min(top_k, self.settings.late_top_k)
            query = prompt_layout.recall_query(messages, context=not anticipated)
            hits = []
            if newest is not None and top_k > 0 and query.strip():
                hits = await self.engine.recall(
                    query, identity.user, top_k, preset=controls.preset or self.settings.preset,
                    tenant=identity.tenant, skip=in_prompt.own if anticipated else in_prompt,
                )  # fmt: skip
                if anticipated:
                    hits = [hit for hit in hits if not in_prompt.shown(hit.memory)]
            if core_lookup is not None:
                core_facts = await core_lookup
                core_block = prompt_layout.render_core(core_facts)
                prepared.core = len(core_facts)
                if first_user is not None:
                    self.log.put(digests[first_user], core_block, CORE_SLOT)
                core_texts = prompt_layout.quoted_texts(core_block)
                hits = [hit for hit in hits if not _is_shown(hit.memory.text, core_texts)]
            else:
                prepared.core = (core_block or "").count("\n- ")
            if newest is not None and (hits or anticipated):
                fresh = _within_budget(hits, self.settings.token_budget)
                late = prompt_layout.render_recalled(
                    [(h.memory.text, h.memory.event_time) for h in fresh], continued=bool(anticipated)
                )
                block = prompt_layout.join_blocks(anticipated, late)
                prepared.recalled = len(fresh) + len(prompt_layout.quoted_texts(anticipated))
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

    @property
    def anticipates(self) -> bool:
        return self.engine is not None and self.settings.anticipate and self.settings.layout == "cache-aware"

    async def anticipate(
        self,
        identity: Identity,
        messages: Sequence[Mapping[str, Any]],
        laid_out: Sequence[Mapping[str, Any]],
        answer: str,
        controls: MemoryControls,
        *,
        align: Callable[[list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]] | None = None,
    ) -> list[dict[str, Any]] | None:
        """After a complete answer: recall what the next turn will likely need (from this exchange), log it as the
        block the next user message will carry, and return the messages that prefill it upstream — the prompt as
        sent (``laid_out``), the answer, and the block as the start of the next user message. None: nothing new.
        ``align`` may pad the block (it gets and returns those messages) before it is logged."""
        if not self.anticipates:
            return None
        assert self.engine is not None
        top_k = self.settings.top_k if controls.top_k is None else controls.top_k
        query = prompt_layout.anticipation_query(messages, answer)
        if top_k <= 0 or not query:
            return None
        answered = {"role": "assistant", "content": answer}
        digests = turn_digests(identity.scope, [*messages, answered])
        in_prompt = InPrompt(_shown(*(prompt_layout.message_text(message) for message in laid_out)), digests)
        hits = await asyncio.wait_for(
            self.engine.recall(
                query, identity.user, top_k, preset=controls.preset or self.settings.preset,
                tenant=identity.tenant, skip=in_prompt,
            ),
            self.settings.timeout_s,
        )  # fmt: skip
        fresh = _within_budget(hits, self.settings.token_budget)
        block = prompt_layout.render_recalled([(h.memory.text, h.memory.event_time) for h in fresh])
        if not block:
            return None
        prefill = [*(dict(message) for message in laid_out), answered, {"role": "user", "content": block}]
        if align is not None:
            prefill = await align(prefill)
        self.log.put(digests[-1], prefill[-1]["content"], NEXT_SLOT)
        return prefill

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
        answer_key = message_id(answered)
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


class InPrompt:
    """Whether a memory is in the prompt already: shown by one of memproxy's blocks, or written from one of the
    conversation's own messages (its provenance is that message's id). ``core_pending``: the core block is being
    looked up as recall runs, so core memories count as shown (the block is checked again once it is rendered).

    Called, it says both; :meth:`own` and :meth:`shown` say each on its own."""

    def __init__(self, shown: set[str], digests: Sequence[bytes], *, core_pending: bool = False) -> None:
        self._shown = shown
        self._message_ids = {message_id(digest) for digest in digests}
        self._core_pending = core_pending

    def __call__(self, memory: Memory) -> bool:
        return self.own(memory) or self.shown(memory)

    def own(self, memory: Memory) -> bool:
        """Written from one of the conversation's own messages."""
        return not self._message_ids.isdisjoint(memory.source_ids)

    def shown(self, memory: Memory) -> bool:
        """Shown by one of memproxy's blocks (or about to be: a core memory while the core block is pending)."""
        if _is_shown(memory.text, self._shown):
            return True
        return self._core_pending and memory.metadata.get("core_since") is not None


def message_id(digest: bytes) -> str:
    """The id a conversation's message gets as a memory's provenance."""
    return "msg-" + digest.hex()[:24]


def _shown(*texts: str) -> set[str]:
    """The memory texts memproxy's blocks in ``texts`` already show."""
    return set().union(*(prompt_layout.quoted_texts(text) for text in texts if text))


def _is_shown(text: str, shown: set[str]) -> bool:
    return text in shown or prompt_layout.clip(text) in shown  # a recalled block shows texts clipped


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
