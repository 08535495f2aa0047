"""Keeping the vector index in step with the graph store (the system of record).

The store appends every change to a memory to a change log with a rising ``seq``; the index remembers the last seq
it reflects (``applied_seq``). :func:`sync_index` applies what came after; :func:`rebuild_index` starts over from
the stored embeddings, with no re-embedding.

Applying a change is idempotent and state based: an UPSERT looks up the memory as it is *now* (active, with an
embedding → add or replace; superseded, expired or gone → remove), a DELETE removes. So replaying changes the index
has already seen (after a crash, from an older manifest) is harmless, and a rebuild that races with writes is
corrected by the next sync.

Expiry is a matter of time, not of a write: a memory that expires leaves no change behind, so its vector stays
until the memory changes again or the index is rebuilt. Recall must check :attr:`Memory.active` anyway.
"""

from __future__ import annotations

from collections import defaultdict

from memory.graph.base import GraphStore
from memory.models import Change, ChangeOp, Scope
from memory.vectors.base import VectorIndex


async def sync_index(index: VectorIndex, store: GraphStore, *, batch: int = 1000) -> int:
    """Apply the store's changes after ``index.applied_seq``, ``batch`` at a time; returns how many."""
    applied = 0
    while True:
        changes = await store.changes_since(index.applied_seq, limit=batch)
        if not changes:
            return applied
        await apply_changes(index, store, changes)
        index.applied_seq = changes[-1].seq
        applied += len(changes)
        if len(changes) < batch:
            return applied


async def rebuild_index(index: VectorIndex, store: GraphStore) -> int:
    """Drop every partition and reload every scope's active embeddings from the store; returns vectors loaded.

    The store's seq is read first: writes that land during the rebuild are applied (again, harmlessly) by the
    next :func:`sync_index`.
    """
    seq = await store.last_seq()
    await index.clear()
    loaded = 0
    for scope in await store.scopes():
        ids, vectors = await store.embeddings(scope)
        if ids:
            await index.add(scope, ids, vectors)
            loaded += len(ids)
    index.applied_seq = seq
    return loaded


async def apply_changes(index: VectorIndex, store: GraphStore, changes: list[Change]) -> None:
    """Bring the index in line with these changes (state based: the memory is read as it is now)."""
    latest: dict[Scope, dict[str, ChangeOp]] = defaultdict(dict)
    for change in changes:  # only a memory's last change in the batch matters (the state is read, not replayed)
        latest[change.scope].pop(change.memory_id, None)
        latest[change.scope][change.memory_id] = change.op
    for scope, ops in latest.items():
        upserted = [memory_id for memory_id, op in ops.items() if op is ChangeOp.UPSERT]
        gone = {memory_id for memory_id, op in ops.items() if op is ChangeOp.DELETE}
        if upserted:
            ids, vectors = await store.embeddings(scope, upserted)
            if ids:
                await index.add(scope, ids, vectors)
            gone.update(set(upserted) - set(ids))  # superseded, expired, deleted since, or stored without a vector
        if gone:
            await index.remove(scope, sorted(gone))
