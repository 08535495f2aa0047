"""The Embedder contract (memory/embedding/base.py), run against every implementation in CASES — the bundled
all-MiniLM-L6-v2 through ONNX and through sentence-transformers, and the Universal Sentence Encoder (all offline) —
with recall's query cut to ``QUERY_TOKENS`` tokens.

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

from memory.embedding.base import Embedder
from memory.embedding.model_folder import default_model_path
from memory.embedding.onnx import OnnxEmbedder
from memory.embedding.sentence_transformer import SentenceTransformerEmbedder
from memory.embedding.universal import UniversalSentenceEncoder

pytestmark = pytest.mark.asyncio(loop_scope="module")

QUERY_TOKENS = 12


@dataclass(frozen=True)
class EmbedderCase:
    name: str
    build: Callable[[Path], Embedder]
    """The embedder, given the ONNX export cache folder (ignored where there is none)."""
    dim: int
    model: str
    """Part of the embedder's name that says which model it runs."""


MINILM = default_model_path().name
CASES = [
    EmbedderCase("onnx-int8", lambda cache: OnnxEmbedder(cache_dir=cache, query_max_tokens=QUERY_TOKENS), 384, MINILM),
    EmbedderCase(
        "sentence-transformers", lambda cache: SentenceTransformerEmbedder(query_max_tokens=QUERY_TOKENS), 384, MINILM
    ),
    EmbedderCase(
        "use-multilingual", lambda cache: UniversalSentenceEncoder(query_max_tokens=QUERY_TOKENS), 512, "use-multilingual"
    ),
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


@pytest.fixture(scope="module", params=CASES, ids=lambda case: case.name)
def case(request: pytest.FixtureRequest) -> EmbedderCase:
    return request.param


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def embedder(case: EmbedderCase, cache_dir: Path) -> AsyncIterator[Embedder]:
    built = case.build(cache_dir)
    yield built
    await built.close()


def assert_unit_rows(vectors: np.ndarray, rows: int, dim: int) -> None:
    assert vectors.shape == (rows, dim) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


async def test_rows_are_normalised_float32_vectors_of_dim(embedder: Embedder, case: EmbedderCase) -> None:
    assert_unit_rows(await embedder.embed(TEXTS), len(TEXTS), embedder.dim)
    assert_unit_rows((await embedder.embed_one(TEXTS[-1]))[None], 1, embedder.dim)
    assert embedder.dim == case.dim


async def test_no_texts_give_no_rows(embedder: Embedder) -> None:
    empty = await embedder.embed([])
    assert empty.shape == (0, embedder.dim) and empty.dtype == np.float32


async def test_the_name_is_stable_and_tells_models_apart(embedder: Embedder, case: EmbedderCase) -> None:
    name = embedder.name
    await embedder.embed(SHORT)
    assert isinstance(name, str) and name == embedder.name
    assert case.model in name


async def test_a_short_query_is_embedded_as_a_text(embedder: Embedder) -> None:
    texts = await embedder.embed(SHORT)
    queries = np.stack([await embedder.embed_one(text) for text in SHORT])
    np.testing.assert_allclose(queries, texts, atol=1e-4)


async def test_a_query_reads_only_its_first_tokens(embedder: Embedder) -> None:
    """Recall's query (embed_one) is cut to query_max_tokens, so a long message costs the hot path a bounded time;
    texts to remember (embed) keep the model's own limit. Two long texts that share their first QUERY_TOKENS tokens
    are one query, and two different texts."""
    head = "My dog is called Pochi and I live in Sapporo with my family and two cats"
    tails = (
        " The quarterly revenue report shows higher freight costs across every region." * 8,
        " 私たちは週末に海へ行き、夕日を見ながら長い散歩をしました。" * 8,
    )
    queries = [await embedder.embed_one(head + tail) for tail in tails]
    wholes = await embedder.embed([head + tail for tail in tails])

    assert float(queries[0] @ queries[1]) >= 0.999  # only the shared first tokens were read
    assert float(wholes[0] @ wholes[1]) < 0.9  # as texts, the tails count
    assert float(queries[0] @ wholes[0]) < 0.95  # the cut is real


async def test_a_query_cut_is_the_first_tokens_exactly_for_minilm(case: EmbedderCase, embedder: Embedder) -> None:
    """Where the tokenizer is at hand (MiniLM's), the cut query is the embedding of its first tokens' text."""
    if case.model != MINILM:
        pytest.skip("the exact prefix is checked with MiniLM's tokenizer")
    from tokenizers import Tokenizer

    text = "My dog is called Pochi and I live in Sapporo with my family" + " The quarterly report is late." * 8
    tokenizer = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    tokenizer.no_truncation()
    first_tokens = tokenizer.decode(tokenizer.encode(text).ids[1 : QUERY_TOKENS - 1])  # without [CLS] / [SEP]
    assert first_tokens.startswith("my dog is called")
    prefix = (await embedder.embed([first_tokens]))[0]
    assert float(await embedder.embed_one(text) @ prefix) >= 0.999


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
