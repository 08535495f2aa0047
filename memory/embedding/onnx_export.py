"""One-time export of a sentence-transformers model's transformer to ONNX, optionally quantised to int8, cached.

The cache file's name carries a hash of the model's weights, config and tokenizer plus the export options, so a
changed model or option exports anew and an unchanged one is reused across restarts. The file is written to a
temporary name and renamed into place (see :mod:`memory.atomic_file`): a crash mid-export leaves no half file.

Quantisation: int8 weights in blocks of :data:`QUANT_BLOCK` input channels, with activations quantised per token
and block at run time (onnxruntime's ``MatMulNBits``, ``accuracy_level=4``). Measured on all-MiniLM-L6-v2 it keeps
cosine ≥ 0.997 to the float model on short and non-English text, where the classic per-tensor dynamic
quantisation (``quantize_dynamic``) dropped to 0.76-0.97: a few tokens ([CLS], [SEP]) carry activations far
larger than the rest, and one scale per tensor cannot serve both.
"""

from __future__ import annotations

import inspect
import logging
import tempfile
import warnings
from pathlib import Path

from memory.atomic_file import move_atomic
from memory.embedding.model_folder import ModelFolder

log = logging.getLogger(__name__)

EXPORT_FORMAT = 1
"""Bump when the export itself changes, so caches from older code are not reused."""
OPSET = 17
QUANT_BITS = 8
QUANT_BLOCK = 64
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def cached_export(folder: ModelFolder, digest: str, cache_dir: Path, *, quantize: bool) -> Path:
    """The path of the ONNX file for ``folder`` (whose :func:`folder_digest` is ``digest``), exported now if the
    cache has none."""
    variant = f"int{QUANT_BITS}b{QUANT_BLOCK}" if quantize else "fp32"
    target = cache_dir / f"{folder.path.name}-{digest[:20]}-v{EXPORT_FORMAT}-{variant}.onnx"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    log.info("exporting %s to ONNX (%s) into %s", folder.path, variant, cache_dir)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".export-") as work:
        exported = Path(work) / "model.onnx"
        export_transformer(folder.transformer_dir, exported)
        if quantize:
            quantized = Path(work) / "model.int8.onnx"
            quantize_weights(exported, quantized)
            exported = quantized
        move_atomic(exported, target)
    return target


def export_transformer(transformer_dir: Path, out: Path) -> None:
    """Token vectors (``last_hidden_state``) as a function of the tokenizer's outputs; batch and sequence dynamic."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(transformer_dir, attn_implementation="eager").eval()
    accepts = inspect.signature(model.forward).parameters
    names = [name for name in INPUT_NAMES if name in accepts]

    class TokenVectors(torch.nn.Module):
        """Positional inputs named exactly as exported (transformers' own forward takes many more)."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, inputs, strict=True))).last_hidden_state

    example = tuple(
        torch.zeros((2, 8), dtype=torch.long) if name == "token_type_ids" else torch.ones((2, 8), dtype=torch.long)
        for name in names
    )
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "token_embeddings"]}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated in favour of torch.export's (which needs onnxscript); it is still
        # shipped and proven on BERT-style encoders. Its tracer warnings are about code paths this model doesn't take.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            TokenVectors(),
            example,
            str(out),
            input_names=names,
            output_names=["token_embeddings"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def quantize_weights(source: Path, out: Path) -> None:
    import onnx

    quantizer = _import_quantizer()(
        onnx.load(str(source)),
        bits=QUANT_BITS,
        block_size=QUANT_BLOCK,
        is_symmetric=True,
        accuracy_level=4,  # int8 activations, per token and block
        op_types_to_quantize=("MatMul",),
    )
    quantizer.process()
    quantizer.model.save_model_to_file(str(out), use_external_data_format=False)


def _import_quantizer() -> type:
    """onnxruntime's ``matmul_nbits_quantizer`` calls ``logging.basicConfig(level=INFO)`` when imported, which
    would configure the host application's root logger; undo that, and keep its per-node chatter quiet."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from onnxruntime.quantization import matmul_nbits_quantizer

    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger(matmul_nbits_quantizer.__name__).setLevel(logging.WARNING)
    return matmul_nbits_quantizer.MatMulNBitsQuantizer
