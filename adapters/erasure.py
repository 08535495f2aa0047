"""Erasing a user's adapters when their data is deleted, so that nothing of them stays servable or on disk.

:func:`erase_user` goes in an order where a crash after any step leaves nothing servable:

1. the user's training jobs are stopped and no new one starts (:meth:`AdapterJobs.stopped`);
2. every ready or training row is retired (routing serves ready rows only) and the router's cache is dropped;
3. each version folder is renamed to a hidden ``.<name>-v<n>.<hex>.erased.tmp`` (one atomic step: neither the
   loader nor vLLM's filesystem resolver finds it any more), then removed;
4. vLLM is asked to unload the adapter (after step 3, so a load racing with it finds no folder; the loader's
   per-adapter lock orders the two);
5. the rows are deleted.

If step 4 fails, the rows stay (retired) and :class:`AdapterLoadError` is raised: a retry knows what to unload.
At start, :func:`sweep_orphans` removes what a crash left: version folders without a row, and temp folders whose
version is not training.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import uuid
from pathlib import Path

from adapters.jobs import AdapterJobs
from adapters.loader import AdapterLoader
from adapters.registry import AdapterRegistry, AdapterStatus
from adapters.routing import AdapterRouter
from memory import Scope
from memory.atomic_file import fsync_dir

logger = logging.getLogger(__name__)

ERASING = "erasing: the user's data is being deleted"
_VERSION_FOLDER = re.compile(r"mp-[0-9a-f]{20}-v[0-9]+")
_TEMP_FOLDER = re.compile(r"\.(mp-[0-9a-f]{20}-v[0-9]+)\..+\.tmp")


async def erase_user(
    scope: Scope,
    registry: AdapterRegistry,
    *,
    jobs: AdapterJobs | None = None,
    loader: AdapterLoader | None = None,
    router: AdapterRouter | None = None,
) -> int:
    """Remove every adapter version of ``scope`` (rows, folders, vLLM's copy). Returns the versions removed.
    Raises :class:`~adapters.loader.AdapterLoadError` when vLLM would not unload it (rows kept for a retry)."""
    async with jobs.stopped(scope) if jobs is not None else contextlib.nullcontext(0):
        versions = await registry.versions(scope)
        if not versions:
            return 0
        await registry.retire(scope, None, reason=ERASING)
        if router is not None:
            router.invalidate(scope)
        for version in versions:
            await asyncio.to_thread(_remove_folder, version.path)
        if loader is not None:
            for name in sorted({loader.model_name(version) for version in versions}):
                await loader.unload(name)
        removed = await registry.delete_user(scope)
    logger.info("erased %d adapter version(s) of %s", removed, versions[0].name)
    return removed


async def sweep_orphans(adapters_dir: Path, registry: AdapterRegistry) -> int:
    """Remove version folders that have no registry row, and temp folders whose version is not training (a
    crash mid-erasure or mid-publish). Returns how many were removed; a missing folder is nothing to do."""
    if not adapters_dir.is_dir():
        return 0
    folders = await registry.folders()

    def sweep() -> int:
        removed = 0
        for path in adapters_dir.iterdir():
            temp = _TEMP_FOLDER.fullmatch(path.name)
            orphan = _VERSION_FOLDER.fullmatch(path.name) and path.name not in folders
            if path.is_dir() and (orphan or (temp and folders.get(temp.group(1)) != AdapterStatus.TRAINING)):
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        return removed

    removed = await asyncio.to_thread(sweep)
    if removed:
        logger.warning("removed %d adapter folder(s) left without a registry row", removed)
    return removed


def _remove_folder(path: Path) -> None:
    if not path.exists():
        return
    hidden = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.erased.tmp"
    os.rename(path, hidden)
    fsync_dir(path.parent)
    shutil.rmtree(hidden)
