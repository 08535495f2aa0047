"""MicroBatcher: merging concurrent calls, each caller getting exactly its rows, fairness, failure isolation.

The model here is a small deterministic function of the text (the batcher is generic over its model); the real
embedders are exercised through the batcher in test_embedders.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from memory.embedding.batcher import MicroBatcher

DIM = 8


def vector(text: str) -> np.ndarray:
    raw = np.frombuffer(hashlib.sha256(text.encode()).digest()[: DIM * 4], dtype=np.uint32).astype(np.float32)
    return raw / np.linalg.norm(raw)


class Model:
    """Records every call (from which thread, how many texts); optionally slow or failing on a given text."""

    def __init__(self, delay: float = 0.0, poison: str | None = None) -> None:
        self.delay = delay
        self.poison = poison
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        self.threads.add(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        if self.poison is not None and self.poison in texts:
            raise ValueError(f"cannot embed {self.poison!r}")
        return np.stack([vector(t) for t in texts])


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
    yield pool
    pool.shutdown(wait=True)


async def test_concurrent_callers_share_model_calls_and_get_their_own_rows(executor: ThreadPoolExecutor) -> None:
    model = Model(delay=0.005)
    batcher = MicroBatcher(model, executor, max_batch=64)
    requests = [[f"caller {i} text {j}" for j in range(i % 3 + 1)] for i in range(24)]

    results = await asyncio.gather(*(batcher.run(texts) for texts in requests))

    for texts, rows in zip(requests, results, strict=True):
        assert rows.shape == (len(texts), DIM)
        np.testing.assert_array_equal(rows, np.stack([vector(t) for t in texts]))
    assert batcher.calls == len(model.calls) < len(requests)
    assert batcher.texts == sum(len(texts) for texts in requests)
    assert model.threads == {"model_0"}  # the one worker thread, never the event loop


async def test_callers_arriving_while_the_model_runs_go_together_in_the_next_call(
    executor: ThreadPoolExecutor,
) -> None:
    model = Model(delay=0.02)
    batcher = MicroBatcher(model, executor)
    first = asyncio.ensure_future(batcher.run(["first"]))
    await asyncio.sleep(0.005)  # the first call is running now
    later = [asyncio.ensure_future(batcher.run([f"later {i}"])) for i in range(10)]

    await asyncio.gather(first, *later)

    assert model.calls == [["first"], [f"later {i}" for i in range(10)]]


async def test_a_collection_window_merges_callers_that_arrive_within_it(executor: ThreadPoolExecutor) -> None:
    model = Model()
    batcher = MicroBatcher(model, executor, max_wait=0.05)

    async def late_caller() -> np.ndarray:
        await asyncio.sleep(0.01)
        return await batcher.run(["late"])

    await asyncio.gather(batcher.run(["early"]), late_caller())

    assert model.calls == [["early", "late"]]


async def test_large_requests_are_chunked_and_do_not_starve_small_ones(executor: ThreadPoolExecutor) -> None:
    model = Model(delay=0.002)
    batcher = MicroBatcher(model, executor, max_batch=16)
    bulk_texts = [f"bulk {i}" for i in range(200)]
    finished: list[str] = []

    async def tracked(name: str, texts: list[str]) -> np.ndarray:
        rows = await batcher.run(texts)
        finished.append(name)
        return rows

    bulk = asyncio.ensure_future(tracked("bulk", bulk_texts))
    await asyncio.sleep(0.005)
    query = await tracked("query", ["a user's query"])
    rows = await bulk

    assert finished == ["query", "bulk"]
    assert max(len(call) for call in model.calls) <= 16
    np.testing.assert_array_equal(rows, np.stack([vector(t) for t in bulk_texts]))
    np.testing.assert_array_equal(query, vector("a user's query")[None])


async def test_a_failing_text_fails_only_its_own_caller(executor: ThreadPoolExecutor) -> None:
    model = Model(delay=0.005, poison="bad")
    batcher = MicroBatcher(model, executor)

    results = await asyncio.gather(
        batcher.run(["good 1"]), batcher.run(["x", "bad"]), batcher.run(["good 2"]), return_exceptions=True
    )

    np.testing.assert_array_equal(results[0], vector("good 1")[None])
    assert isinstance(results[1], ValueError)
    np.testing.assert_array_equal(results[2], vector("good 2")[None])


async def test_a_cancelled_caller_does_not_disturb_the_others(executor: ThreadPoolExecutor) -> None:
    model = Model(delay=0.01)
    batcher = MicroBatcher(model, executor)
    running = asyncio.ensure_future(batcher.run(["running"]))
    await asyncio.sleep(0.002)
    doomed = asyncio.ensure_future(batcher.run(["doomed"]))
    survivor = asyncio.ensure_future(batcher.run(["survivor"]))
    await asyncio.sleep(0)
    doomed.cancel()

    await running
    np.testing.assert_array_equal(await survivor, vector("survivor")[None])
    assert doomed.cancelled()
    assert ["doomed"] not in model.calls and all("doomed" not in call for call in model.calls)
    await batcher.wait_idle()


async def test_empty_requests_are_refused(executor: ThreadPoolExecutor) -> None:
    with pytest.raises(ValueError, match="nothing to embed"):
        await MicroBatcher(Model(), executor).run([])


async def test_an_idle_batcher_hands_the_first_call_to_the_worker_at_once(executor) -> None:
    """The caller's next work on the event loop overlaps the model: the call is in the worker before the loop runs
    anything else (no drain task has to be scheduled first)."""
    started = threading.Event()

    def model(texts: list[str]) -> np.ndarray:
        started.set()
        return np.stack([vector(t) for t in texts])

    batcher = MicroBatcher(model, executor)
    call = asyncio.get_running_loop().create_task(batcher.run(["query"]))
    await asyncio.sleep(0)  # the caller's coroutine runs up to its await; nothing else has had a turn
    assert started.wait(2.0)
    assert np.allclose((await call)[0], vector("query"))
    assert batcher.calls == 1 and batcher.texts == 1


async def test_a_query_does_not_wait_behind_a_bulk_embedding() -> None:
    """The query lane: while a slow bulk call runs in the embedder's worker, embed_one is served by its own."""
    from memory.embedding.batcher import BatchedEmbedder

    release = threading.Event()

    class Slow(BatchedEmbedder):
        dim, name = DIM, "slow"

        def __init__(self) -> None:
            self._start_batching(
                ThreadPoolExecutor(1, "bulk"), max_batch=8, max_wait=0.0, query_executor=ThreadPoolExecutor(1, "query")
            )

        def encode(self, texts) -> np.ndarray:
            if len(texts) > 1:
                release.wait(5.0)  # a long write job
            return np.stack([vector(t) for t in texts])

        encode_query = encode

    embedder = Slow()
    bulk = asyncio.ensure_future(embedder.embed(["a", "b", "c"]))
    await asyncio.sleep(0.05)
    query = await asyncio.wait_for(embedder.embed_one("what is my dog called?"), 2.0)
    assert np.allclose(query, vector("what is my dog called?")) and not bulk.done()
    release.set()
    assert (await bulk).shape == (3, DIM)
    await embedder.close()
