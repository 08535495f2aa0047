"""Trains a LoRA adapter (peft) on the base model from a :class:`TrainingSet`, and measures it.

CPU-bound and blocking: callers run :func:`train_lora` in a worker thread or process (``AdapterJobs`` does). The
loss is taken on the answer tokens only, in the chat template vLLM applies to chats, so what the adapter learns is
what it says behind the proxy. Deterministic for a given seed, data and thread count.
"""

from __future__ import annotations

import logging
import math
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.config import TrainingConfig
from adapters.dataset import InstructionPair, TrainingSet

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (steps done, total steps)."""
IGNORE = -100


@dataclass(frozen=True, slots=True)
class TrainingReport:
    base_ppl: float
    adapter_ppl: float
    base_general_ppl: float
    adapter_general_ppl: float
    train_examples: int
    held_out_examples: int
    steps: int
    train_s: float
    final_loss: float

    @property
    def ppl_reduction(self) -> float:
        """1 − adapter / base on the held-out pairs of the user's own facts (higher is better)."""
        return 1.0 - self.adapter_ppl / self.base_ppl

    @property
    def general_ppl_change(self) -> float:
        """adapter / base − 1 on the neutral set (0 = unchanged; positive = worse)."""
        return self.adapter_general_ppl / self.base_general_ppl - 1.0

    def passes(self, config: TrainingConfig) -> tuple[bool, str]:
        if self.ppl_reduction < config.min_ppl_reduction:
            return False, f"held-out perplexity fell by {self.ppl_reduction:.1%}, below {config.min_ppl_reduction:.0%}"
        if self.general_ppl_change > config.max_general_ppl_increase:
            return False, (
                f"neutral perplexity rose by {self.general_ppl_change:.1%}, "
                f"above {config.max_general_ppl_increase:.0%}"
            )
        return True, "ok"

    def metrics(self) -> dict[str, Any]:
        return {
            "base_ppl": round(self.base_ppl, 4),
            "adapter_ppl": round(self.adapter_ppl, 4),
            "ppl_reduction": round(self.ppl_reduction, 4),
            "base_general_ppl": round(self.base_general_ppl, 4),
            "adapter_general_ppl": round(self.adapter_general_ppl, 4),
            "general_ppl_change": round(self.general_ppl_change, 4),
            "train_examples": self.train_examples,
            "held_out_examples": self.held_out_examples,
            "steps": self.steps,
            "train_s": round(self.train_s, 2),
            "final_loss": round(self.final_loss, 4),
        }


def encode(tokenizer: Any, pair: InstructionPair, max_tokens: int) -> tuple[list[int], list[int]]:
    """Token ids of the chat-templated prompt + answer + end-of-turn, and labels that mask the prompt."""
    prompt = tokenizer.apply_chat_template(pair.messages(), tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(pair.answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + answer_ids)[-max_tokens:]
    labels = ([IGNORE] * len(prompt_ids) + answer_ids)[-max_tokens:]
    return ids, labels


def _batch(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    """Left-padded, so every row's answer sits at the end: logits are computed for the last positions only."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, row_labels) in enumerate(rows):
        input_ids[i, width - len(ids) :] = torch.tensor(ids)
        labels[i, width - len(row_labels) :] = torch.tensor(row_labels)
        attention[i, width - len(ids) :] = 1
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention, "position_ids": positions}


def answer_nll(model: Any, inputs: dict[str, Any]) -> tuple[Any, int]:
    """Summed negative log-likelihood of the answer tokens, and their number. Only the positions that predict an
    answer token go through the LM head (the vocabulary projection is a fifth of SmolLM2's compute)."""
    import torch

    labels = inputs["labels"]
    answer_start = int((labels != IGNORE).float().argmax(-1).min())
    keep = labels.shape[1] - answer_start + 1
    logits = model(
        input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
        position_ids=inputs["position_ids"], logits_to_keep=keep,
    ).logits
    targets = labels[:, labels.shape[1] - keep + 1 :]
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return nll, int((targets != IGNORE).sum())


def perplexity(model: Any, tokenizer: Any, pairs: Sequence[InstructionPair], max_tokens: int, batch: int = 16) -> float:
    """exp(mean negative log-likelihood per answer token) over ``pairs``."""
    import torch

    rows = [encode(tokenizer, pair, max_tokens) for pair in pairs]
    total_nll, total_tokens = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch):
            nll, tokens = answer_nll(model, _batch(rows[start : start + batch], tokenizer.pad_token_id))
            total_nll += float(nll)
            total_tokens += tokens
    return math.exp(total_nll / max(total_tokens, 1))


def _top_layers(model: Any, count: int | None) -> list[int] | None:
    """The indices of the last ``count`` decoder layers (None: all). Gradients then stop below them, so a step
    costs a fraction of a full backward pass."""
    total = int(model.config.num_hidden_layers)
    if count is None or count >= total:
        return None
    return list(range(total - count, total))


def load_base(base_model_path: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_model_path, dtype=torch.float32)
    return model, tokenizer


def train_lora(
    base_model_path: Path,
    data: TrainingSet,
    out_dir: Path,
    config: TrainingConfig,
    progress: Progress | None = None,
) -> TrainingReport:
    """Train, measure base vs adapter, and save the adapter (adapter_config.json + adapter_model.safetensors)
    into ``out_dir``. Publishing (or not) is the caller's decision, from :meth:`TrainingReport.passes`."""
    import torch
    from peft import LoraConfig, get_peft_model

    if not data.train or not data.held_out:
        raise ValueError("the training set is empty: the user has no memories to teach")
    if config.threads:
        torch.set_num_threads(config.threads)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    model, tokenizer = load_base(base_model_path)
    base_ppl = perplexity(model, tokenizer, data.held_out, config.max_tokens)
    base_general = perplexity(model, tokenizer, data.neutral, config.max_tokens)

    lora = LoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
        target_modules=list(config.target_modules), bias="none", task_type="CAUSAL_LM",
        layers_to_transform=_top_layers(model, config.layers),
    )
    with warnings.catch_warnings():
        # peft 0.21 reads transformers 5's deprecated alias; harmless, and not ours to fix.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = get_peft_model(model, lora)
    rows = [encode(tokenizer, pair, config.max_tokens) for pair in data.train]
    order = random.Random(config.seed)
    steps_per_epoch = math.ceil(len(rows) / config.batch_size)
    total = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / max(total, 1))
    started = time.perf_counter()
    step, loss_value = 0, float("nan")
    model.train()
    for _epoch in range(config.epochs):
        shuffled = rows[:]
        order.shuffle(shuffled)
        for start in range(0, len(shuffled), config.batch_size):
            inputs = _batch(shuffled[start : start + config.batch_size], tokenizer.pad_token_id)
            nll, tokens = answer_nll(model, inputs)
            loss = nll / max(tokens, 1)
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_value = float(loss.detach())
            if progress is not None:
                progress(step, total)
    train_s = time.perf_counter() - started
    adapter_ppl = perplexity(model, tokenizer, data.held_out, config.max_tokens)
    adapter_general = perplexity(model, tokenizer, data.neutral, config.max_tokens)
    out_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model.save_pretrained(out_dir, safe_serialization=True)
    return TrainingReport(
        base_ppl=base_ppl, adapter_ppl=adapter_ppl, base_general_ppl=base_general,
        adapter_general_ppl=adapter_general, train_examples=len(data.train), held_out_examples=len(data.held_out),
        steps=step, train_s=train_s, final_loss=loss_value,
    )
