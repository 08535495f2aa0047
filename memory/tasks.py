"""Background tasks that belong to someone: each one is kept (a task nobody references can be garbage-collected
mid-run) and ended by its owner's :meth:`BackgroundTasks.close`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)


class BackgroundTasks:
    def __init__(self, grace_s: float = 5.0) -> None:
        """``grace_s``: how long :meth:`close` lets one-off tasks finish before it cancels them."""
        self._grace_s = grace_s
        self._once: set[asyncio.Task[None]] = set()
        self._periodic: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._once) + len(self._periodic)

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` once, in the background."""
        self._keep(self._once, asyncio.get_running_loop().create_task(work, name=name))

    def every(self, interval_s: float, step: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        """Run ``step`` every ``interval_s`` seconds until closed; a step that raises is logged, and the next one
        runs as planned."""
        self._keep(self._periodic, asyncio.get_running_loop().create_task(self._repeat(interval_s, step), name=name))

    async def close(self) -> None:
        """Cancel the periodic tasks; wait up to the grace period for the one-off ones, then cancel those left."""
        for task in self._periodic:
            task.cancel()
        if self._once:
            await asyncio.wait(set(self._once), timeout=self._grace_s)
        everything = self._once | self._periodic
        for task in everything:
            task.cancel()
        await asyncio.gather(*everything, return_exceptions=True)

    @staticmethod
    def _keep(tasks: set[asyncio.Task[None]], task: asyncio.Task[None]) -> None:
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    @staticmethod
    async def _repeat(interval_s: float, step: Callable[[], Coroutine[Any, Any, None]]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await step()
            except Exception:
                logger.exception("background step %s failed; it runs again in %.0f s", step, interval_s)
