"""``memproxy bench throughput``: requests per second through the proxy with memory on vs off, under concurrency.

``--concurrency`` clients (default 32) send non-streamed chats as fast as the proxy answers them, to a proxy in front
of the fast local stub upstream. Before the proxy starts, ``--users`` users (default 100) get
``--memories-per-user`` memories each, bulk-loaded into the run's own data dir, so every recall has work to do; each
request names a random one of them and asks a varied question. Memory on and memory off (the same proxy, with
``X-Memproxy-Memory: off``: no recall, no write) alternate in short rounds, in ABBA order, so both see the same
machine noise — including the background write work that the memory-on rounds queue, which goes on during the
memory-off rounds too. The write queue's depth at the end says how far the background pipeline lagged.

The clients run in this process on the same machine as the proxy and the stub: on a small machine the figures are a
lower bound set by the shared CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from proxy.bench.overhead import MEMORY_OFF, percentiles
from proxy.bench.stack import (
    fill_memories,
    memory_status,
    proxy_process,
    proxy_url,
    question,
    queue_depth,
    start_stub,
    started,
    stub_url,
)

MODES = ("memory_on", "memory_off")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--concurrency", type=int, default=32, help="clients sending at once")
    parser.add_argument("--duration-s", type=float, default=20.0, help="measured seconds per mode (on, off)")
    parser.add_argument("--round-s", type=float, default=2.0, help="length of one round; on and off alternate")
    parser.add_argument("--warmup-s", type=float, default=1.0, help="unmeasured seconds per mode first")
    parser.add_argument("--users", type=int, default=100, help="users with memories; each request names one")
    parser.add_argument("--memories-per-user", type=int, default=500, help="memories bulk-loaded per user")
    parser.add_argument("--pool", type=int, default=1024, help="real sentences embedded for the memories' vectors")
    parser.add_argument("--max-tokens", type=int, default=16, help="max_tokens per request")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start-timeout-s", type=float, default=900.0, help="how long the proxy may take to start")
    parser.set_defaults(handler=run)


@dataclass
class ModeStats:
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    """Failed requests by kind: ``HTTP 502``, ``ReadTimeout``, …."""
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    recalled: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        timing = percentiles(self.latencies_ms) if self.latencies_ms else {"p50": 0.0, "p95": 0.0}
        return {
            "rps": round(len(self.latencies_ms) / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": timing["p50"],
            "p95_ms": timing["p95"],
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "requests": len(self.latencies_ms),
            "memory_statuses": dict(self.statuses),
            "recalled_mean": round(statistics.fmean(self.recalled), 2) if self.recalled else 0.0,
        }


def run(args: argparse.Namespace) -> int:
    users = [f"bench-user-{i:03d}" for i in range(args.users)]
    with tempfile.TemporaryDirectory(prefix="memproxy-bench-") as tmp_name:
        tmp = Path(tmp_name)
        data_dir = tmp / "data"  # always the run's own: never the user's memory
        load = asyncio.run(
            fill_memories(data_dir, {user: args.memories_per_user for user in users}, pool_size=args.pool)
        )
        stub = start_stub()
        try:
            proxy = proxy_process(
                stub_url(stub), data_dir, tmp / "proxy.log", memory=True, start_timeout_s=args.start_timeout_s
            )
            start_s = started(proxy)
            try:
                stats, rounds = asyncio.run(drive(proxy_url(proxy), users, args))
                depth = asyncio.run(queue_depth(data_dir))
            finally:
                proxy.stop()
        finally:
            stub.stop()
    on, off = stats["memory_on"].summary(), stats["memory_off"].summary()
    report = {
        "memory_on": on,
        "memory_off": off,
        "ratio": round(on["rps"] / off["rps"], 3) if off["rps"] else None,
        "concurrency": args.concurrency,
        "duration_s_per_mode": round(stats["memory_on"].seconds, 2),
        "rounds_per_mode": rounds,
        "users": args.users,
        "memories_per_user": args.memories_per_user,
        "bulk_load_s": load.load_s,
        "proxy_start_s": round(start_s, 2),
        "write_queue_depth_at_end": depth,
        "upstream": "stub",
    }
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    recalled_any = any(n > 0 for n in stats["memory_on"].recalled)
    if not recalled_any:
        print(
            f"error: no memory-on response recalled a memory (statuses {on['memory_statuses']}): "
            "memory was not in the loop",
            file=sys.stderr,
        )
        return 1
    return 0


async def drive(url: str, users: list[str], args: argparse.Namespace) -> tuple[dict[str, ModeStats], int]:
    rng = random.Random(args.seed)
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    stats = {mode: ModeStats() for mode in MODES}
    rounds = max(1, math.ceil(args.duration_s / args.round_s))
    round_s = args.duration_s / rounds
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60, trust_env=False) as client:
        model = (await client.get("/models")).json()["data"][0]["id"]
        for mode in MODES:
            await one_round(client, model, mode, args.warmup_s, users, rng, args, ModeStats())
        for index in range(rounds):
            # ABBA: on-off, off-on, … so a drift in machine load falls on both modes alike.
            order = MODES if index % 2 == 0 else MODES[::-1]
            for mode in order:
                await one_round(client, model, mode, round_s, users, rng, args, stats[mode])
    return stats, rounds


async def one_round(
    client: httpx.AsyncClient,
    model: str,
    mode: str,
    seconds: float,
    users: list[str],
    rng: random.Random,
    args: argparse.Namespace,
    stats: ModeStats,
) -> None:
    headers = MEMORY_OFF if mode == "memory_off" else {}
    began = time.perf_counter()
    deadline = began + seconds

    async def client_loop() -> None:
        while time.perf_counter() < deadline:
            body = {
                "model": model,
                "user": rng.choice(users),
                "messages": [{"role": "user", "content": question(rng)}],
                "max_tokens": args.max_tokens,
                "temperature": 0,
            }
            sent = time.perf_counter()
            try:
                response = await client.post("/chat/completions", json=body, headers=headers)
            except httpx.HTTPError as exc:
                stats.errors[type(exc).__name__] += 1
                continue
            if response.status_code != 200:
                stats.errors[f"HTTP {response.status_code}"] += 1
                continue
            stats.latencies_ms.append((time.perf_counter() - sent) * 1000)
            status, recalled, _ = memory_status(response)
            stats.statuses[status] += 1
            if mode == "memory_on":
                stats.recalled.append(recalled)

    await asyncio.gather(*(client_loop() for _ in range(args.concurrency)))
    stats.seconds += time.perf_counter() - began


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"memproxy bench throughput — stub upstream, {report['concurrency']} concurrent clients, "
        f"{report['duration_s_per_mode']} s per mode in {report['rounds_per_mode']} rounds each",
        f"{report['users']} users × {report['memories_per_user']:,} memories (bulk load {report['bulk_load_s']} s, "
        f"proxy ready after {report['proxy_start_s']} s)",
        f"{'mode':<11} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'errors':>7}  memory",
    ]
    for mode in MODES:
        row = report[mode]
        lines.append(
            f"{mode:<11} {row['rps']:>8} {row['p50_ms']:>8} {row['p95_ms']:>8} {row['errors']:>7}  "
            f"{row['memory_statuses']} recalled mean {row['recalled_mean']}"
        )
        if row["error_kinds"]:
            lines.append(f"{'':<11} errors: {row['error_kinds']}")
    lines.append(f"ratio on/off: {report['ratio']}; write queue depth at end: {report['write_queue_depth_at_end']}")
    return "\n".join(lines)
