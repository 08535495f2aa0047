"""The embedder interface. Vectors are float32, L2-normalised (so inner product = cosine).

Every implementation runs the contract suite in tests/memory/embedding/test_embedder_contract.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np


class Embedder(ABC):
    dim: int
    """Vector dimension."""
    name: str
    """Identifies the model (stored with the index so a model change forces a rebuild); it does not change while
    the embedder lives."""

    @abstractmethod
    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, rows L2-normalised; ``(0, dim)`` for no texts. A text's row is the same
        (within float rounding) whatever else the call or concurrent calls embed. Runs off the event loop."""

    async def embed_one(self, text: str) -> np.ndarray:
        """Recall's query: like ``embed([text])[0]``, except that only the first ``query_max_tokens`` tokens count
        where the backend has such a bound (the query is on the chat's hot path, and a model's cost grows with each
        token)."""
        return (await self.embed([text]))[0]

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release threads / sessions once the calls under way are answered. Safe to call twice."""
