"""Micro-batching: concurrent ``embed`` calls share one model call, run in one worker thread.

A model call costs a fixed overhead plus a little per text, so eight queries embedded together cost little more
than one. :class:`MicroBatcher` collects the texts of every caller waiting on the event loop, runs the model once
in its worker thread, and hands each caller its own rows. While the worker is busy, new callers queue up and go
together in the next call, so the batch size adapts to the load with no timer; ``max_wait`` adds an optional
collection window before a call that starts from idle.

Large requests (a write job with hundreds of texts) are cut into chunks of ``max_batch`` texts and served
round-robin with everyone else, so a query arriving behind a bulk load waits for one chunk, not for the whole load.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from memory.embedding.base import Embedder

EncodeFn = Callable[[list[str]], np.ndarray]
"""The model: texts → ``(len(texts), dim)`` float32 rows. Runs in the worker thread."""


@dataclass(eq=False, slots=True)
class _Request:
    texts: Sequence[str]
    future: asyncio.Future[np.ndarray]
    taken: int = 0
    """How many texts have been handed to model calls so far."""
    parts: list[np.ndarray] = field(default_factory=list)
    done: int = 0


_Batch = list[tuple[_Request, int, int]]
"""One model call's share of each request: (request, first text, end)."""


class MicroBatcher:
    """Merges concurrent requests into model calls of at most ``max_batch`` texts, run on ``executor``.

    One event loop at a time uses a batcher. The executor should have one worker: calls are already serialised
    here, and a single thread keeps the model's thread settings (torch / onnxruntime) in one place.
    """

    def __init__(self, encode: EncodeFn, executor: Executor, *, max_batch: int = 64, max_wait: float = 0.0) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_wait < 0:
            raise ValueError("max_wait must not be negative")
        self._encode = encode
        self._executor = executor
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._queue: deque[_Request] = deque()
        self._drain: asyncio.Task[None] | None = None
        self.calls = 0
        """Model calls made so far (a metric; tests use it to see merging)."""
        self.texts = 0
        """Texts embedded so far."""

    async def run(self, texts: Sequence[str]) -> np.ndarray:
        """Rows for ``texts``, in order, computed together with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        if not texts:
            raise ValueError("nothing to embed")
        request = _Request(texts, loop.create_future())
        self._queue.append(request)
        if self._drain is None or self._drain.done():
            first = None
            if self._max_wait == 0:
                # Idle and nothing to wait for: hand the first call to the worker now, not a loop iteration or two
                # later, so that work the caller does next on the loop (recall's BM25) overlaps the model.
                batch = self._take_batch()
                first = (batch, self._submit(loop, batch))
            self._drain = loop.create_task(self._drain_queue(first), name="embedding-batcher")
        elif self._drain.get_loop() is not loop:
            self._queue.remove(request)
            raise RuntimeError("a MicroBatcher is used from one event loop at a time")
        return await request.future

    async def wait_idle(self) -> None:
        """Return once every queued request has been served (for shutdown)."""
        while self._drain is not None and not self._drain.done():
            await asyncio.shield(self._drain)

    async def _drain_queue(self, first: tuple[_Batch, asyncio.Future[np.ndarray]] | None) -> None:
        loop = asyncio.get_running_loop()
        if first is not None:
            await self._settle(loop, *first)
        else:
            # Let callers started in the same loop iteration (asyncio.gather, other tasks) join the first call.
            await asyncio.sleep(self._max_wait)
        while self._queue:
            batch = self._take_batch()
            if batch:
                await self._settle(loop, batch, self._submit(loop, batch))

    def _submit(self, loop: asyncio.AbstractEventLoop, batch: _Batch) -> asyncio.Future[np.ndarray]:
        texts = [text for request, start, end in batch for text in request.texts[start:end]]
        return loop.run_in_executor(self._executor, self._encode, texts)

    async def _settle(self, loop: asyncio.AbstractEventLoop, batch: _Batch, call: asyncio.Future[np.ndarray]) -> None:
        """Hand each caller its rows of ``call``; if a merged call failed, retry each caller alone."""
        try:
            rows = self._counted(await call)
        except Exception as exc:  # noqa: BLE001 - handed to the callers, who see it as their own failure
            if len(batch) == 1:
                self._fail(batch[0][0], exc)
            else:
                await self._retry_alone(loop, batch)
            return
        self._deliver(batch, rows)

    def _counted(self, rows: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.texts += len(rows)
        return rows

    async def _retry_alone(self, loop: asyncio.AbstractEventLoop, batch: _Batch) -> None:
        """A merged call failed: run each caller's slice on its own, so one bad input fails only its caller."""
        for request, start, end in batch:
            if request.future.done():
                continue
            try:
                rows = self._counted(await self._submit(loop, [(request, start, end)]))
            except Exception as exc:  # noqa: BLE001 - see above
                self._fail(request, exc)
            else:
                self._deliver([(request, start, end)], rows)

    def _take_batch(self) -> _Batch:
        """Up to ``max_batch`` texts, one slice per request, front of the queue first; a request with texts left
        goes to the back so that everyone else is served before its next chunk."""
        batch: _Batch = []
        room = self._max_batch
        for _ in range(len(self._queue)):
            if room == 0:
                break
            request = self._queue.popleft()
            if request.future.done():  # the caller gave up (cancelled) before its turn
                continue
            start = request.taken
            end = min(len(request.texts), start + room)
            request.taken = end
            room -= end - start
            batch.append((request, start, end))
            if end < len(request.texts):
                self._queue.append(request)
        return batch

    def _deliver(self, batch: _Batch, rows: np.ndarray) -> None:
        offset = 0
        for request, start, end in batch:
            request.parts.append(rows[offset : offset + end - start])
            offset += end - start
            request.done += end - start
            if request.done == len(request.texts) and not request.future.done():
                parts = request.parts
                request.future.set_result(parts[0] if len(parts) == 1 else np.concatenate(parts))

    def _fail(self, request: _Request, exc: Exception) -> None:
        if request in self._queue:  # the rest of a chunked request is not worth computing
            self._queue.remove(request)
        if not request.future.done():
            request.future.set_exception(exc)


class BatchedEmbedder(Embedder):
    """The shared half of every local embedder: a synchronous :meth:`encode` run in a dedicated worker thread,
    with concurrent ``embed`` calls micro-batched. A backend builds its model, then calls :meth:`_start_batching`.

    :meth:`embed_one` (recall's query) is encoded by :meth:`encode_query`, cut to the backend's
    ``query_max_tokens``. With a ``query_executor`` it has a lane of its own: a second worker thread and batcher
    over the same model, so a query never waits behind a chunk of a write job's texts being embedded.
    The backend's :meth:`encode` and :meth:`encode_query` must then be safe to call from two threads at once."""

    _executor: ThreadPoolExecutor
    _batcher: MicroBatcher
    _query_executor: ThreadPoolExecutor | None = None
    _query_batcher: MicroBatcher

    def _start_batching(
        self,
        executor: ThreadPoolExecutor,
        *,
        max_batch: int,
        max_wait: float,
        query_executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self._executor = executor
        self._batcher = MicroBatcher(self.encode, executor, max_batch=max_batch, max_wait=max_wait)
        # Queries go through a batcher of their own even without a lane of their own: they are encoded by
        # encode_query (cut to query_max_tokens), so they never share a model call with write texts.
        if query_executor is not None:
            self._query_executor = query_executor
        self._query_batcher = MicroBatcher(
            self.encode_query, query_executor or executor, max_batch=max_batch, max_wait=max_wait
        )

    @property
    def batcher(self) -> MicroBatcher:
        return self._batcher

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return await self._batcher.run(texts)

    async def embed_one(self, text: str) -> np.ndarray:
        return (await self._query_batcher.run([text]))[0]

    async def close(self) -> None:
        await self._batcher.wait_idle()
        await self._query_batcher.wait_idle()
        self._executor.shutdown(wait=True)
        if self._query_executor is not None:
            self._query_executor.shutdown(wait=True)

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Synchronous: ``(len(texts), dim)`` normalised float32. Called in the worker thread by the batcher."""

    @abstractmethod
    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`encode` for recall's queries: each text cut to its first ``query_max_tokens`` tokens."""
