"""The adapters package's configuration: a plain value object. ``proxy.settings`` fills it from MEMPROXY_* variables
(see ``proxy.app.adapters_config``); library users build it directly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

LoaderMode = Literal["runtime", "resolver"]


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    """How an adapter is trained and when it may be published. Defaults suit SmolLM2-135M on a 2-core CPU."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    layers: int | None = 10
    """LoRA on the last this many decoder layers only (None: all): training then back-propagates through them
    alone, about 3x faster on SmolLM2's 30 layers."""
    learning_rate: float = 2e-3
    epochs: int = 4
    batch_size: int = 8
    max_examples: int = 256
    """At most this many training pairs (the newest, most important memories first)."""
    max_tokens: int = 96
    seed: int = 1234
    threads: int | None = None
    """torch threads for training; None = torch's default."""
    min_ppl_reduction: float = 0.30
    """Publish only if held-out perplexity on the user's own facts is at least this much lower than the base's."""
    max_general_ppl_increase: float = 0.05
    """…and perplexity on the neutral text set is at most this much higher than the base's."""


@dataclass(frozen=True, slots=True)
class AdaptersConfig:
    adapters_dir: Path
    """Adapter versions (one folder each) and the registry database."""
    base_model_path: Path
    """The HF folder of the base model: what the trainer loads and what vLLM serves (``--model``)."""
    base_model: str
    """The base model's served name (the ``model`` of a request without an adapter)."""
    vllm_url: str = "http://127.0.0.1:8000"
    """vLLM's root URL (without /v1), for /v1/load_lora_adapter and /v1/unload_lora_adapter."""
    max_loaded: int = 4
    """Adapters kept loaded in vLLM at once (least recently used unloaded first); keep ≤ vLLM's --max-cpu-loras."""
    loader: LoaderMode = "runtime"
    """runtime: load through vLLM's API. resolver: vLLM's filesystem resolver reads ``adapters_dir`` itself."""
    refresh_s: float = 2.0
    """How long the router trusts its cached view of a user's current adapter before re-reading the registry."""
    load_timeout_s: float = 60.0
    training: TrainingConfig = field(default_factory=TrainingConfig)

    @property
    def registry_path(self) -> Path:
        return self.adapters_dir / "registry.sqlite3"
