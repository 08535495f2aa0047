"""Hybrid recall: dense, lexical, graph, recency, importance; MMR; token budget."""
