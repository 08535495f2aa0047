"""Prefilling the next turn: after an answer, the block anticipated for the next user message is sent upstream as a
one-token request, so vLLM computes its KV (and caches it) while the user reads and types, not after they send.

The prefill request is the chat request as it was forwarded (same model or adapter, same ``cache_salt``, same tools,
so the same cache namespace and the same rendered prompt), with the answer and the anticipated block appended and
``continue_final_message`` set: vLLM renders the block as the open start of the next user message, which is exactly
how the next request will begin. Prefills are best effort: bounded in number, never retried, and their failures
only logged; a missing or evicted prefill costs the next turn that prefill's time, nothing else.

vLLM caches whole KV blocks only (128 tokens on CPU): the tokens of a prefill past its last full block would be
computed again by the next turn, while the user waits. So the anticipated block is padded (:func:`align_block`,
with vLLM's ``/tokenize``) until the prefill prompt ends on a block boundary; the next turn then computes only its
own message and what late recall adds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.chat import prompt_layout
from proxy.chat.memory import ChatMemory, PreparedChat
from proxy.errors import ProxyError
from proxy.identity import Identity
from proxy.settings import PrefillSettings
from proxy.upstream import CHAT_PATH, TokenCount, UpstreamClient, encode_body

logger = logging.getLogger(__name__)

_DROPPED = (
    "stream", "stream_options", "n", "logprobs", "top_logprobs", "response_format", "max_completion_tokens",
    "tool_choice", "parallel_tool_calls", "prompt_logprobs", "echo", "best_of", "min_tokens", "guided_json",
    "guided_regex", "guided_choice", "guided_grammar", "structured_outputs",
)  # fmt: skip
"""Fields of the forwarded body that would only cost work (or be refused) on a one-token prefill. ``tools`` stays:
chat templates render it into the prompt."""


def prefill_body(forwarded: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    body = {key: value for key, value in forwarded.items() if key not in _DROPPED}
    body.update(
        messages=list(messages),
        max_tokens=1,
        add_generation_prompt=False,
        continue_final_message=True,
    )
    return body


_TOKENIZE_FIELDS = ("model", "tools", "chat_template", "chat_template_kwargs", "documents", "mm_processor_kwargs")
"""Fields of the forwarded body that change how vLLM renders the prompt; its ``/tokenize`` takes them too."""
ALIGN_TRIES = 3


def tokenize_body(forwarded: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """vLLM's ``/tokenize`` request for the prompt a prefill with ``messages`` renders."""
    body = {key: forwarded[key] for key in _TOKENIZE_FIELDS if key in forwarded}
    body.update(messages=list(messages), add_generation_prompt=False, continue_final_message=True)
    return body


MAX_PADDED_SHARE = 0.75
"""No padding once the padded prompt would fill more than this share of the context: near the end of the context
window every token is worth more than a cache block recomputed."""


async def align_block(
    messages: Sequence[Mapping[str, Any]],
    count: Callable[[list[dict[str, Any]]], Awaitable[TokenCount]],
    block_tokens: int,
) -> list[dict[str, Any]] | None:
    """The prefill ``messages`` with the anticipated block (the last message) padded so that the rendered prompt is a
    whole number of ``block_tokens``; ``count`` measures a candidate. None if the padding would crowd the context
    (see ``MAX_PADDED_SHARE``) or none within ``ALIGN_TRIES`` counts lands on a boundary (an odd tokenizer): the
    caller prefills unpadded."""
    base = [dict(message) for message in messages]
    block = base[-1]["content"]
    measured = await count(base)
    units = -measured.count % block_tokens
    if units == 0:
        return base
    if measured.limit and measured.count + units > measured.limit * MAX_PADDED_SHARE:
        return None
    for _ in range(ALIGN_TRIES):
        candidate = [*base[:-1], {**base[-1], "content": prompt_layout.pad_block(block, units)}]
        over = (await count(candidate)).count % block_tokens
        if over == 0:
            return candidate
        # The line's own newline (or a merge) moved the count: shorten by what it overshot, or reach the next one.
        units = units - over if units > over else units + block_tokens - over
    return None


@dataclass(slots=True)
class PrefillStats:
    prefilled: int = 0
    nothing_new: int = 0
    """Answers after which recall found nothing the prompt did not already hold."""
    skipped_busy: int = 0
    failed: int = 0
    unaligned: int = 0
    """Prefills sent without padding to a block boundary (the upstream could not count tokens, or no padding fit)."""


class PrefillRunner:
    """Background prefills, at most ``max_in_flight`` at once, each going ahead only if no chat arrived while it
    waited (:meth:`idle_for`): a prefill is idle-time work (the user reading and typing). Under load the proxy's and
    the upstream's time goes to chats, and a next turn whose prefill was skipped computes its block itself."""

    def __init__(self, max_in_flight: int = 4, *, delay_s: float = 0.25) -> None:
        """``delay_s``: how long the proxy must stay free of new chats after an answer before its prefill starts
        (see :meth:`idle_for`); a reader takes far longer than this to type the next message."""
        self._max = max_in_flight
        self.delay_s = delay_s
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = PrefillStats()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def has_room(self) -> bool:
        if self._max > 0 and len(self._tasks) < self._max:
            return True
        self.stats.skipped_busy += 1
        return False

    async def idle_for(self, activity: Callable[[], int]) -> bool:
        """Wait ``delay_s``; True if ``activity`` (a count of chats started) did not move meanwhile. A prefill on a
        busy proxy would take CPU (its recall) and upstream time from chats that are waiting."""
        before = activity()
        await asyncio.sleep(self.delay_s)
        if activity() != before:
            self.stats.skipped_busy += 1
            return False
        return True

    def start(self, work: Coroutine[Any, Any, bool | None]) -> None:
        """Run ``work`` (True: it prefilled; False: it had nothing to prefill; None: it stood down for chats) in
        the background."""
        task = asyncio.get_running_loop().create_task(self._run(work), name="memproxy-prefill")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, work: Coroutine[Any, Any, bool | None]) -> None:
        try:
            outcome = await work
            if outcome:
                self.stats.prefilled += 1
            elif outcome is not None:
                self.stats.nothing_new += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - best effort: the next turn computes the block itself
            self.stats.failed += 1
            logger.info("next-turn prefill failed: %s", exc, exc_info=logger.isEnabledFor(logging.DEBUG))

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait for the prefills running now (tests, benchmarks)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def close(self) -> None:
        """Cancel what is still running (shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)


@dataclass(frozen=True, slots=True)
class ForwardedChat:
    """One chat as forwarded: what the work after its answer (remember it, prefill the next turn) needs."""

    identity: Identity
    messages: list[dict[str, Any]]
    """As the client sent them."""
    prepared: PreparedChat
    forwarded: dict[str, Any]
    """The body as sent upstream (its model, tools and salt render the prompt)."""
    upstream: UpstreamClient
    """Where it went: the user's replica, where the next turn goes too."""


class NextTurnPrefill:
    """After a complete answer, the block anticipated for the next user message (:meth:`ChatMemory.anticipate`) is
    padded to the upstream's KV block boundary (counted by its tokenizer, :func:`align_block`), logged for the next
    turn (:meth:`ChatMemory.expect`) and sent to the user's replica as a one-token request, in the background."""

    def __init__(self, memory: ChatMemory, settings: PrefillSettings) -> None:
        self._memory = memory
        self.align_tokens = settings.align_tokens
        self.runner = PrefillRunner(settings.max_in_flight, delay_s=settings.delay_ms / 1000)

    def after_answer(self, chat: ForwardedChat, answer: str) -> None:
        if chat.prepared.status == "ok" and answer.strip() and self._memory.anticipates and self.runner.has_room():
            self.runner.start(self._prefill(chat, answer))

    async def _prefill(self, chat: ForwardedChat, answer: str) -> bool | None:
        if not await self.runner.idle_for(lambda: self._memory.stats.recalls):
            return None
        next_turn = await self._memory.anticipate(
            chat.identity, chat.messages, chat.prepared.messages, answer, chat.prepared.plan
        )
        if next_turn is None:
            return False
        prefill = await self._aligned(next_turn.messages, chat)
        self._memory.expect(next_turn, prefill[-1]["content"])
        await chat.upstream.post_json(CHAT_PATH, encode_body(prefill_body(chat.forwarded, prefill)))
        return True

    async def _aligned(self, messages: list[dict[str, Any]], chat: ForwardedChat) -> list[dict[str, Any]]:
        """The prefill with its block padded to end on the upstream's KV block boundary; unpadded if the upstream
        cannot count tokens (not vLLM) or no padding fits."""
        if self.align_tokens <= 0:
            return messages

        async def count(candidate: list[dict[str, Any]]) -> TokenCount:
            return await chat.upstream.count_tokens(encode_body(tokenize_body(chat.forwarded, candidate)))

        try:
            aligned = await align_block(messages, count, self.align_tokens)
        except (ProxyError, ValueError) as exc:
            logger.debug("could not align the next-turn prefill: %s", exc)
            aligned = None
        if aligned is None:
            self.runner.stats.unaligned += 1
            return messages
        return aligned
