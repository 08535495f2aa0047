"""Benchmarks of the memory engine (recall quality on LoCoMo-schema data, latency, throughput)."""
