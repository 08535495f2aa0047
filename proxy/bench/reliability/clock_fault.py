"""The clock jumps backwards (an NTP correction, a VM restored from a snapshot): a real ``memproxy serve`` runs with
its clock two hours ahead (libfaketime), answers a chat while the graph store is write-locked so the exchange waits
in the write queue with a retry time two hours ahead, and is killed -9. Then the bench (the real clock) opens the
data dir, as the restarted proxy would, and the exchange must land at once: a queue that trusted those times would
hold it for two hours.

libfaketime (Debian's ``libfaketime``, ``make test`` installs it) is preloaded into the proxy's process only; where
it is missing the fault reports itself skipped."""

from __future__ import annotations

import asyncio
import glob
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

from memory import MemoryEngine
from proxy.bench.reliability.store_faults import BUSY_TIMEOUT_S
from proxy.bench.stack import proxy_process, proxy_url, start_stub, stub_url
from proxy.settings import load_settings

AHEAD = "+2h"
USER = "clock-user"
FACT, WORD = "My kayak is called Driftwood.", "Driftwood"
LANDS_WITHIN_S = 60.0
"""After the restart, the exchange must be applied within this (not after the two hours the jump put its time at)."""


def libfaketime() -> str | None:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")) + sorted(glob.glob("/usr/lib/faketime/*.so.1"))
    return found[0] if found else None


def clock_backwards(work: Path) -> dict[str, Any]:
    library = libfaketime()
    if library is None:
        return {"chat": "skipped", "lost": 0, "skipped": "libfaketime is not installed (apt-get install libfaketime)"}
    data_dir = work / "clock"
    stub = start_stub()
    try:
        status = _answer_ahead_then_die(stub_url(stub), data_dir, work / "clock-ahead.log", library)
    finally:
        stub.stop()
    began = time.monotonic()
    landed = asyncio.run(_lands(data_dir))
    return {"chat": "answered" if status == 200 else "error", "status": status, "clock_jump": AHEAD.replace("+", "-"),
            "lost": 0 if landed else 1, "landed_after_restart_s": round(time.monotonic() - began, 1)}  # fmt: skip


def _answer_ahead_then_die(upstream_url: str, data_dir: Path, log_path: Path, library: str) -> int:
    settings = load_settings(data_dir=data_dir).memory
    graph_file = settings.graph.file(settings.data_dir)  # type: ignore[union-attr]
    proxy = proxy_process(upstream_url, data_dir, log_path, memory=True, start_timeout_s=120)
    assert proxy.env is not None
    proxy.env |= {"LD_PRELOAD": library, "FAKETIME": AHEAD, "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                  "FAKETIME_NO_CACHE": "1"}  # fmt: skip
    proxy.start()
    holder = sqlite3.connect(graph_file, isolation_level=None, timeout=30)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # the exchange cannot land: it waits in the queue, retried later
        body = {"model": "stub-model", "user": USER, "messages": [{"role": "user", "content": FACT}]}
        status = httpx.post(f"{proxy_url(proxy)}/chat/completions", json=body, timeout=60, trust_env=False).status_code
        time.sleep(BUSY_TIMEOUT_S + 2)  # the store's busy timeout runs out: the job is given back, due "later"
    finally:
        process = proxy.process
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        holder.execute("COMMIT")
        holder.close()
    return status


async def _lands(data_dir: Path) -> bool:
    """The data dir opened with the real clock (two hours behind the one that queued the job)."""
    engine = await MemoryEngine.open(load_settings(data_dir=data_dir).memory)
    try:
        try:
            await engine.flush(timeout_s=LANDS_WITHIN_S)
        except TimeoutError:
            return False
        return any(WORD in m["text"] for m in (await engine.export(USER))["memories"])
    finally:
        await engine.close()
