"""Background memory work runs at a lower CPU priority than the chat path (Linux: nice per thread)."""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from memory.threads import BACKGROUND_NICE, background

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice is per thread on Linux only")


def _own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_a_background_thread_runs_lower_and_the_caller_does_not() -> None:
    before = _own_nice()
    ran: list[bool] = []
    with ThreadPoolExecutor(max_workers=1, initializer=background(lambda: ran.append(True))) as pool:
        assert pool.submit(_own_nice).result() == min(19, before + BACKGROUND_NICE)
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(_own_nice).result() == before  # an ordinary worker keeps the process's priority
    assert _own_nice() == before and ran == [True]


async def test_the_write_path_threads_run_in_the_background(engine) -> None:
    """The real engine: the store's writer, the durable queue and the bulk embedder are lowered; the store's reader
    and the query embedder (recall, on the chat path) are not."""
    await engine.remember("I keep bees on the roof", user_id="alice")
    await engine.flush()
    await engine.recall("bees", user_id="alice")
    nice = {
        thread.name.rsplit("_", 1)[0]: os.getpriority(os.PRIO_PROCESS, thread.native_id)
        for thread in threading.enumerate()
        if thread.native_id is not None
    }
    base = _own_nice()
    lowered = min(19, base + BACKGROUND_NICE)
    assert {name: nice[name] for name in ("graph-store-writer", "durable-queue", "onnx-embedder")} == dict.fromkeys(
        ("graph-store-writer", "durable-queue", "onnx-embedder"), lowered
    )
    assert {name: nice[name] for name in ("graph-store-reader", "onnx-query", "faiss")} == dict.fromkeys(
        ("graph-store-reader", "onnx-query", "faiss"), base
    )
