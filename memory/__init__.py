"""memproxy's long-term memory engine: vectors, a graph store, hybrid recall, durable writes.

Everything a caller needs is here; :class:`MemoryEngine` is the only way into memory (its parts are its own)::

    from memory import MemoryConfig, MemoryEngine
"""

from memory.browsing import InvalidCursor, InvalidExport, MemoryGraph
from memory.config import MemoryConfig, SchedulerConfig
from memory.engine import MemoryEngine
from memory.graph.base import UNCHANGED, GraphStoreError, NotFound, StoreUnavailable
from memory.graph.export_format import EARLIEST_S as EXPORT_EARLIEST_S
from memory.graph.export_format import LATEST_S as EXPORT_LATEST_S
from memory.graph.export_format import export_memory
from memory.metadata_keys import RESERVED_METADATA, is_core, is_pinned, reserved_keys, user_metadata
from memory.models import Entity, GraphHit, Memory, MemoryKind, Page, RelationType, Relationship, Scope
from memory.recall.presets import PRESETS, RecallPreset
from memory.reader import MemoryReader
from memory.recall.rankers import estimate_tokens
from memory.recall.recall import RecalledMemory
from memory.reembed import EmbedderChanged, reembed
from memory.scheduler import RetentionPeriod
from memory.stats import IndexStats, QueueStats
from memory.writes.queue_schema import QueueError

__all__ = [
    "PRESETS",
    "RESERVED_METADATA",
    "UNCHANGED",
    "EXPORT_EARLIEST_S",
    "EXPORT_LATEST_S",
    "EmbedderChanged",
    "Entity",
    "GraphHit",
    "GraphStoreError",
    "IndexStats",
    "InvalidCursor",
    "InvalidExport",
    "Memory",
    "MemoryConfig",
    "MemoryEngine",
    "MemoryGraph",
    "MemoryKind",
    "MemoryReader",
    "NotFound",
    "QueueError",
    "Page",
    "QueueStats",
    "RecallPreset",
    "RecalledMemory",
    "RelationType",
    "Relationship",
    "RetentionPeriod",
    "SchedulerConfig",
    "Scope",
    "StoreUnavailable",
    "estimate_tokens",
    "export_memory",
    "is_core",
    "is_pinned",
    "reembed",
    "reserved_keys",
    "user_metadata",
]
