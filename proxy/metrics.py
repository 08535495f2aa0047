"""Prometheus metrics: what the proxy counts as requests go by, and what it reads at scrape time (the write queue,
extraction outcomes, adapters, the upstreams' health and vLLM's own prefix-cache counters).

One :class:`Metrics` per app, on its own registry, so several apps in one process (tests) never share counters.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from proxy.errors import MemoryUnavailable

if TYPE_CHECKING:
    from adapters.routing import AdapterRouter
    from proxy.chat.memory import PreparedChat
    from proxy.chat.prefill import PrefillRunner
    from proxy.memory_access import MemoryAccess
    from proxy.upstream_pool import UpstreamPool

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
UPSTREAM_SCRAPE_TIMEOUT_S = 2.0
VLLM_PREFIX_HITS = "vllm:prefix_cache_hits_total"
VLLM_PREFIX_QUERIES = "vllm:prefix_cache_queries_total"

StatsSource = Callable[[], Mapping[str, int] | None]


class _SnapshotCounters(Collector):
    """Counters kept elsewhere as plain ints (extraction outcomes, adapter loads), exposed as they are at scrape."""

    def __init__(self, name: str, documentation: str, label: str, source: StatsSource) -> None:
        self._name, self._doc, self._label, self._source = name, documentation, label, source

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self._name, self._doc, labels=[self._label])
        for value, count in sorted((self._source() or {}).items()):
            family.add_metric([value], count)
        yield family


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._memory: MemoryAccess | None = None
        self._upstreams: UpstreamPool | None = None
        self._http: httpx.AsyncClient | None = None
        r = self.registry
        self.requests = Counter(
            "memproxy_http_requests", "HTTP requests answered, by route and status.", ["route", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "memproxy_http_request_duration_seconds", "Time from request to the last byte of the response.",
            ["route"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.phase_seconds = Histogram(
            "memproxy_chat_phase_seconds",
            "Chat time by phase: identity, recall (memory work before going upstream), upstream_ttfb (request start "
            "to the upstream's first answer bytes).",
            ["phase"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.recalled = Histogram(
            "memproxy_recalled_memories", "Memories recalled into a chat.", buckets=(0, 1, 2, 4, 6, 8, 12, 20, 50),
            registry=r,
        )
        self.memory_status = Counter(
            "memproxy_chat_memory", "Chats by memory status: ok, off, skipped (side requests), degraded.", ["status"],
            registry=r,
        )
        self.degraded = Counter(
            "memproxy_memory_degraded", "Chats that went on without memory, by reason.", ["reason"], registry=r
        )
        self.failovers = Counter(
            "memproxy_upstream_failovers", "Requests sent to another replica after theirs refused.", registry=r
        )
        self.rate_limited_total = Counter(
            "memproxy_rate_limited", "Requests answered 429 by a per-key limit, by code (proxy.limits).", ["code"],
            registry=r,
        )
        self.queue_depth = Gauge("memproxy_write_queue_depth", "Exchanges waiting in the durable write queue.", registry=r)
        self.queue_lag = Gauge(
            "memproxy_write_queue_lag_seconds", "Age of the oldest queued write (0 when empty).", registry=r
        )
        self.dead_letters = Gauge("memproxy_write_dead_letters", "Writes that failed for good.", registry=r)
        self.index_lag = Gauge(
            "memproxy_memory_index_lag_changes",
            "Changes in the memory store that recall's indexes do not reflect yet (another replica's writes, imports).",
            registry=r,
        )
        self.upstream_up = Gauge("memproxy_upstream_up", "1 if the replica is considered healthy.", ["upstream"], registry=r)
        self.prefix_hits = Gauge(
            "memproxy_upstream_prefix_cache_hit_tokens", "vLLM's prefix-cache hit tokens (its counter, as scraped).",
            ["upstream"], registry=r,
        )
        self.prefix_queries = Gauge(
            "memproxy_upstream_prefix_cache_query_tokens", "vLLM's prefix-cache queried tokens (as scraped).",
            ["upstream"], registry=r,
        )
        self.prefix_ratio = Gauge(
            "memproxy_upstream_prefix_cache_hit_ratio", "vLLM prefix-cache hits / queries since its start.",
            ["upstream"], registry=r,
        )

    # --- the chat path ---------------------------------------------------------------------------------------

    def phase(self, name: str, seconds: float) -> None:
        self.phase_seconds.labels(name).observe(seconds)

    def prepared(self, prepared: PreparedChat) -> None:
        self.memory_status.labels(prepared.status).inc()
        if prepared.status == "ok":
            self.recalled.observe(prepared.recalled)
        if prepared.status == "degraded":
            self.count_degraded(prepared)
        if "memory" in prepared.timings_ms:
            self.phase("recall", prepared.timings_ms["memory"] / 1000)

    def count_degraded(self, prepared: PreparedChat) -> None:
        """A degraded chat, by reason; also called for memory taken back after :meth:`prepared` counted the chat
        (the upstream refused the prompt it made)."""
        self.degraded.labels((prepared.reason or "unknown").split(":", 1)[0]).inc()

    def failover(self) -> None:
        self.failovers.inc()

    def rate_limited(self, code: str) -> None:
        self.rate_limited_total.labels(code).inc()

    def http(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)

    # --- read at scrape time ---------------------------------------------------------------------------------

    def watch_prefills(self, runner: PrefillRunner) -> None:
        gauge = Gauge("memproxy_prefill_in_flight", "Next-turn prefills running now.", registry=self.registry)
        gauge.set_function(lambda: runner.in_flight)
        self.add_counters(
            "memproxy_prefills",
            "Next-turn prefills: prefilled, nothing_new, skipped_busy, failed; unaligned (sent without padding to a "
            "KV block boundary).",
            "outcome",
            lambda: dataclasses.asdict(runner.stats),
        )

    def watch_memory(self, memory: MemoryAccess) -> None:
        """The write queue and the extraction outcomes, read from the engine at each scrape."""
        self._memory = memory

        def extractions() -> Mapping[str, int] | None:
            try:
                return memory.engine().extraction_stats()
            except MemoryUnavailable:
                return None

        self.add_counters(
            "memproxy_extractions", "Write-path extraction outcomes (LLM extractor): ok or the fallback taken.",
            "outcome", extractions,
        )  # fmt: skip

    def watch_adapters(self, router: AdapterRouter) -> None:
        """Chats by adapter outcome, and the loads and unloads sent to vLLM."""
        loader = router.loader
        self.add_counters(
            "memproxy_adapter_routing", "Chats by adapter outcome: adapter, base, fallback:<reason>.", "outcome",
            router.metrics.counts,
        )  # fmt: skip
        self.add_counters(
            "memproxy_adapter_loader", "Adapter loads and unloads (LRU evictions, erasures) sent to vLLM.", "event",
            lambda: {"load": loader.loads, "unload": loader.unloads},
        )  # fmt: skip

    def watch_upstreams(self, upstreams: UpstreamPool, http: httpx.AsyncClient) -> None:
        """The replicas' health, and vLLM's own prefix-cache counters scraped from each at each scrape."""
        self._upstreams, self._http = upstreams, http

    def add_counters(self, name: str, documentation: str, label: str, source: StatsSource) -> None:
        self.registry.register(_SnapshotCounters(name, documentation, label, source))

    async def render(self) -> bytes:
        await asyncio.gather(self._read_memory(), self._read_upstreams())
        return generate_latest(self.registry)

    async def _read_memory(self) -> None:
        if self._memory is None:
            return
        try:
            engine = self._memory.engine()
            queue, indexes = await engine.write_queue_stats(), await engine.index_stats()
        except MemoryUnavailable:
            return
        except Exception as exc:  # a scrape must not fail because memory is unwell
            logger.warning("could not read the memory engine's state for metrics: %s", exc)
            return
        self.queue_depth.set(queue.depth)
        self.queue_lag.set(queue.oldest_age_s)
        self.dead_letters.set(queue.dead_letters)
        self.index_lag.set(indexes.lag)

    async def _read_upstreams(self) -> None:
        upstreams, http = self._upstreams, self._http
        if upstreams is None or http is None:
            return

        async def scrape(url: str) -> None:
            try:
                response = await http.get(url.removesuffix("/v1") + "/metrics", timeout=UPSTREAM_SCRAPE_TIMEOUT_S)
                response.raise_for_status()
            except Exception:  # noqa: BLE001 - not every upstream exposes vLLM's metrics; a scrape never fails
                return
            hits, queries = metric_sum(response.text, VLLM_PREFIX_HITS), metric_sum(response.text, VLLM_PREFIX_QUERIES)
            self.prefix_hits.labels(url).set(hits)
            self.prefix_queries.labels(url).set(queries)
            self.prefix_ratio.labels(url).set(hits / queries if queries else 0.0)

        for replica in upstreams.replicas:
            self.upstream_up.labels(replica.url).set(1 if replica.healthy else 0)
        await asyncio.gather(*(scrape(r.url) for r in upstreams.replicas))


def metric_sum(text: str, name: str) -> float:
    """Sum of a Prometheus sample over its label sets (0 if absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except ValueError:
                continue
    return total


def label_of(scope: Mapping[str, Any]) -> str:
    """The route template of a request (``/v1/memories/{memory_id}``), not its path: bounded label values."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"
