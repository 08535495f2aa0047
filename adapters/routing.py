"""Which ``model`` a chat goes to: the user's current adapter when they have a ready one (loaded on demand), else
the base model. An adapter problem never fails a chat: it falls back to the base model, logs the reason and counts
it in :class:`AdapterMetrics`.

The already-loaded case does no I/O: the user's current version comes from a small cache (re-read from the
registry every ``refresh_s``), and the loader's table says it is loaded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from adapters.loader import AdapterLoader, AdapterLoadError
from adapters.registry import AdapterRegistry, AdapterVersion
from memory import Scope

logger = logging.getLogger(__name__)

BROKEN_RETRY_S = 60.0
"""An adapter version that failed to load is not tried again for this long (the base model serves meanwhile)."""
ADAPTER_HEADER = "x-memproxy-adapter"


@dataclass(frozen=True, slots=True)
class RoutedModel:
    model: str
    """The ``model`` to send upstream."""
    adapter: AdapterVersion | None = None
    """The adapter in use, or None (base model)."""
    fallback: str | None = None
    """Why the user's adapter is not used although they have one (a short reason), or None."""

    def headers(self) -> dict[str, str]:
        """A response header that says what served the chat: ``<name> v<version>``, ``fallback:<reason>``."""
        if self.adapter is not None:
            return {ADAPTER_HEADER: f"{self.adapter.name} v{self.adapter.version}"}
        if self.fallback is not None:
            return {ADAPTER_HEADER: f"fallback:{self.fallback}"}
        return {}


@dataclass(slots=True)
class AdapterMetrics:
    routed_adapter: int = 0
    routed_base: int = 0
    fallbacks: Counter[str] = field(default_factory=Counter)
    reloads_after_restart: int = 0

    def snapshot(self) -> dict[str, object]:
        return {
            "routed_adapter": self.routed_adapter,
            "routed_base": self.routed_base,
            "fallbacks": dict(self.fallbacks),
            "reloads_after_restart": self.reloads_after_restart,
        }

    def counts(self) -> dict[str, int]:
        """One flat mapping (outcome → count) for a labelled counter: adapter, base, fallback:<reason>, reload."""
        return {
            "adapter": self.routed_adapter,
            "base": self.routed_base,
            "reload-after-restart": self.reloads_after_restart,
            **{f"fallback:{reason}": count for reason, count in self.fallbacks.items()},
        }

    def prometheus(self) -> str:
        lines = [
            f"memproxy_adapter_routed_total{{target=\"adapter\"}} {self.routed_adapter}",
            f"memproxy_adapter_routed_total{{target=\"base\"}} {self.routed_base}",
            f"memproxy_adapter_reloads_after_restart_total {self.reloads_after_restart}",
        ]
        lines += [f"memproxy_adapter_fallbacks_total{{reason=\"{r}\"}} {n}" for r, n in sorted(self.fallbacks.items())]
        return "\n".join(lines) + "\n"


class AdapterRouter:
    def __init__(
        self, registry: AdapterRegistry, loader: AdapterLoader, *, base_model: str, refresh_s: float = 2.0
    ) -> None:
        self.registry = registry
        self.loader = loader
        self.base_model = base_model
        self.refresh_s = refresh_s
        self.metrics = AdapterMetrics()
        self._current: dict[Scope, tuple[float, AdapterVersion | None]] = {}
        self._broken: dict[tuple[str, int], tuple[float, str]] = {}

    async def model_for(self, scope: Scope, requested_model: str) -> RoutedModel:
        """Never raises: any failure is a fallback to ``requested_model``. Only requests for the base model are
        routed (a client that names another model gets it)."""
        if requested_model != self.base_model:
            return RoutedModel(requested_model)
        try:
            adapter = await self._current_adapter(scope)
        except Exception as exc:  # the registry is a convenience here: a chat never fails for it
            return self._fallback(requested_model, None, "registry-error", f"{type(exc).__name__}: {exc}")
        if adapter is None:
            self.metrics.routed_base += 1
            return RoutedModel(requested_model)
        if self.loader.is_loaded(adapter):
            self.metrics.routed_adapter += 1
            return RoutedModel(self.loader.model_name(adapter), adapter)
        return await self._load(adapter, requested_model)

    async def after_model_missing(self, routed: RoutedModel) -> RoutedModel:
        """vLLM answered 404 "model does not exist" for ``routed``: it restarted and lost the adapter. Load it
        again (once); the caller retries the chat with the result."""
        if routed.adapter is None:
            return routed
        self.loader.forget(routed.adapter.name)
        self.metrics.reloads_after_restart += 1
        logger.info("vLLM lost adapter %s (restart?); loading it again", routed.adapter.name)
        return await self._load(routed.adapter, self.base_model)

    def invalidate(self, scope: Scope) -> None:
        """Forget the cached view of ``scope`` (after a publish or retire in this process)."""
        self._current.pop(scope, None)

    async def _load(self, adapter: AdapterVersion, base: str) -> RoutedModel:
        key = (adapter.name, adapter.version)
        broken = self._broken.get(key)
        if broken is not None and broken[0] > time.monotonic():
            self.metrics.fallbacks[broken[1]] += 1
            self.metrics.routed_base += 1
            return RoutedModel(base, None, broken[1])
        try:
            await self.loader.ensure_loaded(adapter)
        except AdapterLoadError as exc:
            self._broken[key] = (time.monotonic() + BROKEN_RETRY_S, exc.reason)
            return self._fallback(base, adapter, exc.reason, str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self._fallback(base, adapter, "load-error", f"{type(exc).__name__}: {exc}")
        self._broken.pop(key, None)
        self.metrics.routed_adapter += 1
        return RoutedModel(self.loader.model_name(adapter), adapter)

    def _fallback(self, base: str, adapter: AdapterVersion | None, reason: str, detail: str) -> RoutedModel:
        self.metrics.fallbacks[reason] += 1
        self.metrics.routed_base += 1
        which = f"{adapter.name} v{adapter.version}" if adapter else "lookup"
        logger.warning("adapter %s not used, base model instead (%s): %s", which, reason, detail)
        return RoutedModel(base, None, reason)

    async def _current_adapter(self, scope: Scope) -> AdapterVersion | None:
        cached = self._current.get(scope)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        adapter = await self.registry.current(scope)
        if len(self._current) > 100_000:
            self._current.clear()
        self._current[scope] = (now + self.refresh_s, adapter)
        return adapter
