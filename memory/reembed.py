"""Re-embedding a store when its embedder changes (``memproxy reembed``).

The store keeps one embedding per memory, made by the engine's embedder; the vector index is rebuilt from those. A
different embedder (another model, another runtime with other vectors, the multilingual one as the main model)
cannot use them, so the engine records which embedder made them (``embedder.json`` in the data dir) and refuses to
open with another one, saying to run this. Re-embedding reads every memory of every user (history included), embeds
its text with the configured embedder and writes the vector back in place: the memory, its links and its history
stay as they are, and the indexes follow the change log as for any write. It resumes where it stopped: users done
are recorded in ``reembed-progress.json`` (a user half done is done again, which is harmless).

The multilingual lane (see :mod:`memory.recall.multilingual`) needs nothing of this: it embeds texts itself and
starts over on its own when its model changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memory.atomic_file import write_atomic
from memory.config import MemoryConfig
from memory.embedding.base import Embedder
from memory.graph.paging import every_page
from memory.models import Scope

MARKER = "embedder.json"
PROGRESS = "reembed-progress.json"
PAGE = 256


class EmbedderChanged(RuntimeError):
    """The store's embeddings were made by another embedder than the configured one."""


def recorded(data_dir: Path) -> dict[str, Any] | None:
    """The embedder that made the store's embeddings, as recorded (None: not recorded yet)."""
    try:
        found = json.loads((data_dir / MARKER).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def record(data_dir: Path, embedder: Embedder) -> None:
    _write(data_dir / MARKER, {"name": embedder.name, "dim": embedder.dim})


def check(data_dir: Path, embedder: Embedder) -> None:
    """Record the embedder on a store that has no record; refuse one that differs from the record."""
    found = recorded(data_dir)
    if found is None:
        record(data_dir, embedder)
    elif found.get("name") != embedder.name:
        raise EmbedderChanged(
            f"the memories in {data_dir} were embedded with {found.get('name')!r}, the configured embedder is "
            f"{embedder.name!r}: run `memproxy reembed` to embed them again with it (nothing is lost; it resumes "
            "if stopped), or configure the embedder they were made with"
        )


async def reembed(config: MemoryConfig, progress: Callable[[int, int], None] | None = None) -> int:
    """Embed every memory again with ``config.embedder``; returns how many. ``progress(done, total)`` after each
    page. Run it with the proxy stopped (it writes the store directly)."""
    from memory.factory import build_embedder, build_store

    config.data_dir.mkdir(parents=True, exist_ok=True)
    embedder = build_embedder(config.embedder)
    store = build_store(config)
    await store.open()
    try:
        state = _progress(config.data_dir, embedder.name)
        pending = [scope for scope in sorted(await store.scopes(), key=_key) if _key(scope) not in state["done"]]
        total = sum([await store.count_memories(scope, include_inactive=True) for scope in pending])
        done = 0
        if progress is not None:
            progress(done, total)
        for scope in pending:
            async for page in every_page(store, scope, limit=PAGE, include_inactive=True):
                if page:
                    vectors = await embedder.embed([memory.text for memory in page])
                    for memory, vector in zip(page, vectors, strict=True):
                        await store.upsert_memory(memory, vector)
                    done += len(page)
                    if progress is not None:
                        progress(done, total)
            state["done"].append(_key(scope))
            _write(config.data_dir / PROGRESS, state)
        record(config.data_dir, embedder)
        (config.data_dir / PROGRESS).unlink(missing_ok=True)
        return done
    finally:
        await store.close()
        await embedder.close()


def _progress(data_dir: Path, target: str) -> dict[str, Any]:
    try:
        state = json.loads((data_dir / PROGRESS).read_text())
    except (FileNotFoundError, ValueError):
        state = None
    if not isinstance(state, dict) or state.get("target") != target or not isinstance(state.get("done"), list):
        return {"target": target, "done": []}
    return state


def _key(scope: Scope) -> str:
    return f"{scope.tenant}/{scope.user}"


def _write(path: Path, value: dict[str, Any]) -> None:
    data = json.dumps(value).encode()
    write_atomic(path, lambda file: file.write(data))
