"""``memproxy bench overhead``: the latency the proxy adds over calling the upstream directly.

The same requests go to the upstream directly and through a proxy started for the run, interleaved in random
order, so both paths see the same machine load. Reported per scenario (non-streamed, streamed): time to first byte
and total time, p50 / p95 for each path, the paired difference (proxy − direct) and the ratio of medians.

By default the upstream is a fast local stub (proxy cost isolated) and memory is off, so the figure is the proxy's
own cost; ``--upstream-url`` measures end to end against a real server such as the local vLLM
(``deploy/local/vllm-cpu.sh start``).

``--memories N`` puts memory in the loop: N memories of one user are bulk-loaded into the run's data dir before the
proxy starts (its start-up time is reported), requests carry ``"user": "bench-user"`` and varied questions, and a
third path — the same proxy with ``X-Memproxy-Memory: off`` — shows which part of the added time is memory's. Every
measured memory response must say ``x-memproxy-memory: ok`` with memories recalled; otherwise the report is printed
and the command fails. Each exchange is queued for memory after its answer, so the background writes compete for
the CPU during the run, as they would in service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

from proxy.bench.stack import (
    LoadReport,
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

SCENARIOS = ("nonstream", "stream", "responses_stream")
"""A chat completion whole and streamed, and a streamed Responses API call (``/v1/responses``)."""
BENCH_USER = "bench-user"
MEMORY_OFF = {"X-Memproxy-Memory": "off"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--requests", type=int, default=None, help="requests per path and scenario")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests per path first")
    parser.add_argument("--upstream-url", help="measure against this OpenAI-compatible upstream (…/v1) instead of the stub")
    parser.add_argument("--model", help="model name to request (default: the upstream's first model)")
    parser.add_argument("--max-tokens", type=int, default=16, help="max_tokens per request")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--memories", type=int, default=0,
        help="memory in the loop: bulk-load this many memories for one user and compare memory on / off "
        "(default 0: memory off, the proxy's own cost)",
    )
    parser.add_argument("--pool", type=int, default=1024, help="real sentences embedded for the memories' vectors")
    parser.add_argument(
        "--allow-degraded", type=float, default=0.0,
        help="fraction of memory-on responses that may come back without recalled memories (default 0: none)",
    )
    parser.add_argument("--start-timeout-s", type=float, default=900.0, help="how long the proxy may take to start")
    parser.add_argument(
        "--pause-ms", type=float, default=0.0,
        help="pause after each round of requests (default 0: back to back, so the writes of earlier exchanges "
        "compete with each request; a chat's pace, e.g. 200, lets them finish in between)",
    )
    parser.set_defaults(handler=run)


@dataclass
class Timings:
    ttfb_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)


@dataclass
class MemoryChecks:
    """What the memory-on path's responses said about memory (measured requests only)."""

    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    recalled: list[int] = field(default_factory=list)
    failures: int = 0
    """Responses that did not say ``ok`` with at least one memory recalled."""

    def add(self, status: str, recalled: int, reason: str | None) -> None:
        self.statuses[status] += 1
        self.recalled.append(recalled)
        self.failures += status != "ok" or recalled == 0
        if reason:
            self.reasons[reason] += 1


def run(args: argparse.Namespace) -> int:
    stub = args.upstream_url is None
    requests = args.requests or (400 if stub else 30)
    memory = args.memories > 0
    with tempfile.TemporaryDirectory(prefix="memproxy-bench-") as tmp_name:
        tmp = Path(tmp_name)
        data_dir = tmp / "data"  # always the run's own: never the user's memory
        load = None
        if memory:
            load = asyncio.run(fill_memories(data_dir, {BENCH_USER: args.memories}, pool_size=args.pool))
        upstream_proc = start_stub() if stub else None
        try:
            upstream_url = stub_url(upstream_proc) if upstream_proc else args.upstream_url.rstrip("/")
            proxy = proxy_process(
                upstream_url, data_dir, tmp / "proxy.log", memory=memory, start_timeout_s=args.start_timeout_s
            )
            start_s = started(proxy)
            try:
                report, checks = measure(upstream_url, proxy_url(proxy), requests, args, memory=memory)
                depth = asyncio.run(queue_depth(data_dir)) if memory else 0
            finally:
                proxy.stop()
        finally:
            if upstream_proc:
                upstream_proc.stop()
    report["upstream"] = "stub" if stub else upstream_url
    report["pause_ms"] = args.pause_ms
    report["memory"] = memory_report(report, args.memories, load, start_s, checks, depth) if memory else None
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    if checks is not None and checks.failures > args.allow_degraded * len(checks.recalled):
        print(
            f"error: {checks.failures} of {len(checks.recalled)} measured memory-on responses came back without "
            f"recalled memories (statuses {dict(checks.statuses)}, reasons {dict(checks.reasons)}), so the figures "
            "above mix in the degraded path; --allow-degraded sets how many may",
            file=sys.stderr,
        )
        return 1
    return 0


def measure(
    upstream_url: str, proxy_url: str, requests: int, args: argparse.Namespace, *, memory: bool
) -> tuple[dict[str, Any], MemoryChecks | None]:
    rng = random.Random(args.seed)
    targets: dict[str, tuple[str, dict[str, str]]] = {"direct": (upstream_url, {}), "proxy": (proxy_url, {})}
    if memory:
        targets["proxy_memory_off"] = (proxy_url, MEMORY_OFF)
    # One keep-alive client per path, as an application would hold one.
    clients = {
        name: httpx.Client(base_url=url, headers=headers, timeout=120, trust_env=False)
        for name, (url, headers) in targets.items()
    }
    checks = MemoryChecks() if memory else None
    try:
        model = args.model or clients["direct"].get("/models").json()["data"][0]["id"]
        results: dict[str, dict[str, Timings]] = {s: {n: Timings() for n in targets} for s in SCENARIOS}
        for scenario in SCENARIOS:
            for i in range(args.warmup + requests):
                body = request_body(model, scenario, args.max_tokens, question(rng) if memory else None)
                order = list(targets)
                rng.shuffle(order)
                for name in order:
                    ttfb, total, said = timed_request(clients[name], body)
                    if i < args.warmup:
                        continue
                    results[scenario][name].ttfb_ms.append(ttfb)
                    results[scenario][name].total_ms.append(total)
                    if checks is not None and name == "proxy":
                        checks.add(*said)
                if args.pause_ms > 0:
                    time.sleep(args.pause_ms / 1000)
    finally:
        for client in clients.values():
            client.close()
    return summarise(results, requests), checks


def request_body(model: str, scenario: str, max_tokens: int, text: str | None) -> dict[str, Any]:
    """Without ``text``: the same short prompt every time, no user (memory is off). With it: that question, from
    the user whose memories were loaded."""
    said = text or "Say hello in five words."
    if scenario == "responses_stream":
        body: dict[str, Any] = {"model": model, "input": said, "max_output_tokens": max_tokens, "stream": True}
    else:
        body = {"model": model, "messages": [{"role": "user", "content": said}], "max_tokens": max_tokens,
                "stream": scenario == "stream"}  # fmt: skip
    body["temperature"] = 0
    if text is not None:
        body["user"] = BENCH_USER
    return body


def timed_request(client: httpx.Client, body: dict[str, Any]) -> tuple[float, float, tuple[str, int, str | None]]:
    """(time to first body byte, total) in ms for one chat completion, and what it said about memory."""
    start = time.perf_counter()
    path = "/chat/completions" if "messages" in body else "/responses"
    with client.stream("POST", path, json=body) as response:
        first = None
        for _ in response.iter_raw():
            if first is None:
                first = time.perf_counter()
        end = time.perf_counter()
    if response.status_code != 200:
        raise RuntimeError(f"benchmark request failed with HTTP {response.status_code}")
    return ((first or end) - start) * 1000, (end - start) * 1000, memory_status(response)


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 3), "p95": round(p95, 3)}


def paired(minuend: list[float], subtrahend: list[float]) -> dict[str, float]:
    return percentiles([a - b for a, b in zip(minuend, subtrahend, strict=True)])


def summarise(results: dict[str, dict[str, Timings]], requests: int) -> dict[str, Any]:
    scenarios: dict[str, Any] = {}
    for scenario, by_path in results.items():
        entry: dict[str, Any] = {}
        for metric in ("ttfb_ms", "total_ms"):
            d, p = getattr(by_path["direct"], metric), getattr(by_path["proxy"], metric)
            row = {
                "direct": percentiles(d),
                "proxy": percentiles(p),
                "added": paired(p, d),
                "ratio_p50": round(statistics.median(p) / statistics.median(d), 3),
            }
            if "proxy_memory_off" in by_path:
                off = getattr(by_path["proxy_memory_off"], metric)
                row["proxy_memory_off"] = percentiles(off)
                row["added_memory_off"] = paired(off, d)
                row["memory_part"] = paired(p, off)
            entry[metric] = row
        scenarios[scenario] = entry
    headline = scenarios["nonstream"]["total_ms"]
    return {
        "added_ms": headline["added"],
        "ratio_p50": headline["ratio_p50"],
        "requests_per_path": requests,
        "scenarios": scenarios,
        "headline": "non-streamed total time, paired proxy − direct",
    }


def memory_report(
    report: dict[str, Any], memories: int, load: LoadReport | None, start_s: float, checks: MemoryChecks | None,
    depth: int,
) -> dict[str, Any]:
    assert checks is not None and load is not None
    scenarios = report["scenarios"]
    return {
        "memories": memories,
        "user": BENCH_USER,
        "bulk_load_s": load.load_s,
        "proxy_start_s": round(start_s, 2),
        "ttfb_added_ms": {s: scenarios[s]["ttfb_ms"]["added"] for s in SCENARIOS},
        "ttfb_added_memory_off_ms": {s: scenarios[s]["ttfb_ms"]["added_memory_off"] for s in SCENARIOS},
        "ttfb_memory_part_ms": {s: scenarios[s]["ttfb_ms"]["memory_part"] for s in SCENARIOS},
        "target": "ttfb added with memory ≤ 10 ms p50, ≤ 20 ms p95",
        "statuses": dict(checks.statuses),
        "degraded_reasons": dict(checks.reasons),
        "recalled": {"min": min(checks.recalled, default=0), "p50": statistics.median(checks.recalled or [0])},
        "write_queue_depth_at_end": depth,
    }


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"memproxy bench overhead — upstream: {report['upstream']}, {report['requests_per_path']} requests per path",
        f"{'scenario':<16} {'metric':<9} {'path':<17} {'p50/p95':>18} {'added p50/p95':>18} {'ratio':>6}",
    ]
    for scenario, entry in report["scenarios"].items():
        for metric, row in entry.items():
            name = metric[:-3]
            lines.append(f"{scenario:<16} {name:<9} {'direct':<17} {_cell(row['direct']):>18}")
            lines.append(
                f"{'':<16} {'':<9} {'proxy':<17} {_cell(row['proxy']):>18} {_cell(row['added']):>18} "
                f"{row['ratio_p50']:>6}"
            )
            if "proxy_memory_off" in row:
                lines.append(
                    f"{'':<16} {'':<9} {'proxy memory off':<17} {_cell(row['proxy_memory_off']):>18} "
                    f"{_cell(row['added_memory_off']):>18}"
                )
                lines.append(f"{'':<16} {'':<9} {'memory part':<17} {'':>18} {_cell(row['memory_part']):>18}")
    added = report["added_ms"]
    lines.append(f"headline: added {added['p50']} ms p50, {added['p95']} ms p95 ({report['headline']})")
    if memory := report.get("memory"):
        lines.append(
            f"memory: {memory['memories']:,} memories of {memory['user']}, bulk load {memory['bulk_load_s']} s, "
            f"proxy ready after {memory['proxy_start_s']} s; statuses {memory['statuses']}, "
            f"recalled p50 {memory['recalled']['p50']}; write queue depth at end {memory['write_queue_depth_at_end']}"
        )
        for scenario, added in memory["ttfb_added_ms"].items():
            lines.append(f"  {scenario} ttfb added with memory: {_cell(added)} (target {memory['target']})")
    return "\n".join(lines)


def _cell(value: dict[str, float]) -> str:
    return f"{value['p50']:.2f}/{value['p95']:.2f} ms"
