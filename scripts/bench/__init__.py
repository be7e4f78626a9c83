"""Helpers of scripts/benchmark.py: model builders, the timing worker, FLOP counts, the report."""
