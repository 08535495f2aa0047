"""Worker threads that do background memory work (writes, index builds) run at a lower CPU priority than the
threads on the chat path (the event loop, the query embedder, the vector search, the store's reader).

On this 2-core machine a chat's recall and the writes of earlier exchanges compete for the same cores; the kernel
now gives the chat path the cores first, and background work the time left over. Linux applies ``nice`` per thread
(``setpriority`` with a thread id); elsewhere, or where lowering is refused, the thread runs as before.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

BACKGROUND_NICE = 10
"""How much lower (in ``nice`` steps, 0-19) background threads run than the process."""


def lower_priority(steps: int = BACKGROUND_NICE) -> None:
    """Lower the calling thread's CPU priority by ``steps`` (capped at the lowest, 19)."""
    if steps <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        thread_id = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, thread_id)
        os.setpriority(os.PRIO_PROCESS, thread_id, min(19, current + steps))
    except OSError as exc:  # not permitted, or no per-thread priorities here
        log.debug("could not lower a background thread's priority: %s", exc)


def background(then: Callable[[], None] | None = None) -> Callable[[], None]:
    """A ``ThreadPoolExecutor`` initializer: lower the thread's priority, then run ``then`` (if given)."""

    def initialize() -> None:
        lower_priority()
        if then is not None:
            then()

    return initialize
