"""The embedder interface. Vectors are float32, L2-normalised (so inner product = cosine)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np


class Embedder(ABC):
    dim: int
    """Vector dimension."""
    name: str
    """Identifies the model (stored with the index so a model change forces a rebuild)."""

    @abstractmethod
    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, rows L2-normalised. Runs off the event loop."""

    async def embed_one(self, text: str) -> np.ndarray:
        """Recall's query: like ``embed([text])[0]``, except that only the first ``query_max_tokens`` tokens count
        where the backend has such a bound (the query is on the chat's hot path, and a model's cost grows with each
        token: a 256-token query would take 13x a 20-token one)."""
        return (await self.embed([text]))[0]

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release threads / sessions."""
