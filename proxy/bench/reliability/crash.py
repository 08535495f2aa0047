"""Answered means remembered, tried: chats against a real ``memproxy serve`` process (the stub upstream, the
embedded store), ``kill -9`` of the proxy at a random instant, a restart on the same data dir, and a count of the
exchanges whose client saw a whole answer (the JSON body; a stream's ``[DONE]``) that are in memory, and of those
in memory twice.

Each chat tells one note with a marker of its own (``crash<seed>n<i>``); a note's memories are found by it. The
proxy is killed by PID (its own process group), never by name.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from memory import MemoryEngine
from proxy.bench.processes import ServerProcess, metric_sum
from proxy.bench.stack import proxy_process, proxy_url
from proxy.settings import load_settings

CLIENTS = 4
"""Chats in flight at once, half of them streamed."""
KILL_AFTER_ANSWERS = (5, 60)
"""The kill follows the n-th answer, n drawn from this range."""
KILL_WITHIN_S = 0.015
DRAIN_TIMEOUT_S = 120.0


@dataclass(slots=True)
class CrashReport:
    answered: int = 0
    """Chats whose client saw a whole answer before the kill."""
    remembered: int = 0
    """Of those, the ones whose note is in memory after the restart."""
    duplicated: int = 0
    """Notes (answered or not) with a memory text stored more than once."""
    sent: int = 0
    lost: list[str] = field(default_factory=list)
    """The markers of answered chats missing from memory."""

    def add(self, other: CrashReport) -> None:
        self.answered += other.answered
        self.remembered += other.remembered
        self.duplicated += other.duplicated
        self.sent += other.sent
        self.lost += other.lost

    def as_dict(self) -> dict[str, int]:
        return {"answered": self.answered, "remembered": self.remembered, "duplicated": self.duplicated,
                "sent": self.sent}  # fmt: skip


def note(seed: int, index: int) -> tuple[str, str]:
    """(marker, the user's message)."""
    marker = f"crash{seed}n{index}"
    return marker, f"Please remember my parcel code {marker} for the delivery on Friday."


def _chat(client: httpx.Client, url: str, user: str, text: str, stream: bool) -> bool:
    """True if the client saw a whole answer."""
    body = {"model": "stub-model", "user": user, "stream": stream, "messages": [{"role": "user", "content": text}]}
    try:
        if not stream:
            response = client.post(f"{url}/chat/completions", json=body)
            return response.status_code == 200 and bool(response.json()["choices"][0]["message"]["content"])
        with client.stream("POST", f"{url}/chat/completions", json=body) as response:
            if response.status_code != 200:
                return False
            return any(line.strip() == "data: [DONE]" for line in response.iter_lines())
    except (httpx.HTTPError, ValueError, KeyError, IndexError):
        return False


def run_once(seed: int, upstream_url: str, work_dir: Path) -> CrashReport:
    """One round: chats from ``CLIENTS`` clients; kill -9 of the proxy at a random instant just after a randomly
    chosen answer reached its client (0 to ``KILL_WITHIN_S`` later: the moment a write that trails the answer
    is lost); a restart, the queue drained, then the notes counted in the store."""
    rng = random.Random(seed)
    kill_at = rng.randint(*KILL_AFTER_ANSWERS)
    kill_delay = rng.uniform(0.0, KILL_WITHIN_S)
    data_dir = work_dir / f"crash-{seed}"
    user = f"crash-user-{seed}"
    proxy = proxy_process(upstream_url, data_dir, work_dir / f"crash-{seed}.log", memory=True).start()
    url = proxy_url(proxy)
    answered: set[str] = set()
    counter = itertools.count()
    stop = threading.Event()
    killed = threading.Event()
    lock = threading.Lock()

    def client(stream_first: bool) -> None:
        with httpx.Client(timeout=30.0, trust_env=False) as http:
            stream = stream_first
            while not stop.is_set():
                marker, text = note(seed, next(counter))
                if not _chat(http, url, user, text, stream):
                    if proxy.process is None or proxy.process.poll() is not None:
                        return
                    continue
                with lock:
                    answered.add(marker)
                    last = len(answered) == kill_at
                if last:
                    time.sleep(kill_delay)
                    _kill_9(proxy)
                    killed.set()
                stream = not stream

    threads = [threading.Thread(target=client, args=(i % 2 == 0,), daemon=True) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        if not killed.wait(timeout=120):
            raise RuntimeError(f"no kill after 120 s: {len(answered)} answers")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        proxy.stop()
    sent = next(counter)
    with lock:
        seen = set(answered)
    _restart_and_drain(upstream_url, data_dir, work_dir / f"crash-{seed}-after.log")
    texts = asyncio.run(_user_texts(data_dir, user))
    report = CrashReport(answered=len(seen), sent=sent)
    found: Counter[str] = Counter()
    for text in texts:
        for word in text.replace(".", " ").split():
            if word.startswith(f"crash{seed}n"):
                found[word] += 1
    repeated = Counter(texts)
    report.duplicated = sum(1 for text, times in repeated.items() if times > 1 and f"crash{seed}n" in text)
    report.remembered = sum(1 for marker in seen if found[marker])
    report.lost = sorted(marker for marker in seen if not found[marker])
    return report


def _kill_9(proxy: ServerProcess) -> None:
    process = proxy.process
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _restart_and_drain(upstream_url: str, data_dir: Path, log_path: Path) -> None:
    """The proxy again on the same data dir, until its write queue is empty; then stopped (SIGTERM)."""
    with proxy_process(upstream_url, data_dir, log_path, memory=True) as proxy:
        metrics = proxy.ready_url.removesuffix("/readyz") + "/metrics"
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            text = httpx.get(metrics, timeout=10, trust_env=False).text
            if metric_sum(text, "memproxy_write_queue_depth") == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the write queue of {data_dir} did not drain in {DRAIN_TIMEOUT_S:.0f} s")


async def _user_texts(data_dir: Path, user: str) -> list[str]:
    """Every stored memory text of ``user`` (tenant ``default``), the user's own turns."""
    engine = await MemoryEngine.open(load_settings(data_dir=data_dir).memory)
    try:
        exported = await engine.export(user)
    finally:
        await engine.close()
    return [m["text"] for m in exported["memories"] if "crash" in m["text"]]
