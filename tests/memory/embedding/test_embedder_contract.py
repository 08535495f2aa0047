"""The Embedder contract (memory/embedding/base.py), run against every implementation in CASES, each on the bundled
all-MiniLM-L6-v2 (offline) with recall's query cut to ``QUERY_TOKENS`` tokens.

Each implementation is built once for the module (loading a model takes seconds), except to test ``close``. Where
the implementations must agree with each other (the same vectors, the same name), see test_embedders.py. A new
implementation is one line in CASES.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from tokenizers import Tokenizer

from memory.embedding.base import Embedder
from memory.embedding.model_folder import default_model_path
from memory.embedding.onnx import OnnxEmbedder
from memory.embedding.sentence_transformer import SentenceTransformerEmbedder

pytestmark = pytest.mark.asyncio(loop_scope="module")

QUERY_TOKENS = 12


@dataclass(frozen=True)
class EmbedderCase:
    name: str
    build: Callable[[Path], Embedder]
    """The embedder, given the ONNX export cache folder (ignored where there is none)."""


CASES = [
    EmbedderCase("onnx-int8", lambda cache: OnnxEmbedder(cache_dir=cache, query_max_tokens=QUERY_TOKENS)),
    EmbedderCase("sentence-transformers", lambda cache: SentenceTransformerEmbedder(query_max_tokens=QUERY_TOKENS)),
]

SHORT = ["I'm vegan.", "ok", "我喜欢散步。", "札幌に住んでいます", "Je suis végétarien.", "🙂🙂🙂"]
"""Each within QUERY_TOKENS tokens: as a query it reads the same as as a text to remember."""
TEXTS = [
    *SHORT,
    "What did Caroline say about the adoption agency she visited with her sister last summer?",
    "Мой любимый цвет — синий.",
    "def foo(x): return x * 2",
    "The meeting moved from Tuesday to Thursday afternoon because the client had a conflict.",
    "Der Hund schläft auf dem Sofa, während die Katze am Fenster sitzt.",
    "Melanie painted a sunrise over the lake last weekend and posted it online. " * 30,  # past the model's limit
]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=CASES, ids=lambda case: case.name)
async def embedder(request: pytest.FixtureRequest, cache_dir: Path) -> AsyncIterator[Embedder]:
    built = request.param.build(cache_dir)
    yield built
    await built.close()


def assert_unit_rows(vectors: np.ndarray, rows: int, dim: int) -> None:
    assert vectors.shape == (rows, dim) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


async def test_rows_are_normalised_float32_vectors_of_dim(embedder: Embedder) -> None:
    assert_unit_rows(await embedder.embed(TEXTS), len(TEXTS), embedder.dim)
    assert_unit_rows((await embedder.embed_one(TEXTS[-1]))[None], 1, embedder.dim)
    assert embedder.dim == 384  # MiniLM's


async def test_no_texts_give_no_rows(embedder: Embedder) -> None:
    empty = await embedder.embed([])
    assert empty.shape == (0, embedder.dim) and empty.dtype == np.float32


async def test_the_name_is_stable_and_tells_models_apart(embedder: Embedder) -> None:
    name = embedder.name
    await embedder.embed(SHORT)
    assert isinstance(name, str) and name == embedder.name
    assert default_model_path().name in name


async def test_a_short_query_is_embedded_as_a_text(embedder: Embedder) -> None:
    texts = await embedder.embed(SHORT)
    queries = np.stack([await embedder.embed_one(text) for text in SHORT])
    np.testing.assert_allclose(queries, texts, atol=1e-4)


async def test_a_query_reads_only_its_first_tokens(embedder: Embedder) -> None:
    """Recall's query (embed_one) is cut to query_max_tokens, so a long message costs the hot path a bounded time;
    texts to remember (embed) keep the model's own limit."""
    head = "My dog is called Pochi and I live in Sapporo with my family"
    tail = " The quarterly revenue report shows higher freight costs across every region." * 8
    tokenizer = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    tokenizer.no_truncation()
    ids = tokenizer.encode(head + tail).ids
    first_tokens = tokenizer.decode(ids[1 : QUERY_TOKENS - 1])  # without [CLS] / [SEP], which the cut counts
    assert first_tokens.startswith("my dog is called") and len(ids) > 5 * QUERY_TOKENS

    query = await embedder.embed_one(head + tail)
    whole, prefix = await embedder.embed([head + tail, first_tokens])

    assert float(query @ prefix) >= 0.999  # exactly the first tokens were read
    assert float(query @ whole) < 0.9  # the whole text reads differently: the cut is real


async def test_concurrent_calls_give_the_vectors_of_calls_one_by_one(embedder: Embedder) -> None:
    alone = np.stack([(await embedder.embed([text]))[0] for text in TEXTS])
    alone_queries = np.stack([await embedder.embed_one(text) for text in TEXTS])

    together = await embedder.embed(TEXTS)
    chunks = [embedder.embed(TEXTS[i : i + 3]) for i in range(0, len(TEXTS), 3)]
    concurrent = await asyncio.gather(*chunks, *(embedder.embed_one(text) for text in TEXTS))

    np.testing.assert_allclose(together, alone, atol=1e-4)  # padding to a common length changes nothing
    np.testing.assert_allclose(np.concatenate(concurrent[: len(chunks)]), alone, atol=1e-4)
    np.testing.assert_allclose(np.stack(concurrent[len(chunks) :]), alone_queries, atol=1e-4)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
async def test_close_is_safe_twice(case: EmbedderCase, cache_dir: Path) -> None:
    embedder = case.build(cache_dir)
    assert_unit_rows(await embedder.embed(SHORT[:1]), 1, embedder.dim)
    await embedder.close()
    await embedder.close()
