"""``memproxy bench overhead``: the latency the proxy adds over calling the upstream directly.

The same requests go to the upstream directly and through a proxy started for the run, interleaved in random
order, so both paths see the same machine load. Reported per scenario (non-streamed, streamed): time to first byte
and total time, p50 / p95 for each path, the paired difference (proxy − direct) and the ratio of medians.

By default the upstream is a fast local stub (proxy cost isolated); ``--upstream-url`` measures end to end against
a real server such as the local vLLM (``deploy/local/vllm-cpu.sh start``).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from proxy.bench.processes import ServerProcess, free_port, python_module

SCENARIOS = ("nonstream", "stream")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--requests", type=int, default=None, help="requests per path and scenario")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests per path first")
    parser.add_argument("--upstream-url", help="measure against this OpenAI-compatible upstream (…/v1) instead of the stub")
    parser.add_argument("--model", help="model name to request (default: the upstream's first model)")
    parser.add_argument("--max-tokens", type=int, default=16, help="max_tokens per request")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=run)


@dataclass
class Timings:
    ttfb_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)


def run(args: argparse.Namespace) -> int:
    stub = args.upstream_url is None
    requests = args.requests or (400 if stub else 30)
    with tempfile.TemporaryDirectory(prefix="memproxy-bench-") as tmp:
        upstream_proc = None
        if stub:
            port = free_port()
            upstream_url = f"http://127.0.0.1:{port}/v1"
            upstream_proc = ServerProcess(
                python_module("proxy.bench.stub_upstream", "--port", str(port)), f"{upstream_url}/models"
            ).start()
        else:
            upstream_url = args.upstream_url.rstrip("/")
        try:
            proxy_port = free_port()
            proxy_url = f"http://127.0.0.1:{proxy_port}/v1"
            proxy = ServerProcess(
                python_module(
                    "proxy.cli", "serve", "--port", str(proxy_port), "--upstream-url", upstream_url,
                    "--log-level", "warning",
                ),
                f"http://127.0.0.1:{proxy_port}/readyz",
                log_path=Path(tmp) / "proxy.log",
            )
            with proxy:
                report = measure(upstream_url, proxy_url, requests, args)
        finally:
            if upstream_proc:
                upstream_proc.stop()
    report["upstream"] = "stub" if stub else upstream_url
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0


def measure(upstream_url: str, proxy_url: str, requests: int, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    targets = {"direct": upstream_url, "proxy": proxy_url}
    # One keep-alive client per path, as an application would hold one.
    clients = {name: httpx.Client(base_url=url, timeout=120, trust_env=False) for name, url in targets.items()}
    try:
        model = args.model or clients["direct"].get("/models").json()["data"][0]["id"]
        results: dict[str, dict[str, Timings]] = {s: {n: Timings() for n in targets} for s in SCENARIOS}
        for scenario in SCENARIOS:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": "Say hello in five words."}],
                "max_tokens": args.max_tokens,
                "temperature": 0,
                "stream": scenario == "stream",
            }
            for _ in range(args.warmup):
                for client in clients.values():
                    timed_request(client, body)
            for _ in range(requests):
                order = list(targets)
                rng.shuffle(order)
                for name in order:
                    ttfb, total = timed_request(clients[name], body)
                    results[scenario][name].ttfb_ms.append(ttfb)
                    results[scenario][name].total_ms.append(total)
    finally:
        for client in clients.values():
            client.close()
    return summarise(results, requests)


def timed_request(client: httpx.Client, body: dict[str, Any]) -> tuple[float, float]:
    """(time to first body byte, total) in ms for one chat completion."""
    start = time.perf_counter()
    with client.stream("POST", "/chat/completions", json=body) as response:
        first = None
        for _ in response.iter_raw():
            if first is None:
                first = time.perf_counter()
        end = time.perf_counter()
    if response.status_code != 200:
        raise RuntimeError(f"benchmark request failed with HTTP {response.status_code}")
    return ((first or end) - start) * 1000, (end - start) * 1000


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 3), "p95": round(p95, 3)}


def summarise(results: dict[str, dict[str, Timings]], requests: int) -> dict[str, Any]:
    scenarios: dict[str, Any] = {}
    for scenario, by_path in results.items():
        direct, proxied = by_path["direct"], by_path["proxy"]
        entry: dict[str, Any] = {}
        for metric in ("ttfb_ms", "total_ms"):
            d, p = getattr(direct, metric), getattr(proxied, metric)
            added = [pv - dv for pv, dv in zip(p, d, strict=True)]
            entry[metric] = {
                "direct": percentiles(d),
                "proxy": percentiles(p),
                "added": percentiles(added),
                "ratio_p50": round(statistics.median(p) / statistics.median(d), 3),
            }
        scenarios[scenario] = entry
    headline = scenarios["nonstream"]["total_ms"]
    return {
        "added_ms": headline["added"],
        "ratio_p50": headline["ratio_p50"],
        "requests_per_path": requests,
        "scenarios": scenarios,
        "headline": "non-streamed total time, paired proxy − direct",
    }


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"memproxy bench overhead — upstream: {report['upstream']}, {report['requests_per_path']} requests per path",
        f"{'scenario':<10} {'metric':<9} {'direct p50/p95':>18} {'proxy p50/p95':>18} {'added p50/p95':>18} {'ratio':>6}",
    ]
    for scenario, entry in report["scenarios"].items():
        for metric, row in entry.items():
            cells = [f"{row[k]['p50']:.2f}/{row[k]['p95']:.2f} ms" for k in ("direct", "proxy", "added")]
            lines.append(f"{scenario:<10} {metric[:-3]:<9} {cells[0]:>18} {cells[1]:>18} {cells[2]:>18} {row['ratio_p50']:>6}")
    lines.append(f"headline: added {report['added_ms']['p50']} ms p50, {report['added_ms']['p95']} ms p95 ({report['headline']})")
    return "\n".join(lines)
