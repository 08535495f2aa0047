"""The proxy's hold on the memory engine, shared by every service that needs memory (chats, the memory API, adapter
training, metrics): an engine the caller opened (tests, benchmarks), one the app opens at start-up from the settings
and closes at shutdown, or none (memory turned off). An engine that fails to open leaves memory unavailable, with the
reason, until the proxy restarts: chats go on without it and say so."""

from __future__ import annotations

import logging

from memory import MemoryConfig, MemoryEngine
from proxy.errors import MemoryUnavailable

logger = logging.getLogger(__name__)


class MemoryAccess:
    def __init__(self, *, engine: MemoryEngine | None = None, config: MemoryConfig | None = None) -> None:
        """``engine``: open, owned by the caller. Else ``config``: opened by :meth:`start`. Neither: memory is off."""
        self._engine = engine
        self._config = config if engine is None else None
        self._failure: str | None = None

    @property
    def enabled(self) -> bool:
        """Memory is on (whether or not it is serving)."""
        return self._engine is not None or self._config is not None

    def engine(self) -> MemoryEngine:
        """The engine; MemoryUnavailable when memory is off, not started yet, or failed to start."""
        if self._engine is not None:
            return self._engine
        if self._config is None:
            raise MemoryUnavailable(None)
        raise MemoryUnavailable(self._failure or "memory-starting")

    async def start(self) -> None:
        """Open the engine from the config, if the app owns one; a failure is logged and kept as the reason."""
        if self._engine is not None or self._config is None:
            return
        try:
            self._engine = await MemoryEngine.open(self._config)
        except Exception as exc:
            logger.exception("memory could not start; chats go on without it")
            self._failure = f"memory-unavailable:{type(exc).__name__}"

    async def close(self) -> None:
        """Close the engine if the app opened it (a given one is its caller's to close)."""
        if self._config is not None and self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.close()
