"""``/v1/adapters``: route (HTTP only) → protocol (pydantic) → serving (logic over the adapters package). Whose
adapters a request may touch is decided by :mod:`proxy.memories.access`, the same rules as the memory API."""
