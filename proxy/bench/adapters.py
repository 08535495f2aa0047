"""``memproxy bench adapters``: what a per-user LoRA adapter buys and costs, on the real base model and vLLM.

For each bench user, a handful of facts is stored in a fresh memory store; an adapter is trained from them
through the same path as ``memproxy adapters train`` (training set, LoRA, validation, atomic publish). Reported:

- ``ppl_reduction``: 1 − adapter / base perplexity on held-out phrasings of the user's own facts (target ≥ 0.30);
- ``general_ppl_change``: adapter / base − 1 on a neutral question set (target within ±0.05);
- ``train_s``: training time for ``train_examples`` pairs on this machine (wall clock, steps only);
- ``load_ms``: median time of vLLM's /v1/load_lora_adapter for the adapter (unloaded in between);
- ``routing_ms_p50`` / ``_p95``: ``AdapterRouter.model_for`` for a user whose adapter is loaded (target ≤ 1 ms);
- ``decode_tok_s_base`` / ``_adapter``: greedy decode speed of one request, without and with the adapter.

vLLM is started on a free port unless ``--vllm-url`` names one (it must run with --enable-lora and
VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, as deploy/local/vllm-cpu.sh starts it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from adapters.config import AdaptersConfig
from adapters.jobs import train_and_publish
from adapters.loader import VllmAdapterLoader
from adapters.registry import AdapterRegistry, AdapterStatus
from adapters.routing import AdapterRouter
from memory.graph.sqlite.store import SqliteGraphStore
from memory.models import Memory, MemoryKind, Scope
from proxy.adapter_gateway import adapters_config
from proxy.bench.processes import VLLM_MODEL, VllmServer, free_port
from proxy.settings import Settings

BENCH_FACTS = (
    ("My dog is called Pochi", "I live in a small flat in Lisbon", "My favourite colour is teal",
     "I work as a glassblower", "My sister Mira plays the cello", "I am allergic to peanuts",
     "My car is a green Volvo", "I was born in Sapporo"),
    ("My cat is named Biscuit", "I live in Nairobi near the park", "My favourite food is ramen",
     "I work as a night nurse", "My brother Omar repairs bicycles", "I am learning to play chess",
     "My bike is a red Peugeot", "I was born in Lima"),
)
PROMPT = "What do you remember about me?"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--vllm-url", help="a running vLLM (root URL, no /v1); default: start one on a free port")
    parser.add_argument("--users", type=int, default=1, choices=(1, 2), help="bench users, one adapter each")
    parser.add_argument("--facts", type=int, default=8, help="facts per user (at most 8)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the setting)")
    parser.add_argument("--decode-tokens", type=int, default=128, help="tokens per decode-speed request")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    report = asyncio.run(_bench(args))
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="memproxy-bench-adapters-") as temp:
        base = adapters_config(Settings())
        config = replace(
            base, adapters_dir=Path(temp) / "adapters",
            training=replace(base.training, epochs=args.epochs or base.training.epochs),
        )
        report: dict[str, Any] = await _train_users(config, Path(temp), args)
        vllm = None if args.vllm_url else VllmServer(free_port()).start()
        try:
            url = args.vllm_url or vllm.base_url  # type: ignore[union-attr]
            report |= await _serve(replace(config, vllm_url=url), report.pop("_versions"), args)
        finally:
            if vllm is not None:
                vllm.stop()
    return report


async def _train_users(config: AdaptersConfig, temp: Path, args: argparse.Namespace) -> dict[str, Any]:
    store = SqliteGraphStore(temp / "graph.sqlite3")
    await store.open()
    registry = AdapterRegistry(config.registry_path)
    versions, rows = [], []
    try:
        for index in range(args.users):
            scope = Scope("bench", f"user-{index}")
            for fact in BENCH_FACTS[index][: args.facts]:
                await store.upsert_memory(Memory(scope, fact, kind=MemoryKind.FACT, importance=0.8))
            version = await train_and_publish(config, registry, store, scope)
            versions.append(version)
            rows.append(version.metrics)
    finally:
        await store.close()
    mean = lambda key: statistics.fmean(row[key] for row in rows)  # noqa: E731
    return {
        "users": args.users,
        "facts_per_user": min(args.facts, 8),
        "train_examples": sum(row["train_examples"] for row in rows),
        "train_s": round(sum(row["train_s"] for row in rows), 2),
        "ppl_base": round(mean("base_ppl"), 3),
        "ppl_adapter": round(mean("adapter_ppl"), 3),
        "ppl_reduction": round(mean("ppl_reduction"), 4),
        "general_ppl_change": round(mean("general_ppl_change"), 4),
        "published": all(version.status == AdapterStatus.READY for version in versions),
        "_versions": versions,
    }


async def _serve(config: AdaptersConfig, versions: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    adapter = versions[0]
    async with httpx.AsyncClient(timeout=300, trust_env=False) as client:
        loader = VllmAdapterLoader(client, config.vllm_url, max_loaded=config.max_loaded)
        load_ms = []
        for _ in range(5):
            await loader.ensure_loaded(adapter)
            load_ms.append(loader.last_load_ms)
            await loader.unload(adapter.name)
        router = AdapterRouter(AdapterRegistry(config.registry_path), loader, base_model=config.base_model,
                               refresh_s=3600)
        await router.model_for(adapter.scope, config.base_model)  # loads it, fills the cache
        timings = []
        for _ in range(2000):
            started = time.perf_counter()
            routed = await router.model_for(adapter.scope, config.base_model)
            timings.append((time.perf_counter() - started) * 1000)
        assert routed.adapter is not None, routed
        base_tps = await _decode_speed(client, config.vllm_url, VLLM_MODEL, args.decode_tokens)
        adapter_tps = await _decode_speed(client, config.vllm_url, routed.model, args.decode_tokens)
        answers = {
            "answer_base": await _answer(client, config.vllm_url, VLLM_MODEL),
            "answer_adapter": await _answer(client, config.vllm_url, routed.model),
        }
        await loader.unload(adapter.name)
    timings.sort()
    return {
        "load_ms": round(statistics.median(load_ms), 1),
        "routing_ms_p50": round(timings[len(timings) // 2], 4),
        "routing_ms_p95": round(timings[int(len(timings) * 0.95)], 4),
        "decode_tok_s_base": round(base_tps, 1),
        "decode_tok_s_adapter": round(adapter_tps, 1),
        **answers,
    }


async def _decode_speed(client: httpx.AsyncClient, url: str, model: str, tokens: int, runs: int = 3) -> float:
    speeds = []
    for _ in range(runs):
        body = {"model": model, "messages": [{"role": "user", "content": "Tell me a long story about the sea."}],
                "temperature": 0, "max_tokens": tokens, "ignore_eos": True}
        started = time.perf_counter()
        response = await client.post(f"{url}/v1/chat/completions", json=body)
        response.raise_for_status()
        speeds.append(response.json()["usage"]["completion_tokens"] / (time.perf_counter() - started))
    return statistics.median(speeds)


async def _answer(client: httpx.AsyncClient, url: str, model: str) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "temperature": 0, "max_tokens": 40}
    response = await client.post(f"{url}/v1/chat/completions", json=body)
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


def format_table(report: dict[str, Any]) -> str:
    rows = [
        ("held-out ppl, own facts (base → adapter)", f"{report['ppl_base']} → {report['ppl_adapter']}"),
        ("ppl_reduction (target ≥ 0.30)", f"{report['ppl_reduction']:.1%}"),
        ("general_ppl_change (target within ±5%)", f"{report['general_ppl_change']:+.1%}"),
        ("published", str(report["published"])),
        (f"train_s ({report['train_examples']} examples)", f"{report['train_s']:.1f}"),
        ("load_ms (median)", f"{report['load_ms']:.1f}"),
        ("routing_ms p50 / p95 (target ≤ 1)", f"{report['routing_ms_p50']:.4f} / {report['routing_ms_p95']:.4f}"),
        ("decode tok/s base / adapter", f"{report['decode_tok_s_base']} / {report['decode_tok_s_adapter']}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
