"""What memproxy added to each turn of a conversation, so later turns can repeat it byte for byte.

A client re-sends the conversation as it saw it: without the recalled blocks memproxy inserted. If those blocks were
simply dropped in the next request, the prompt would differ from the cached one from the first recalled block on
and vLLM would recompute nearly everything. So each block is remembered under a digest of the scope and the
conversation up to (and including) the user message it belongs to, and re-inserted there; the core memory block is
remembered the same way for the conversation's opening, so a promotion changes new conversations only.

The log is a bounded LRU in memory: after a restart (or an eviction) a turn is simply sent as the client sent it,
which costs cache hits, never correctness.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from memory import Scope

CORE_SLOT = "core"
NEXT_SLOT = "next"
"""Under the digest of a conversation ending with an answer: the block anticipated for the next user message."""


def turn_digests(scope: Scope, messages: Sequence[Mapping[str, Any]]) -> list[bytes]:
    """``digests[i]`` identifies the conversation up to and including ``messages[i]`` (role, name and content only;
    ids, timestamps or other per-request fields a client may add do not matter)."""
    running = hashlib.sha256(json.dumps([scope.tenant, scope.user]).encode())
    digests: list[bytes] = []
    for message in messages:
        canonical = json.dumps(
            [message.get("role"), message.get("name"), message.get("content")],
            ensure_ascii=False,
            separators=(",", ":"),
            sort_keys=True,
        )
        running.update(canonical.encode())
        running.update(b"\x1e")
        digests.append(running.copy().digest())
    return digests


class InjectionLog:
    def __init__(self, max_entries: int = 50_000) -> None:
        self._entries: OrderedDict[tuple[bytes, str], str] = OrderedDict()
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes, slot: str = "recall") -> str | None:
        key = (digest, slot)
        block = self._entries.get(key)
        if block is not None:
            self._entries.move_to_end(key)
        return block

    def discard(self, digest: bytes, slot: str = "recall") -> None:
        self._entries.pop((digest, slot), None)

    def put(self, digest: bytes, block: str, slot: str = "recall") -> None:
        key = (digest, slot)
        self._entries[key] = block
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
