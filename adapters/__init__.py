"""memproxy's per-user LoRA adapters (registry, trainer, vLLM loader, routing). Grows with the adapters issue."""
