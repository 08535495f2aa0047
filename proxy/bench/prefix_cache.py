"""``memproxy bench prefix-cache``: how much of each prompt vLLM serves from its prefix cache, memproxy's layout
against the naive one, and what memory costs in time to first token.

One 10-turn conversation is replayed, turn by turn, through three proxies in front of the same vLLM:

- ``memproxy``: memory on, the cache-aware layout (core block after the system prompt, per-turn recalled block in
  the newest user message, earlier turns' blocks repeated byte for byte), with the next turn's anticipated block
  prefilled after each answer;
- ``memproxy_prefetch_only``: the same with ``recall_late_top_k=0``: each turn carries only what was anticipated
  and prefilled after the previous answer, nothing recalled while the user waits;
- ``naive``: memory on, recalled memories at the top of the system prompt;
- ``no_memory``: memory off (the time-to-first-token baseline).

Each proxy has its own data dir (copied from one seeded store) and so its own cache salt: the arms never share
cached blocks. The arms take turns request by request, so they see the same machine load. For every request the
deltas of ``vllm:prefix_cache_hits_total`` / ``vllm:prefix_cache_queries_total`` (prompt tokens) are read from
vLLM's /metrics; requests run one at a time, so each delta is that request's.

After each memproxy answer the replay waits, as a user reading the answer and typing would, until memproxy's
background prefill of the next turn is done (its own ``memproxy_prefills_total`` counter). The prompt tokens that
prefill computed are reported per turn (``prefill_computed_tokens``, with ``prefill_wait_ms``) and are not counted
in any turn's hits, queries or time to first token: they are the work moved off the user's wait.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from proxy.bench.processes import VLLM_MODEL, ServerProcess, VllmServer, free_port, metric_sum
from proxy.bench.stack import proxy_process

ARMS = ("memproxy", "memproxy_prefetch_only", "naive", "no_memory")
MEMPROXY_ARMS = ("memproxy", "memproxy_prefetch_only")
HITS = "vllm:prefix_cache_hits_total"
QUERIES = "vllm:prefix_cache_queries_total"
USER = "bench-user"

_PEOPLE = ["Hana", "Kenji", "Maria", "Tom", "Aiko", "Lucas", "Priya", "Omar"]
_PLACES = ["Sapporo", "Kyoto", "Lisbon", "Vancouver", "Nairobi", "Oslo", "Hanoi", "Lima"]
_THINGS = ["sourdough baking", "bouldering", "the cello", "birdwatching", "chess", "film photography", "pottery"]
_FACTS = [
    "My sister {p} moved to {pl} last spring and works as a nurse there.",
    "I have been learning {t} for about two years and practise on weekends.",
    "My friend {p} and I are planning a trip to {pl} in the autumn.",
    "I am allergic to shellfish, so I avoid most seafood restaurants.",
    "My dog is called Pochi; he is a shiba inu who hates the rain.",
    "Last month I started a new job as a data engineer at a logistics company.",
    "{p} recommended a small ramen shop near the station in {pl}.",
    "I usually wake up at six and run five kilometres before breakfast.",
    "My favourite book is a collection of short stories about {t}.",
    "I want to get better at {t} before my birthday in March.",
]
_QUESTIONS = [
    "I'm trying to plan my weekend. Given what you know about my hobbies and my usual routine, what would be a "
    "good plan for Saturday and Sunday that leaves time for rest as well?",
    "Can you suggest a few dinner ideas for this week? Keep in mind anything you know about my food restrictions, "
    "and I'd like at least one that my sister would enjoy when she visits.",
    "What should I pack for the trip I mentioned with my friend? I always forget the small things.",
    "I'd like to write a short birthday message for my sister. Something warm but not too long, please.",
    "My dog has been restless lately. Any ideas for keeping him entertained on rainy days?",
    "How can I make progress faster with the hobby I've been practising? I have about four hours a week.",
    "I'm a bit stressed with the new job. What are a few small habits that could help me settle in?",
    "Could you recommend what to see in the city my sister lives in, if I visit her for three days?",
    "Summarise what we have talked about so far in a few bullet points.",
    "Thanks. One last thing: remind me what I said about my morning routine, and suggest one improvement.",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--upstream-url", help="an already running vLLM (…/v1); default: start one on a free port")
    parser.add_argument("--model", default=VLLM_MODEL)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--memories", type=int, default=200, help="facts in the user's store before the replay")
    parser.add_argument(
        "--system-tokens", type=int, default=1500,
        help="approximate length of the client's system prompt (front ends with instructions and tools send 1-6k)",
    )
    parser.add_argument("--max-tokens", type=int, default=96, help="answer length per turn")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=run)


def system_prompt(tokens: int, rng: random.Random) -> str:
    rules = [
        "Answer in the user's language and keep a friendly, plain tone.",
        "Prefer short paragraphs and concrete suggestions over general advice.",
        "When you are unsure, say so and suggest how the user could find out.",
        "Never invent personal details about the user; use only what they told you or what is in your notes.",
        "Respect the user's time: lead with the answer, then add detail if it helps.",
        "For plans and schedules, give times and an order of steps.",
        "For recipes, list ingredients first, then the steps, and mention allergens.",
    ]
    lines = ["You are Ada, a personal assistant for one user. Follow these house rules."]
    while sum(len(line.split()) for line in lines) * 1.35 < tokens:
        lines.append(f"Rule {len(lines)}: {rng.choice(rules)} ({rng.choice(_THINGS)}, {rng.choice(_PLACES)})")
    return "\n".join(lines)


def facts(count: int, rng: random.Random) -> list[str]:
    return [
        rng.choice(_FACTS).format(p=rng.choice(_PEOPLE), pl=rng.choice(_PLACES), t=rng.choice(_THINGS))
        for _ in range(count)
    ]


async def seed_store(data_dir: Path, texts: list[str]) -> None:
    from memory import MemoryConfig, MemoryEngine

    engine = await MemoryEngine.open(MemoryConfig(data_dir=data_dir))
    try:
        for index, text in enumerate(texts):
            await engine.remember(text, USER, importance=0.6, job_id=f"seed-{index}", wait=False)
        await engine.flush(timeout_s=600)
    finally:
        await engine.close()


def start_proxy(arm: str, data_dir: Path, upstream_url: str, model: str, log: Path) -> ServerProcess:
    process = proxy_process(
        upstream_url, data_dir, log, memory=arm != "no_memory", start_timeout_s=120,
        default_model=model, prompt_layout="naive" if arm == "naive" else "cache-aware",
        **({"recall_late_top_k": "0"} if arm == "memproxy_prefetch_only" else {}),
    )
    return process.start()


def timed_turn(client: httpx.Client, body: dict[str, Any]) -> tuple[float, str, dict[str, str]]:
    """(ms to the first content token, the answer, memproxy's response headers) for one streamed turn."""
    start = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"turn failed with HTTP {response.status_code}: {response.read()[:300]!r}")
        headers = {k: v for k, v in response.headers.items() if k.startswith("x-memproxy")}
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:]).get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    first = first or time.perf_counter()
                    parts.append(text)
    return ((first or time.perf_counter()) - start) * 1000, "".join(parts), headers


PREFILLS = "memproxy_prefills_total"
PREFILL_WAIT_S = 120.0


def wait_for_prefill(proxy: httpx.Client, answers: int) -> float:
    """Block until memproxy has settled the next-turn prefill of each of its ``answers`` answers; returns ms waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < PREFILL_WAIT_S:
        text = proxy.get("/metrics").text
        if metric_sum(text, PREFILLS) >= answers and metric_sum(text, "memproxy_prefill_in_flight") == 0:
            break
        time.sleep(0.02)
    return (time.perf_counter() - start) * 1000


def replay(vllm_metrics: httpx.Client, proxies: dict[str, str], args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    system = system_prompt(args.system_tokens, rng)
    histories = {arm: [{"role": "system", "content": system}] for arm in proxies}
    clients = {arm: httpx.Client(base_url=url, timeout=600, trust_env=False) for arm, url in proxies.items()}
    per_turn: dict[str, list[dict[str, Any]]] = {arm: [] for arm in proxies}
    try:
        for turn in range(args.turns):
            question = _QUESTIONS[turn % len(_QUESTIONS)]
            for arm in rng.sample(list(proxies), len(proxies)):
                history = histories[arm]
                history.append({"role": "user", "content": question})
                body = {"model": args.model, "messages": history, "user": USER, "stream": True,
                        "max_tokens": args.max_tokens, "temperature": 0}
                before = vllm_metrics.get("/metrics").text
                ttft, answer, headers = timed_turn(clients[arm], body)
                after = vllm_metrics.get("/metrics").text
                hits = metric_sum(after, HITS) - metric_sum(before, HITS)
                queries = metric_sum(after, QUERIES) - metric_sum(before, QUERIES)
                history.append({"role": "assistant", "content": answer})
                prefill: dict[str, Any] = {}
                if arm in MEMPROXY_ARMS:
                    waited = wait_for_prefill(clients[arm], turn + 1)
                    done = vllm_metrics.get("/metrics").text
                    computed = (metric_sum(done, QUERIES) - metric_sum(after, QUERIES)) - (
                        metric_sum(done, HITS) - metric_sum(after, HITS)
                    )
                    prefill = {"prefill_computed_tokens": int(computed), "prefill_wait_ms": round(waited, 1)}
                per_turn[arm].append({
                    "turn": turn + 1, "prompt_tokens": int(queries), "cached_tokens": int(hits),
                    "hit_ratio": round(hits / queries, 4) if queries else None, "ttft_ms": round(ttft, 1),
                    "recalled": int(headers.get("x-memproxy-recalled", "0")),
                    "memory": headers.get("x-memproxy-memory", "absent"),
                    **prefill,
                })
    finally:
        for client in clients.values():
            client.close()
    return per_turn


def summarise(per_turn: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    base_ttft = statistics.median(t["ttft_ms"] for t in per_turn["no_memory"])
    for arm, turns in per_turn.items():
        later = [t for t in turns if t["turn"] >= 3]
        hits = sum(t["cached_tokens"] for t in later)
        queries = sum(t["prompt_tokens"] for t in later)
        ttft = statistics.median(t["ttft_ms"] for t in turns)
        report[arm] = {
            "hit_ratio_from_turn3": round(hits / queries, 4) if queries else None,
            "ttft_ms_p50": round(ttft, 1),
            "ttft_ratio": round(ttft / base_ttft, 3),
            "turns": turns,
        }
    return report


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="memproxy-prefix-") as tmp_name:
        tmp = Path(tmp_name)
        asyncio.run(seed_store(tmp / "seed", facts(args.memories, rng)))
        vllm = None if args.upstream_url else VllmServer(free_port()).start()
        upstream_url = args.upstream_url.rstrip("/") if args.upstream_url else f"{vllm.base_url}/v1"  # type: ignore[union-attr]
        processes: list[ServerProcess] = []
        try:
            proxies = {}
            for arm in ARMS:
                data_dir = tmp / arm
                shutil.copytree(tmp / "seed", data_dir)
                process = start_proxy(arm, data_dir, upstream_url, args.model, tmp / f"{arm}.log")
                processes.append(process)
                proxies[arm] = process.ready_url.removesuffix("/readyz")
            with httpx.Client(base_url=upstream_url.removesuffix("/v1"), timeout=30, trust_env=False) as metrics:
                per_turn = replay(metrics, proxies, args, rng)
        finally:
            for process in processes:
                process.stop()
            if vllm is not None:
                vllm.stop()
    report = summarise(per_turn)
    report["settings"] = {k: getattr(args, k) for k in ("turns", "memories", "system_tokens", "max_tokens", "model")}
    for arm in (*MEMPROXY_ARMS, "naive"):
        if not any(t["recalled"] for t in report[arm]["turns"]):
            raise SystemExit(f"the {arm} arm recalled nothing: the benchmark would not measure memory")
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0


def format_table(report: dict[str, Any]) -> str:
    lines = ["memproxy bench prefix-cache — prompt tokens served from vLLM's prefix cache, per turn"]
    lines.append(f"{'turn':>4} " + " ".join(f"{arm + ' hit/ttft':>24}" for arm in ARMS))
    for index in range(len(report["memproxy"]["turns"])):
        cells = []
        for arm in ARMS:
            t = report[arm]["turns"][index]
            ratio = "-" if t["hit_ratio"] is None else f"{t['hit_ratio']:.0%}"
            cells.append(f"{ratio:>6} of {t['prompt_tokens']:>5} {t['ttft_ms']:>7.0f}ms")
        lines.append(f"{index + 1:>4} " + " ".join(f"{c:>24}" for c in cells))
    for arm in ARMS:
        r = report[arm]
        lines.append(f"{arm}: hit ratio from turn 3 {r['hit_ratio_from_turn3']}, TTFT p50 {r['ttft_ms_p50']} ms "
                     f"({r['ttft_ratio']}x no-memory)")
    return "\n".join(lines)
