"""Load: ``clients`` concurrent streaming chats for ``duration_s`` against a real ``memproxy serve`` in front of the
stub upstream, ``users`` users with memories bulk-loaded first (every recall has work to do). Reported: errors
(any non-200, or a stream without ``[DONE]``), time to first byte p50 / p95, the proxy's RSS at start and end, the
write queue's depth when the clients stop and the seconds it takes to drain. The RSS at the end must stay within
``RSS_GROWTH_BOUND_MB`` of the start."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from proxy.bench.overhead import percentiles
from proxy.bench.processes import ServerProcess, metric_sum
from proxy.bench.stack import fill_memories, proxy_process, proxy_url, question

DRAIN_TIMEOUT_S = 300.0
RSS_GROWTH_BOUND_MB = 1024.0
"""The stated bound: the proxy's RSS may grow by at most this over a run (its answered chats become memories, whose
vectors, postings and store pages it holds; the full run's 64 clients x 180 s, about 22,000 chats, grew it by
about 350 MB on the development machine)."""


def rss_mb(pid: int) -> float:
    """The process's resident set (``VmRSS``), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for pid {pid}")


def run(upstream_url: str, work_dir: Path, *, clients: int, duration_s: float, users: int,
        memories_per_user: int) -> dict[str, Any]:  # fmt: skip
    data_dir = work_dir / "load"
    names = [f"load-user-{i}" for i in range(users)]
    asyncio.run(fill_memories(data_dir, dict.fromkeys(names, memories_per_user)))
    with proxy_process(upstream_url, data_dir, work_dir / "load.log", memory=True, start_timeout_s=120) as proxy:
        assert proxy.process is not None
        pid = proxy.process.pid
        asyncio.run(_warm(proxy_url(proxy), names))
        start_rss = rss_mb(pid)
        ttfb, errors, answered = asyncio.run(_drive(proxy_url(proxy), names, clients, duration_s))
        end_rss = rss_mb(pid)
        depth, drain_s = _drain(proxy)
    return {
        "clients": clients, "duration_s": duration_s, "users": users, "memories_per_user": memories_per_user,
        "answered": answered, "errors": sum(errors.values()), "errors_by_kind": dict(errors),
        "ttfb_ms": percentiles(ttfb) if ttfb else None,
        "rss_mb": {"start": start_rss, "end": end_rss, "bound": round(start_rss + RSS_GROWTH_BOUND_MB, 1)},
        "queue_depth_at_end": depth, "drain_s": drain_s,
    }  # fmt: skip


async def _warm(url: str, users: list[str]) -> None:
    async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
        for user in users[:3]:
            body = {"model": "stub-model", "user": user, "messages": [{"role": "user", "content": "Hello again"}]}
            (await client.post(f"{url}/chat/completions", json=body)).raise_for_status()


async def _drive(url: str, users: list[str], clients: int, duration_s: float) -> tuple[list[float], Counter[str], int]:
    """Time to first byte of each answered chat, the errors by kind (an HTTP status, a transport error's type, a
    stream cut short), and the chats answered."""
    ttfb: list[float] = []
    errors: Counter[str] = Counter()
    answered = 0
    deadline = time.monotonic() + duration_s
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(index: int, http: httpx.AsyncClient) -> None:
        nonlocal answered
        rng = random.Random(index)
        while time.monotonic() < deadline:
            body = {"model": "stub-model", "user": rng.choice(users), "stream": True,
                    "messages": [{"role": "user", "content": question(rng)}]}  # fmt: skip
            began = time.perf_counter()
            first: float | None = None
            done = False
            try:
                async with http.stream("POST", f"{url}/chat/completions", json=body) as response:
                    if response.status_code != 200:
                        said = (await response.aread())[:200].decode(errors="replace")
                        errors[f"http {response.status_code}: {said}"] += 1
                        continue
                    async for line in response.aiter_lines():
                        if first is None and line.startswith("data:"):
                            first = time.perf_counter() - began
                        done = done or line.strip() == "data: [DONE]"
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                continue
            if not done or first is None:
                errors["stream without [DONE]" if first is not None else "stream without data"] += 1
                continue
            answered += 1
            ttfb.append(first * 1000)

    async with httpx.AsyncClient(timeout=60, trust_env=False, limits=limits) as http:
        await asyncio.gather(*(client(i, http) for i in range(clients)))
    return ttfb, errors, answered


def _drain(proxy: ServerProcess) -> tuple[int, float]:
    """(the queue's depth now, the seconds until it is empty)."""
    metrics = proxy.ready_url.removesuffix("/readyz") + "/metrics"
    began = time.monotonic()
    depth: int | None = None
    while time.monotonic() - began < DRAIN_TIMEOUT_S:
        now = int(metric_sum(httpx.get(metrics, timeout=10, trust_env=False).text, "memproxy_write_queue_depth"))
        depth = now if depth is None else depth
        if now == 0:
            return depth, round(time.monotonic() - began, 2)
        time.sleep(0.25)
    raise RuntimeError(f"the write queue did not drain in {DRAIN_TIMEOUT_S:.0f} s")
