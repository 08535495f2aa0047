"""A revision: a new version of a memory, with new text, that supersedes it (a ``"revision"`` :class:`WriteJob`).

The new version keeps the memory's kind, importance, metadata (core membership included), provenance, event time
and expiry; its entities and its slot are found again in the new text, as for any stated memory
(:func:`memory.writes.extraction.explicit_memory`). Its id derives from the job id, so a replayed job commits the
same version, once.
"""

from __future__ import annotations

from memory.models import Memory, normalise_entity
from memory.writes.extraction import ExtractedMemory, explicit_memory
from memory.writes.jobs import WriteJob

SLOT_KEYS = ("slot", "slot_value")


def revision_id(job: WriteJob) -> str:
    """The id of the version a revision job commits."""
    return f"{job.job_id}-0"


def revised(old: Memory, job: WriteJob) -> tuple[Memory, ExtractedMemory]:
    """The new version of ``old`` that the revision ``job`` commits, and what was extracted of its text (for its
    entities)."""
    metadata = {key: value for key, value in old.metadata.items() if key not in SLOT_KEYS}
    [extracted] = explicit_memory({"text": job.payload["text"], "metadata": metadata}).memories
    new = old.evolve(
        id=revision_id(job),
        text=extracted.text,
        created_at=job.created_at,
        last_used_at=None,
        use_count=0,
        superseded_by=None,
        entities=tuple(dict.fromkeys(key for display, _ in extracted.entities if (key := normalise_entity(display)))),
        metadata=dict(extracted.metadata),
    )
    return new, extracted
