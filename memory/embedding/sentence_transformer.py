"""The reference embedder: sentence-transformers (PyTorch), any local model folder, all-MiniLM-L6-v2 by default.

Several times slower than :class:`~memory.embedding.onnx.OnnxEmbedder` for a short query on one core: use that one
on the recall path, this one where exactness or unusual model layouts (Dense heads, custom modules) matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from memory.embedding.batcher import BatchedEmbedder
from memory.embedding.model_folder import default_model_path, embedder_name

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


class SentenceTransformerEmbedder(BatchedEmbedder):
    """All model work runs in one dedicated worker thread whose torch intra-op threads are set to ``threads``;
    concurrent calls are micro-batched (see :class:`MicroBatcher`). The model loads in the constructor."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        device: str = "cpu",
        threads: int = 1,
        batch_size: int = 64,
        max_wait: float = 0.0,
        query_max_tokens: int | None = None,
    ) -> None:
        """``query_max_tokens``: recall's query is cut to this many tokens (None = the model's own limit)."""
        path = Path(model_path) if model_path is not None else default_model_path()
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="st-embedder", initializer=_set_torch_threads, initargs=(threads,)
        )
        try:
            self._model: SentenceTransformer = self._executor.submit(_load, path, device).result()
            dim = self._model.get_embedding_dimension()
            if not dim:
                raise ValueError(f"{path} does not say its embedding dimension")
        except BaseException:
            self._executor.shutdown(wait=False)
            raise
        self.dim = int(dim)
        self.name = embedder_name(path)
        self._batch_size = batch_size
        self._max_seq_length = self._model.max_seq_length
        self._query_max_seq_length = (
            self._max_seq_length if query_max_tokens is None else min(query_max_tokens, self._max_seq_length)
        )
        self._start_batching(self._executor, max_batch=batch_size, max_wait=max_wait)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Synchronous: ``(len(texts), dim)`` normalised float32. Called in the worker thread by the batcher."""
        return self._encode(texts, self._max_seq_length)

    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._query_max_seq_length)

    def _encode(self, texts: Sequence[str], max_seq_length: int) -> np.ndarray:
        # Both batchers run in the one worker thread, one call at a time: the model's limit can be set per call.
        self._model.max_seq_length = max_seq_length
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _load(path: Path, device: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device=device, local_files_only=True)
