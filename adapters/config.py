"""The adapters package's configuration: plain value objects. ``proxy.settings`` fills them from MEMPROXY_*
variables; library users build them directly."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LoaderMode = Literal["runtime", "resolver"]


class TrainingConfig(BaseModel):
    """How an adapter is trained and when it may be published. Defaults suit SmolLM2-135M on a 2-core CPU."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rank: int = Field(8, ge=1, description="LoRA rank (vLLM's --max-lora-rank must be at least this).")
    alpha: int = Field(16, ge=1, description="LoRA alpha.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="LoRA dropout.")
    target_modules: tuple[str, ...] = Field(
        ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        description="The model's modules that get LoRA weights.",
    )
    layers: int | None = Field(
        10, ge=1, description="LoRA on the last this many decoder layers only (none: all); training then "
        "back-propagates through them alone.",
    )
    learning_rate: float = Field(2e-3, gt=0, description="Optimiser learning rate.")
    epochs: int = Field(4, ge=1, description="Epochs over the user's instruction pairs.")
    batch_size: int = Field(8, ge=1, description="Training pairs per step.")
    max_examples: int = Field(
        256, ge=1, description="At most this many training pairs (the newest, most important memories first)."
    )
    max_tokens: int = Field(96, ge=8, description="Tokens of one training pair at most.")
    seed: int = Field(1234, description="Seed of the data split and the initial weights.")
    threads: int | None = Field(None, ge=1, description="torch threads for training; none = torch's default.")
    min_ppl_reduction: float = Field(
        0.30, ge=0, lt=1, description="Publish only if held-out perplexity on the user's own facts is at least this "
        "much lower than the base model's.",
    )
    max_general_ppl_increase: float = Field(
        0.05, ge=0, description="…and perplexity on a neutral text set at most this much higher."
    )


class AdaptersConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    adapters_dir: Path = Field(description="Adapter versions (one folder each) and the registry database.")
    base_model_path: Path = Field(
        description="The HF folder of the base model: what the trainer loads and what vLLM serves (--model)."
    )
    base_model: str = Field(description="The base model's served name (the model of a request without an adapter).")
    vllm_url: str = Field(
        "http://127.0.0.1:8000", description="vLLM's root URL (no /v1), for its LoRA load and unload API."
    )
    max_loaded: int = Field(
        4, ge=1, description="Adapters kept loaded in vLLM at once, least recently used unloaded first (keep it at "
        "most vLLM's --max-cpu-loras).",
    )
    loader: LoaderMode = Field(
        "runtime", description="runtime: load through vLLM's LoRA API; resolver: vLLM's filesystem resolver plugin "
        "reads the adapters folder itself (a remote vLLM on a shared volume).",
    )
    refresh_s: float = Field(2.0, ge=0, description="How long a user's current adapter is cached by the router.")
    load_timeout_s: float = Field(60.0, gt=0, description="Seconds one adapter load may take in vLLM.")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="How adapters are trained.")

    @property
    def registry_path(self) -> Path:
        return self.adapters_dir / "registry.sqlite3"
