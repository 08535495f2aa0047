"""The real embedders on the bundled all-MiniLM-L6-v2: ONNX (int8 and float) against sentence-transformers, and what
only one of them does (the ONNX export cache, pooling configs, refused layouts, micro-batching). What every embedder
must do is in test_embedder_contract.py.

Fidelity is checked per text on a varied sample — short, long (past the 256-token truncation), non-English,
emoji, code — because quantisation error hides in averages: an early int8 scheme averaged 0.99 with a worst case
of 0.76.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from memory.embedding.model_folder import ModelFolder, ModelFolderError, default_model_path, embedder_name, pool
from memory.embedding.onnx import OnnxEmbedder
from memory.embedding.sentence_transformer import SentenceTransformerEmbedder

SAMPLE = [
    "What did Caroline say about the adoption agency she visited with her sister last summer?",
    "ok",
    "I'm vegan.",
    "Remember that I am allergic to peanuts and shellfish.",
    "The meeting moved from Tuesday to Thursday afternoon because the client had a conflict.",
    "私は毎朝コーヒーを飲みます。",
    "我喜欢在周末去公园散步。",
    "나는 김치를 좋아해요.",
    "Je voudrais réserver une table pour deux personnes ce soir.",
    "Der Hund schläft auf dem Sofa, während die Katze am Fenster sitzt.",
    "¿Dónde está la biblioteca más cercana?",
    "Мой любимый цвет — синий.",
    "🙂🙂🙂",
    "1234 5678",
    "def foo(x): return x * 2",
    "LGBTQ support group meeting tonight at 7",
    "Melanie painted a sunrise over the lake last weekend and posted it online. " * 30,
]


@pytest.fixture(scope="module")
def reference() -> Iterator[np.ndarray]:
    """sentence-transformers' vectors for SAMPLE."""
    embedder = SentenceTransformerEmbedder()
    yield embedder.encode(SAMPLE)
    asyncio.run(embedder.close())


@pytest.fixture
async def int8(cache_dir: Path) -> AsyncIterator[OnnxEmbedder]:
    embedder = OnnxEmbedder(cache_dir=cache_dir)
    yield embedder
    await embedder.close()


async def test_onnx_int8_matches_sentence_transformers_per_text(int8: OnnxEmbedder, reference: np.ndarray) -> None:
    cosines = (await int8.embed(SAMPLE) * reference).sum(axis=1)
    assert cosines.min() >= 0.99, {text[:30]: round(float(c), 4) for text, c in zip(SAMPLE, cosines, strict=True)}


async def test_onnx_float_is_the_same_model(cache_dir: Path, reference: np.ndarray) -> None:
    embedder = OnnxEmbedder(cache_dir=cache_dir, quantize=False)
    try:
        cosines = (await embedder.embed(SAMPLE) * reference).sum(axis=1)
        assert cosines.min() >= 0.9999
    finally:
        await embedder.close()


async def test_both_backends_name_the_model_alike(int8: OnnxEmbedder) -> None:
    torch_embedder = SentenceTransformerEmbedder()
    try:
        assert int8.name == torch_embedder.name  # same vector space: an index built by one serves the other
        assert int8.dim == torch_embedder.dim == 384
    finally:
        await torch_embedder.close()


async def test_concurrent_calls_are_micro_batched(int8: OnnxEmbedder) -> None:
    texts = SAMPLE[:12]
    calls = int8.batcher.calls

    await asyncio.gather(*(int8.embed([text]) for text in texts))

    assert int8.batcher.calls - calls < len(texts)


async def test_the_export_is_cached_and_written_atomically(int8: OnnxEmbedder, cache_dir: Path) -> None:
    exported = int8.model_file
    stamp = exported.stat().st_mtime_ns
    again = OnnxEmbedder(cache_dir=cache_dir)
    try:
        assert again.model_file == exported
        assert exported.stat().st_mtime_ns == stamp  # reused, not exported again
        assert sorted(p.name for p in cache_dir.iterdir() if p.name.startswith(".")) == []  # no temp leftovers
    finally:
        await again.close()


async def test_pooling_follows_the_model_folder(tmp_path: Path, cache_dir: Path) -> None:
    """A copy of MiniLM whose pooling config says CLS: both backends must pool that way, and agree."""
    model = tmp_path / "minilm-cls"
    shutil.copytree(default_model_path(), model)
    config = json.loads((model / "1_Pooling" / "config.json").read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    (model / "1_Pooling" / "config.json").write_text(json.dumps(config))
    assert ModelFolder.read(model).pooling == ("cls",)

    onnx_embedder = OnnxEmbedder(model, cache_dir=cache_dir)
    torch_embedder = SentenceTransformerEmbedder(model)
    try:
        cls_vectors = await onnx_embedder.embed(SAMPLE[:6])
        cosines = (cls_vectors * await torch_embedder.embed(SAMPLE[:6])).sum(axis=1)
        assert cosines.min() >= 0.99
        assert onnx_embedder.name != embedder_name(default_model_path())
    finally:
        await onnx_embedder.close()
        await torch_embedder.close()


def test_pool_modes_follow_sentence_transformers_definitions() -> None:
    tokens = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    np.testing.assert_allclose(pool(tokens, mask, ("mean",)), [[1, 2], [8, 9]])
    np.testing.assert_allclose(pool(tokens, mask, ("cls",)), [[0, 1], [6, 7]])
    np.testing.assert_allclose(pool(tokens, mask, ("max",)), [[2, 3], [10, 11]])
    np.testing.assert_allclose(pool(tokens, mask, ("lasttoken",)), [[2, 3], [10, 11]])
    np.testing.assert_allclose(
        pool(tokens, mask, ("mean_sqrt_len_tokens",)), [[2 / 2**0.5, 4 / 2**0.5], [24 / 3**0.5, 27 / 3**0.5]]
    )
    assert pool(tokens, mask, ("cls", "mean")).shape == (2, 4)


def test_unsupported_model_layouts_are_refused_with_a_reason(tmp_path: Path) -> None:
    model = tmp_path / "with-dense"
    shutil.copytree(default_model_path(), model)
    modules = json.loads((model / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (model / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelFolderError, match="Dense"):
        ModelFolder.read(model)
    with pytest.raises(ModelFolderError, match="missing"):
        ModelFolder.read(tmp_path / "nowhere")
