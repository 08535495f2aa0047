"""Several vLLM replicas behind one proxy: each user goes to the same replica, so their prefix cache and their
LoRA adapter stay warm there; a replica that fails is taken out until a health probe finds it back.

Affinity is rendezvous (highest-random-weight) hashing over the healthy replicas: every (user, replica) pair gets a
hash, the user goes to the replica with the highest. Removing a replica moves only the users it had; bringing it
back moves exactly those back. No ring or table to keep in step between proxy replicas: they all agree by
computation.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from proxy.errors import UpstreamError, UpstreamUnreachable
from proxy.upstream import UpstreamClient

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2.0


@dataclass(slots=True)
class Replica:
    client: UpstreamClient
    healthy: bool = True
    down_since: float | None = None
    failures: int = 0
    requests: int = field(default=0)

    @property
    def url(self) -> str:
        return self.client.base_url


def _weight(key: str, url: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{key}\x00{url}".encode(), digest_size=8).digest(), "big")


class UpstreamPool:
    def __init__(self, clients: Sequence[UpstreamClient], *, probe_interval_s: float = 5.0) -> None:
        if not clients:
            raise ValueError("at least one upstream is needed")
        self.replicas = [Replica(client) for client in clients]
        self._probe_interval_s = probe_interval_s
        self._prober: asyncio.Task[None] | None = None

    @property
    def primary(self) -> UpstreamClient:
        """The first healthy replica (for requests with no user affinity: models, readiness)."""
        return next((r.client for r in self.replicas if r.healthy), self.replicas[0].client)

    def ranked(self, key: str) -> list[Replica]:
        """Replicas in the order ``key`` tries them: healthy ones by rendezvous weight, then the unhealthy ones
        (tried last, so a pool whose every replica looks down still attempts the request)."""
        by_weight = sorted(self.replicas, key=lambda r: _weight(key, r.url), reverse=True)
        return [r for r in by_weight if r.healthy] + [r for r in by_weight if not r.healthy]

    def for_key(self, key: str) -> UpstreamClient:
        return self.ranked(key)[0].client

    def mark_down(self, client: UpstreamClient, reason: str) -> None:
        for replica in self.replicas:
            if replica.client is client and replica.healthy:
                replica.healthy, replica.down_since = False, time.monotonic()
                replica.failures += 1
                logger.warning("upstream %s marked down: %s", replica.url, reason)

    def mark_up(self, client: UpstreamClient) -> None:
        for replica in self.replicas:
            if replica.client is client and not replica.healthy:
                replica.healthy, replica.down_since = True, None
                logger.info("upstream %s is back", replica.url)

    async def probe_once(self) -> None:
        async def probe(replica: Replica) -> None:
            try:
                await replica.client.get("models", timeout=PROBE_TIMEOUT_S)
            except UpstreamError as exc:
                self.mark_down(replica.client, f"health probe: {exc.message}")
            else:
                self.mark_up(replica.client)

        await asyncio.gather(*(probe(r) for r in self.replicas))

    def start(self) -> None:
        if len(self.replicas) > 1 and self._prober is None:
            self._prober = asyncio.get_running_loop().create_task(self._probe_forever(), name="upstream-prober")

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            await asyncio.gather(self._prober, return_exceptions=True)
            self._prober = None

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self._probe_interval_s)
            try:
                await self.probe_once()
            except Exception:  # a probe must never kill the prober
                logger.exception("upstream health probe failed")


def is_failover_safe(exc: BaseException) -> bool:
    """Only a request the replica never took (connection refused / reset before an answer) may be sent to
    another replica; a timeout or an error status may have done work there, so it is reported instead."""
    return isinstance(exc, UpstreamUnreachable)
