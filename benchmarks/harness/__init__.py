"""Code the benchmarks share: model builders, timing, the worker and its driver, FLOPs, report."""
