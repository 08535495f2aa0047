"""The fast query path: a sentence-transformers model run by ONNX Runtime, int8 by default.

The transformer is exported to ONNX once (:mod:`memory.embedding.onnx_export`, cached by content hash); text is
tokenised with the model's own fast tokenizer (``tokenizer.json``) and pooled and normalised exactly as the
model's sentence-transformers config says (:mod:`memory.embedding.model_folder`). The vectors match
:class:`~memory.embedding.sentence_transformer.SentenceTransformerEmbedder`'s (cosine ≥ 0.99 per text with int8,
1.0 with ``quantize=False``), so the two can share an index.

Torch is imported only when an export is needed, not to serve queries from a cached export.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from memory.embedding.batcher import BatchedEmbedder
from memory.embedding.model_folder import ModelFolder, folder_digest, normalise_rows, pool
from memory.embedding.onnx_export import cached_export
from memory.threads import background


class OnnxEmbedder(BatchedEmbedder):
    """``threads`` is onnxruntime's intra-op thread count. Bulk calls (write jobs) run in one dedicated worker thread
    and recall's queries in a second one over the same session (see :class:`BatchedEmbedder`), each with concurrent
    calls micro-batched (see :class:`MicroBatcher`)."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        cache_dir: Path,
        quantize: bool = True,
        threads: int = 1,
        batch_size: int = 8,
        max_wait: float = 0.0,
        query_max_tokens: int | None = None,
    ) -> None:
        """``batch_size`` caps one model call. On one core the int8 model's cost per text is nearly flat from a few
        texts up, while every caller in a merged call waits for all of it: small calls keep queries quick and still
        gain most of batching. ``query_max_tokens``: recall's query is cut to this many tokens (special tokens
        included; None = the model's own limit)."""
        self._folder = ModelFolder.read(model_path)
        digest = folder_digest(self._folder.path)
        self.name = f"{self._folder.path.name}@{digest[:12]}"
        self.dim = self._folder.dim
        self.model_file = cached_export(self._folder, digest, Path(cache_dir), quantize=quantize)
        self._tokenizer, self._pad_id = _load_tokenizer(self._folder)
        self._query_tokenizer, _ = _load_tokenizer(self._folder, query_max_tokens)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(self.model_file), options, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._batch_size = batch_size
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx-embedder", initializer=background())
        # Queries get their own lane (see BatchedEmbedder): onnxruntime sessions and tokenizers run concurrently.
        queries = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx-query")
        self._start_batching(executor, max_batch=batch_size, max_wait=max_wait, query_executor=queries)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Synchronous: ``(len(texts), dim)`` normalised float32. Called in the worker thread by the batcher."""
        return self._encode(texts, self._tokenizer)

    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._query_tokenizer)

    def _encode(self, texts: Sequence[str], tokenizer: Tokenizer) -> np.ndarray:
        if self._folder.do_lower_case:
            texts = [text.lower() for text in texts]
        # One text at a time: encode_batch would fan out over every core (rayon), ignoring ``threads``.
        encodings = [tokenizer.encode(text).ids for text in texts]
        # Similar lengths together, as sentence-transformers does: less padding per model call.
        order = np.argsort([-len(ids) for ids in encodings], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            out[chunk] = self._run([encodings[i] for i in chunk])
        return out

    def _run(self, encodings: list[list[int]]) -> np.ndarray:
        width = max(len(ids) for ids in encodings)
        input_ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, ids in enumerate(encodings):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": np.zeros_like(input_ids)}
        (token_embeddings,) = self._session.run(None, {name: feeds[name] for name in self._inputs})
        return normalise_rows(pool(token_embeddings, attention_mask, self._folder.pooling))


def _load_tokenizer(folder: ModelFolder, max_tokens: int | None = None) -> tuple[Tokenizer, int]:
    """The fast tokenizer with truncation as sentence-transformers applies it (or at ``max_tokens``, if fewer),
    and the id to pad with."""
    tokenizer = Tokenizer.from_file(str(folder.transformer_dir / "tokenizer.json"))
    pad_id = (tokenizer.padding or {}).get("pad_id")
    if pad_id is None:  # padded positions are masked out, so any valid id would do; prefer the real one
        pad_id = next((i for t in ("[PAD]", "<pad>") if (i := tokenizer.token_to_id(t)) is not None), 0)
    tokenizer.no_padding()  # some tokenizer.json files pad every text to a fixed 128: padding is done per batch
    limit = folder.max_seq_length if max_tokens is None else min(max_tokens, folder.max_seq_length)
    tokenizer.enable_truncation(max_length=limit)
    return tokenizer, pad_id
