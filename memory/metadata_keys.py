"""The metadata keys the engine keeps for itself — core membership (:mod:`memory.scheduler`), importance decay and
the slot a memory states (:mod:`memory.writes.slots`) — and what a caller may see and change of the rest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from memory.graph.base import CORE_SINCE, core_since
from memory.models import Memory
from memory.scheduler import CORE, CORE_LEFT_AT, DECAY, PINNED
from memory.writes.extraction import REPLIED_TO

RESERVED_METADATA = frozenset({CORE, CORE_SINCE, CORE_LEFT_AT, DECAY, "slot", "slot_value", REPLIED_TO})
"""Not shown by :func:`user_metadata`, and refused in a caller's metadata (:func:`reserved_keys`)."""


def reserved_keys(metadata: Mapping[str, Any] | None) -> list[str]:
    """The engine's own keys among ``metadata``'s, sorted (empty: the caller may write it)."""
    return sorted(RESERVED_METADATA & set(metadata or {}))


def user_metadata(memory: Memory) -> dict[str, Any]:
    """The memory's metadata without the engine's bookkeeping."""
    return {key: value for key, value in memory.metadata.items() if key not in RESERVED_METADATA}


def is_core(memory: Memory) -> bool:
    """Part of its user's core memory (pinned or promoted)."""
    return core_since(memory.metadata) is not None


def is_pinned(memory: Memory) -> bool:
    """Put into core memory by the user (never demoted by the scheduler)."""
    return memory.metadata.get(CORE) == PINNED
