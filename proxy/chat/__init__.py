"""``POST /v1/chat/completions``: route (HTTP only) → protocol (pydantic) → serving (logic) → streaming (SSE)."""
