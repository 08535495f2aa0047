"""Text → vector: the Embedder interface and its backends."""
