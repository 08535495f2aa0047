"""Benchmarks run by `memproxy bench …`: code, not timed tests."""
