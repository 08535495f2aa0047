"""Keeps users' adapters loaded in vLLM: load on first use, replace in place on a new version, unload the least
recently used beyond ``max_loaded``, and forget what vLLM forgot (a restart).

vLLM's runtime LoRA API (``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` and ``--enable-lora``), as vLLM 0.32 answers:

==============================  ======  ===============================================================
call                            status  meaning, and what the loader does
==============================  ======  ===============================================================
load_lora_adapter               200     loaded (plain-text body)
load_lora_adapter               400     "has already been loaded": the name is there, but maybe an older
                                        version (another replica, or our restart) → reload with
                                        ``load_inplace``; any other 400 (e.g. name clashes with the base
                                        model) → :class:`AdapterLoadError`
load_lora_adapter               404     no adapter at that path (files missing) → AdapterLoadError
load_lora_adapter               5xx     vLLM could not read it (corrupt weights, rank too high) → error
unload_lora_adapter             200     unloaded
unload_lora_adapter             404     not loaded (already gone, e.g. after a restart) → fine
chat with ``model=<name>``      404     "The model `…` does not exist": vLLM restarted and lost it →
                                        :meth:`VllmAdapterLoader.forget`, load again, retry once (routing)
==============================  ======  ===============================================================

One lock per adapter name: concurrent first requests for a user load it once. The alternative to this loader is
vLLM's filesystem resolver plugin (see :class:`ResolverAdapterLoader`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Protocol

import httpx

from adapters.registry import AdapterVersion

logger = logging.getLogger(__name__)

LOAD_PATH = "/v1/load_lora_adapter"
UNLOAD_PATH = "/v1/unload_lora_adapter"


class AdapterLoadError(Exception):
    """An adapter could not be made available; ``reason`` is a short machine-readable label for logs and metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LoadedAdapter:
    """What vLLM holds under a name: which version, from which folder."""

    version: int
    path: str


class AdapterLoader(Protocol):
    """Makes an adapter version servable and says which ``model`` name selects it. Every implementation runs the
    contract suite in tests/adapters/test_loader_contract.py."""

    loads: int
    """Loads made since start: one each time :meth:`ensure_loaded` found the adapter not loaded (a new version
    loaded in place included); a loader whose server loads adapters on its own makes none."""
    unloads: int
    """Adapters the server dropped at this loader's request since start (LRU evictions, :meth:`unload`); asking
    to drop a name the server does not hold counts nothing, and a loader that makes no loads asks for no drops."""

    def model_name(self, adapter: AdapterVersion) -> str:
        """The ``model`` a chat names to be served by ``adapter``: the same for the same version, loaded or not,
        from any loader of the kind."""

    def is_loaded(self, adapter: AdapterVersion) -> bool:
        """Fast path (no I/O): already servable; also marks it used (LRU)."""

    async def ensure_loaded(self, adapter: AdapterVersion) -> None:
        """Afterwards :meth:`is_loaded` is true. Concurrent calls for one adapter load it once. Raises
        :class:`AdapterLoadError`."""

    def forget(self, name: str) -> None:
        """The server lost the adapter named ``name`` (:attr:`AdapterVersion.name`; a restart): the next
        :meth:`ensure_loaded` does what a first one does."""

    async def unload(self, name: str) -> None:
        """Make the server drop ``name`` (a :meth:`model_name`; the user was erased); not loaded there is fine,
        and the next :meth:`ensure_loaded` does what a first one does. Raises :class:`AdapterLoadError`."""


class VllmAdapterLoader:
    """Loads through vLLM's runtime LoRA API; at most ``max_loaded`` adapters at once (LRU)."""

    def __init__(self, client: httpx.AsyncClient, vllm_url: str, *, max_loaded: int, timeout_s: float = 60.0,
                 api_key: str | None = None) -> None:
        if max_loaded < 1:
            raise ValueError("max_loaded must be at least 1")
        self._client = client
        self._url = vllm_url.rstrip("/").removesuffix("/v1")
        self._max = max_loaded
        self._timeout = timeout_s
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._loaded: OrderedDict[str, LoadedAdapter] = OrderedDict()
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._evicting = asyncio.Lock()
        self.loads = 0
        self.unloads = 0
        self.last_load_ms = 0.0

    @property
    def loaded(self) -> list[str]:
        """Names in vLLM, least recently used first."""
        return list(self._loaded)

    def model_name(self, adapter: AdapterVersion) -> str:
        return adapter.name

    def is_loaded(self, adapter: AdapterVersion) -> bool:
        held = self._loaded.get(adapter.name)
        if held is None or held.version != adapter.version:
            return False
        self._loaded.move_to_end(adapter.name)
        return True

    def forget(self, name: str) -> None:
        self._loaded.pop(name, None)

    async def ensure_loaded(self, adapter: AdapterVersion) -> None:
        if self.is_loaded(adapter):
            return
        async with self._locks[adapter.name]:
            if self.is_loaded(adapter):  # a concurrent request loaded it while we waited
                return
            held = self._loaded.get(adapter.name)
            await self._make_room(keep=adapter.name)
            started = time.perf_counter()
            await self._load(adapter, inplace=held is not None)
            self.last_load_ms = (time.perf_counter() - started) * 1000
            self.loads += 1
            self._loaded[adapter.name] = LoadedAdapter(adapter.version, str(adapter.path))
            self._loaded.move_to_end(adapter.name)
            logger.info("adapter %s v%d loaded in %.0f ms", adapter.name, adapter.version, self.last_load_ms)

    async def unload(self, name: str) -> None:
        async with self._locks[name]:
            await self._unload(name)

    async def _make_room(self, keep: str) -> None:
        async with self._evicting:
            while sum(name != keep for name in self._loaded) >= self._max:
                victim = next(name for name in self._loaded if name != keep)
                # Out of the table first: a request that sees it missing will load it again under its own lock.
                self._loaded.pop(victim, None)
                try:
                    await self._unload(victim)
                except AdapterLoadError as exc:
                    logger.warning("unloading adapter %s failed (%s); vLLM's own LRU will evict it", victim, exc)

    async def _load(self, adapter: AdapterVersion, *, inplace: bool) -> None:
        body = {"lora_name": adapter.name, "lora_path": str(adapter.path), "load_inplace": inplace}
        response = await self._post(LOAD_PATH, body)
        if response.status_code == 200:
            return
        message = _message(response)
        if response.status_code == 400 and "already been loaded" in message and not inplace:
            # Someone loaded this name before us (a replica, or this proxy before a restart): maybe another version.
            retry = await self._post(LOAD_PATH, {**body, "load_inplace": True})
            if retry.status_code == 200:
                return
            response, message = retry, _message(retry)
        if response.status_code == 404:
            raise AdapterLoadError("not-found", f"vLLM found no adapter at {adapter.path}: {message}")
        if response.status_code == 400:
            raise AdapterLoadError("rejected", f"vLLM refused adapter {adapter.name}: {message}")
        raise AdapterLoadError(f"load-http-{response.status_code}", f"vLLM could not load {adapter.name}: {message}")

    async def _unload(self, name: str) -> None:
        response = await self._post(UNLOAD_PATH, {"lora_name": name})
        self._loaded.pop(name, None)
        if response.status_code in (200, 404):  # 404: not loaded there (restart) — the goal is met either way
            self.unloads += response.status_code == 200
            return
        raise AdapterLoadError(f"unload-http-{response.status_code}", _message(response))

    async def _post(self, path: str, body: dict[str, object]) -> httpx.Response:
        try:
            return await self._client.post(f"{self._url}{path}", json=body, headers=self._headers, timeout=self._timeout)
        except httpx.TimeoutException as exc:
            raise AdapterLoadError("timeout", f"vLLM did not answer {path} in {self._timeout}s") from exc
        except httpx.TransportError as exc:
            raise AdapterLoadError("unreachable", f"vLLM unreachable for {path}: {type(exc).__name__}") from exc


class ResolverAdapterLoader:
    """For a remote vLLM that reads adapters itself with its filesystem resolver plugin: start vLLM with
    ``VLLM_PLUGINS=lora_filesystem_resolver VLLM_LORA_RESOLVER_CACHE_DIR=<adapters_dir as vLLM sees it>`` (a shared
    volume). A request naming ``<name>-v<version>`` makes vLLM load that folder on first use; each version has its
    own name (the resolver caches by name), so nothing is loaded in place and nothing needs loading from here.
    vLLM's ``--max-cpu-loras`` bounds what it keeps. The adapter's ``base_model_name_or_path`` must equal vLLM's
    ``--model`` (the trainer writes the base model's path, which is what the local script serves)."""

    def __init__(self) -> None:
        self.loads = 0
        """Always 0: vLLM loads each version itself, on the first request naming it."""
        self.unloads = 0
        """Always 0: nothing to ask vLLM to drop (see :meth:`unload`)."""

    def model_name(self, adapter: AdapterVersion) -> str:
        return adapter.versioned_name

    def is_loaded(self, adapter: AdapterVersion) -> bool:
        return True

    async def ensure_loaded(self, adapter: AdapterVersion) -> None:
        return None

    def forget(self, name: str) -> None:
        return None

    async def unload(self, name: str) -> None:
        """Nothing to call: vLLM's resolver keeps what it loaded until its LRU evicts it or vLLM restarts (the
        folder is gone by then, so it cannot be loaded again)."""
        return None


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    inner = data.get("error", data) if isinstance(data, dict) else {}
    message = inner.get("message") if isinstance(inner, dict) else None
    return str(message or response.text)[:300]
