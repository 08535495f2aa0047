"""What a chat's prompt already holds of the user's memories, so recall does not spend a place on it twice: the
memories shown by memproxy's blocks, and those written from the conversation's own messages."""

from __future__ import annotations

from collections.abc import Sequence

from memory import Memory, is_core
from proxy.chat import prompt_layout


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
        if is_shown(memory.text, self._shown):
            return True
        return self._core_pending and is_core(memory)


def message_id(digest: bytes) -> str:
    """The id a conversation's message gets as a memory's provenance."""
    return "msg-" + digest.hex()[:24]


def shown_in(*texts: str) -> set[str]:
    """The memory texts memproxy's blocks in ``texts`` already show."""
    return set().union(*(prompt_layout.quoted_texts(text) for text in texts if text))


def is_shown(text: str, shown: set[str]) -> bool:
    return text in shown or prompt_layout.clip(text) in shown  # a recalled block shows texts clipped
