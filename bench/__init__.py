"""Benchmarks: ``pytest bench/`` (pytest-benchmark) and ``python -m bench`` (the results table)."""
