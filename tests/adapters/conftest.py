from __future__ import annotations

import os
import time

from memory import MemoryEngine, Scope

# Models come from local folders only; never from a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


async def with_facts(
    engine: MemoryEngine, scope: Scope, facts: list[str], *, importance: float = 0.5
) -> MemoryEngine:
    """``engine`` holding these facts of ``scope``, as they are (imported: no extraction, no merging)."""
    memories = [
        {"id": f"fact-{n}", "text": text, "kind": "fact", "importance": importance, "created_at": time.time()}
        for n, text in enumerate(facts)
    ]
    await engine.import_user(scope.user, {"memories": memories}, tenant=scope.tenant)
    return engine
