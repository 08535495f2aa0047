"""Builds the engine's parts from a :class:`MemoryConfig` — the one place that picks backends."""

from __future__ import annotations

from memory.config import MemoryConfig
from memory.embedding.base import Embedder
from memory.graph import backends
from memory.graph.base import GraphStore
from memory.graph.neo4j.config import Neo4jGraphConfig
from memory.graph.sqlite.config import SqliteGraphConfig
from memory.vectors.base import VectorIndex
from memory.writes.extraction import DeterministicExtractor, Extractor
from memory.writes.queue import DurableQueue


def build_embedder(config: MemoryConfig) -> Embedder:
    if config.embedder == "onnx":
        from memory.embedding.onnx import OnnxEmbedder

        return OnnxEmbedder(
            config.embedding_model,
            cache_dir=config.model_cache_dir,
            threads=config.embedding_threads,
            query_max_tokens=config.query_max_tokens,
        )
    from memory.embedding.sentence_transformer import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(
        config.embedding_model, threads=config.embedding_threads, query_max_tokens=config.query_max_tokens
    )


def build_store(config: MemoryConfig) -> GraphStore:
    return backends.build_store(_graph_config(config), config.data_dir)


def _graph_config(config: MemoryConfig) -> backends.GraphConfig:
    """The graph backend's settings, from the engine's flat fields."""
    if config.graph_backend == "neo4j":
        return Neo4jGraphConfig(
            backend="neo4j",
            uri=config.neo4j_uri or "",
            user=config.neo4j_user,
            password=config.neo4j_password,
            database=config.neo4j_database,
        )
    return SqliteGraphConfig(path=config.sqlite_path)


def build_extractor(config: MemoryConfig) -> Extractor:
    """``deterministic``: no model. ``llm``: the configured chat model, over an HTTP client the extractor owns
    (closed with it); the deterministic episodes stay, and are the fallback."""
    if config.extractor != "llm":
        return DeterministicExtractor()
    import httpx

    from memory.writes.llm_extraction import LLMExtractor

    key = config.extractor_api_key.get_secret_value() if config.extractor_api_key else None
    client = httpx.AsyncClient(timeout=config.extractor_timeout_s, trust_env=False)
    return LLMExtractor(
        client,
        config.extractor_url or "",
        config.extractor_model or "",
        api_key=key,
        timeout_s=config.extractor_timeout_s,
        owns_client=True,
    )


async def build_parts(config: MemoryConfig) -> tuple[GraphStore, Embedder, VectorIndex, DurableQueue]:
    from memory.vectors.faiss_index import FaissVectorIndex

    config.data_dir.mkdir(parents=True, exist_ok=True)
    embedder = build_embedder(config)
    if embedder.dim != config.vector_dim:
        raise ValueError(f"the embedding model has dimension {embedder.dim}, config.vector_dim says {config.vector_dim}")
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
