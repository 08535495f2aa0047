"""Builds the engine's parts from a :class:`MemoryConfig` — the one place that picks backends."""

from __future__ import annotations

from memory.config import MemoryConfig
from memory.embedding.base import Embedder
from memory.embedding.config import EmbedderConfig, OnnxEmbedderConfig, UniversalEmbedderConfig
from memory.graph import backends
from memory.graph.base import GraphStore
from memory.reembed import check as check_embedder
from memory.recall.multilingual import MultilingualLane
from memory.vectors.base import VectorIndex
from memory.writes.extraction import DeterministicExtractor, Extractor
from memory.writes.extraction_config import ExtractorConfig, LLMExtractorConfig
from memory.writes.queue import DurableQueue


def build_embedder(config: EmbedderConfig) -> Embedder:
    if isinstance(config, OnnxEmbedderConfig):
        from memory.embedding.onnx import OnnxEmbedder

        return OnnxEmbedder(
            config.model, cache_dir=config.cache_dir, threads=config.threads, query_max_tokens=config.query_max_tokens
        )
    if isinstance(config, UniversalEmbedderConfig):
        from memory.embedding.universal import UniversalSentenceEncoder

        return UniversalSentenceEncoder(threads=config.threads, query_max_tokens=config.query_max_tokens)
    from memory.embedding.sentence_transformer import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(config.model, threads=config.threads, query_max_tokens=config.query_max_tokens)


def build_lane(config: MemoryConfig, store: GraphStore) -> MultilingualLane | None:
    """The multilingual lane (see :mod:`memory.recall.multilingual`), unless it is off or the main embedder is
    already the multilingual one."""
    if not config.multilingual or isinstance(config.embedder, UniversalEmbedderConfig):
        return None
    from memory.recall.multilingual import MultilingualLane

    return MultilingualLane.open(
        store, config.multilingual_dir, threads=config.embedder.threads,
        query_max_tokens=config.embedder.query_max_tokens, resident_bytes=int(config.multilingual_ram_mb * 2**20),
    )  # fmt: skip


def build_store(config: MemoryConfig) -> GraphStore:
    return backends.build_store(config.graph, config.data_dir)


def build_extractor(config: ExtractorConfig) -> Extractor:
    """``deterministic``: no model. ``llm``: the configured chat model, over an HTTP client the extractor owns
    (closed with it); the deterministic episodes stay, and are the fallback."""
    if not isinstance(config, LLMExtractorConfig):
        return DeterministicExtractor()
    import httpx

    from memory.writes.llm_extraction import LLMExtractor

    client = httpx.AsyncClient(timeout=config.timeout_s, trust_env=False)
    key = config.api_key.get_secret_value() if config.api_key else None
    return LLMExtractor(client, config.url, config.model, api_key=key, timeout_s=config.timeout_s, owns_client=True)


async def build_parts(config: MemoryConfig) -> tuple[GraphStore, Embedder, VectorIndex, DurableQueue]:
    from memory.vectors.faiss_index import FaissVectorIndex

    config.data_dir.mkdir(parents=True, exist_ok=True)
    embedder = build_embedder(config.embedder)
    if embedder.dim != config.embedder.dim:
        raise ValueError(f"the embedding model has dimension {embedder.dim}, the configuration says {config.embedder.dim}")
    check_embedder(config.data_dir, embedder)  # the store's embeddings are this embedder's, or EmbedderChanged
    store = build_store(config)
    await store.open()
    vectors = FaissVectorIndex.open(
        config.index_dir,
        dim=embedder.dim,
        embedder_name=embedder.name,
        resident_bytes=int(config.vector_ram_mb * 2**20),
    )
    queue = DurableQueue(config.queue_path)
    await queue.open()
    return store, embedder, vectors, queue
